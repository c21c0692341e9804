"""Collecting data problems: every problem with its file and line, reported together, not one at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from posebench.errors import PosebenchError

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    message: str
    hint: str = ""
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        tag = "" if self.severity == "error" else "warning: "
        return f"{where}: {tag}{self.message}" + (f" — {self.hint}" if self.hint else "")

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "message": self.message, "hint": self.hint,
                "severity": self.severity}


class DataError(PosebenchError):
    """One or more problems in a dataset root; the message lists them (the first `shown`)."""

    def __init__(self, problems: list[Problem], context: str, shown: int = 50) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        lines = [f"{context}: {len(errors)} problem(s)"]
        lines += [f"  {p}" for p in errors[:shown]]
        if len(errors) > shown:
            lines.append(f"  ... and {len(errors) - shown} more (see `posebench data verify --json`)")
        super().__init__("\n".join(lines))


@dataclass
class ProblemLog:
    problems: list[Problem] = field(default_factory=list)

    def error(self, file: str | Path, line: int | None, message: str, hint: str = "") -> None:
        self.problems.append(Problem(str(file), line, message, hint, "error"))

    def warning(self, file: str | Path, line: int | None, message: str, hint: str = "") -> None:
        self.problems.append(Problem(str(file), line, message, hint, "warning"))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def raise_if_errors(self, context: str) -> None:
        if self.errors:
            raise DataError(self.problems, context)
