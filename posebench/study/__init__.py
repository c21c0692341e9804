"""The human perception study kit (paper section 4.2): R2G, G2R and JAB as a local web study.

`build` turns results files and their sample folders into a self-contained study folder (`folder` writes and
checks its manifest), `server` serves it and records answers through `store` (SQLite, append-only), `score`
turns the answers into a results file. The CLI is `posebench study make | serve | score`; see docs/study.md.
"""

from __future__ import annotations

from posebench.errors import PosebenchError


class StudyError(PosebenchError):
    """A study that cannot be built, served or scored as asked (bad inputs, an edited folder, no answers)."""
