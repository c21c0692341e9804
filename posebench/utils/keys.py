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


def _no_alias_loader() -> type:
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        """A SafeLoader that refuses aliases: a few bytes of nested `*ref`s expand to gigabytes (billion laughs), and
        no posebench file needs them."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.events.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, f"found the alias *{event.anchor}: posebench YAML files "
                                                  "take no anchors or aliases; write the values out", event.start_mark)
            return super().compose_node(parent, index)

    return NoAliasLoader


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + f" ... ({len(text) - limit} more characters)"


def read_yaml_mapping(path: Path | Any, error: type[PosebenchError] = PosebenchError, *, allow_empty: bool = False,
                      expected: str = "a mapping") -> dict[str, Any]:
    """The top-level mapping of a YAML file; `error` names the file for an unreadable file, text that is not UTF-8,
    invalid YAML (aliases refused), or another top-level type. Messages quote at most a few hundred characters.

    `path` may also be an importlib.resources Traversable (built-in protocol files). `allow_empty`: an empty file
    reads as {} (its keys then get their defaults) instead of being refused.
    """
    import yaml

    source = Path(path) if isinstance(path, str) else path
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the file as UTF-8") \
            from None
    try:
        data = yaml.load(text, Loader=_no_alias_loader())  # a SafeLoader: no Python objects are built
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({_short(str(exc))})") from None
    if data is None and allow_empty:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected {expected}")
    return data
