"""Work spread over spawned worker processes, results streamed back as they finish."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any


def spawn_imap(
    function: Callable[[Any], Any], items: Iterable[Any], workers: int,
    initializer: Callable[..., None] | None = None, initargs: tuple = (),
) -> Iterator[Any]:
    """``function`` applied to ``items`` in ``workers`` spawned processes, results in the order they
    finish. When the consumer stops early or anything fails (Ctrl-C included), the workers are
    terminated before the error goes on."""
    import multiprocessing as mp

    pool = mp.get_context("spawn").Pool(workers, initializer=initializer, initargs=initargs)
    try:
        yield from pool.imap_unordered(function, items, chunksize=1)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
