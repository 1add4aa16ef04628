"""Process-level settings for CPU work: keep freed memory for reuse instead of handing it back to the system.

A CPU training step allocates and frees activations of tens of megabytes (a Lite0 MFRN batch of 16 at 224 px:
77 MB for one 96-channel map at 112 x 112). glibc's malloc serves every block above 32 MB (its largest
dynamic mmap threshold) with a fresh ``mmap`` and returns it with ``munmap`` when torch frees it, so the
next step touches fresh pages again: about 200 000 page faults and 0.4-1.0 s of system time per demo
training step on 2 cores, a third of the step. :func:`retain_freed_memory` tells glibc (``mallopt``) to serve
large blocks from the heap and not to trim it, so freed memory is reused; the arithmetic is unchanged (torch
aligns every block to 64 bytes either way). The price is that the process keeps its peak heap until it exits
(the demo: 3.3 GB peak RSS against 2.9 GB). It is what jemalloc or tcmalloc through ``LD_PRELOAD`` do for PyTorch
CPU jobs, without a library to install. The numbers: ``benchmarks/bench_train_cpu.py`` and the README.

``MFRN_RETAIN_FREED_MEMORY=0`` leaves malloc as it is. Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform

ENV = "MFRN_RETAIN_FREED_MEMORY"
# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_NEVER = 2**31 - 1  # the largest value the int parameter takes: trim only above 2 GiB of free top

_state: dict[str, str | None] = {}


def retain_freed_memory() -> str | None:
    """Keep freed memory in this process for reuse (glibc; once per process). Returns what was done, in one
    line (naming the settings mallopt took), or None when nothing was (not glibc, ``MFRN_RETAIN_FREED_MEMORY=0``,
    or mallopt refused both)."""
    if "done" in _state:
        return _state["done"]
    _state["done"] = None
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        # each call on its own: one refused (a glibc that lacks the parameter) leaves the other applied, and said
        applied = [what for parameter, value, what in ((_M_MMAP_MAX, 0, "no mmap blocks"),
                                                       (_M_TRIM_THRESHOLD, _TRIM_NEVER, "no trimming"))
                   if libc.mallopt(parameter, value) == 1]
    except (OSError, AttributeError):
        return None
    if applied:
        _state["done"] = (f"malloc: freed memory is kept for reuse (glibc mallopt: {', '.join(applied)}; "
                          f"{ENV}=0 to leave it)")
    return _state["done"]
