"""A flat name registry with lazy "module:attr" targets and did-you-mean errors (style rule R1).

The same class serves weight files, datasets, protocols, metric profiles, metrics and pose estimators,
so that adding one is a `register` call, never another branch of an if/elif chain.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Generic, TypeVar

from posebench.errors import PosebenchError

T = TypeVar("T")


class UnknownNameError(PosebenchError, KeyError):
    """A name that is not in a registry. The message lists near matches and every known name."""

    def __str__(self) -> str:  # KeyError would otherwise print the message in quotes
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps lower-kebab names to objects, or to "module:attr" strings imported on first `get`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, obj: T | None = None, *, target: str | None = None) -> None:
        if (obj is None) == (target is None):
            raise ValueError("register() takes exactly one of obj or target")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj if obj is not None else target  # type: ignore[assignment]

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(self.unknown_message(name))
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def unknown_message(self, name: str) -> str:
        names = sorted(self._entries)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(names) or '(none)'}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
