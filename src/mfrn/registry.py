"""A tiny name -> factory registry, shared by backbones, face backends and reconstructors."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name no factory is registered under; the message lists the known names.

    Both a ``KeyError`` (a failed look-up) and a ``ValueError`` (a bad setting, which the CLI prints as one line).
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Maps a name to a factory; ``register`` is a decorator, ``build`` looks a name up.

    ``lazy`` maps names to the modules that register them: such a module (an optional backend) is
    imported only when its name is first looked up, and its names are known before that.
    """

    def __init__(self, kind: str, lazy: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._lazy: dict[str, str] = dict(lazy or {})

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(set(self._factories) | set(self._lazy))

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._factories and name in self._lazy:
            importlib.import_module(self._lazy[name])
        try:
            return self._factories[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def build(self, name: str, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)
