"""User-written YAML (protocols, run configs, gate suites): read a mapping, refuse unknown keys with a did-you-mean."""

from __future__ import annotations

import difflib
from pathlib import Path
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


def read_yaml_mapping(path: Path | Any, error: type[PosebenchError] = PosebenchError, *, allow_empty: bool = False,
                      expected: str = "a mapping") -> dict[str, Any]:
    """The top-level mapping of a YAML file; `error` names the file for invalid YAML or another top-level type.

    `path` may also be an importlib.resources Traversable (built-in protocol files). `allow_empty`: an empty file
    reads as {} (its keys then get their defaults) instead of being refused.
    """
    import yaml

    source = Path(path) if isinstance(path, str) else path
    try:
        data = yaml.safe_load(source.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({exc})") from exc
    if data is None and allow_empty:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected {expected}")
    return data
