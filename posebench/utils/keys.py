"""Refusing unknown keys in user-written YAML (configs, suites) with a did-you-mean."""

from __future__ import annotations

import difflib
from typing import Any

from posebench.errors import PosebenchError


def check_keys(data: Any, known: set[str], where: str, error: type[PosebenchError] = PosebenchError,
               list_known: bool = False) -> None:
    """Raise `error` naming `where` if `data` is not a mapping or has a key outside `known`."""
    if not isinstance(data, dict):
        raise error(f"{where}: expected a mapping, got {type(data).__name__}")
    for key in data:
        if key not in known:
            near = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            listed = f" Known keys: {', '.join(sorted(known))}" if list_known else ""
            raise error(f"{where}: unknown key {key!r}{hint}{listed}")
