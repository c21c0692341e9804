"""posebench: a benchmark toolkit for pose-guided person image synthesis.

The CLI (`posebench ...`) is a thin layer over this package. Submodules are imported on use so that
`import posebench` stays cheap and works with the base install alone.
"""

from posebench._version import __version__
from posebench.errors import PosebenchError

__all__ = ["PosebenchError", "__version__"]
