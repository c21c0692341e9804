"""posebench: a benchmark toolkit for pose-guided person image synthesis.

The CLI (`posebench ...`) is a thin layer over this package. Submodules are imported on use so that
`import posebench` stays cheap and works with the base install alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from posebench._version import __version__
from posebench.errors import PosebenchError

if TYPE_CHECKING:
    from posebench.run.config import EvalConfig

__all__ = ["PosebenchError", "__version__", "evaluate", "load_results"]


def evaluate(config: EvalConfig | None = None, /, **kwargs: Any) -> dict[str, Any]:
    """Score generated images; the Python API behind `posebench eval`.

    Pass an `EvalConfig` (`posebench.run.config`), or its fields as keywords, e.g.
    `posebench.evaluate(protocol="deepfashion-256x176", root=..., pred=..., out="results.json")`, or two plain
    folders: `posebench.evaluate(protocol=None, root=None, pred=..., gt=..., out=...)`.
    Returns the results dict that was written to `out`.
    """
    from posebench.run.config import EvalConfig
    from posebench.run.evaluator import evaluate as _evaluate

    if config is None:
        kwargs.setdefault("protocol", None)
        kwargs.setdefault("root", None)
        config = EvalConfig(**kwargs)
    return _evaluate(config)


def load_results(path: str) -> dict[str, Any]:
    """Read a results JSON (refuses unknown schema versions)."""
    from posebench.results.schema import read_results

    return read_results(path)
