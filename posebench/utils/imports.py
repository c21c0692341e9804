"""Late imports of optional dependencies, failing with the install command (style rule R8)."""

from __future__ import annotations

import importlib.util

from posebench.errors import PosebenchError


class MissingDependencyError(PosebenchError, ModuleNotFoundError):
    """An optional dependency is not installed."""


def is_available(module: str) -> bool:
    """True when `module` can be found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, *, extra: str, feature: str) -> None:
    """Raise a clear error naming the extra to install when `module` is absent."""
    if not is_available(module):
        raise MissingDependencyError(
            f"{feature} needs `{module}`, which is not installed. "
            f"Install it with: pip install 'posebench[{extra}]'"
        )
