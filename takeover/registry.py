"""Name -> factory registries, so an estimator, gate, human model or scenario plugs in with
one class and one ``register`` line, and a typo names the closest valid choice."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def closest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ``did you mean`` hint for error messages; empty when nothing is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean {match[0]!r}?" if match else ""


class Registry(Generic[T]):
    """A named table of factories of one kind (``what`` names the kind in errors)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str, factory: Callable[..., T] | None = None) -> Any:
        """Add ``factory`` under ``name``; usable as a decorator. Re-registering the same
        object is a no-op so module reloads stay idempotent."""

        def add(f: Callable[..., T]) -> Callable[..., T]:
            old = self._items.get(name)
            if old is not None and old is not f and getattr(old, "__qualname__", None) != getattr(
                f, "__qualname__", None
            ):
                raise ValueError(f"{self.what} {name!r} is already registered to {old!r}")
            self._items[name] = f
            return f

        return add(factory) if factory is not None else add

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.what} {name!r}.{closest(name, self.names())} "
                f"Valid {self.what}s: {', '.join(self.names())}"
            ) from None

    def make(self, name: str, **kwargs: Any) -> T:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
