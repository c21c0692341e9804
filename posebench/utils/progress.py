"""Progress bars that also speak in CI logs.

rich draws its bars only on a terminal; without one (a CI log, `| tee`), it shows nothing until the work ends. This
`Progress` is rich's, plus one plain line per task every `every` percent when the console is not a terminal, so a
long job in a log shows that it moves and how far it got.
"""

from __future__ import annotations

from typing import Any

from rich import get_console
from rich.progress import Progress as _RichProgress
from rich.progress import TaskID


class Progress(_RichProgress):
    def __init__(self, *columns: Any, every: float = 5.0, **kwargs: Any) -> None:
        console = kwargs.get("console") or get_console()
        self._plain = not kwargs.get("disable", False) and not console.is_terminal
        if self._plain:  # the plain lines only: rich would add its bar's last frame after them
            kwargs["disable"] = True
        super().__init__(*columns, **kwargs)
        self._every = every
        self._printed: dict[TaskID, int] = {}

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._plain_line(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._plain_line(task_id)

    def _plain_line(self, task_id: TaskID) -> None:
        if not self._plain:
            return
        task = self._tasks.get(task_id)
        if task is None or not task.total:
            return
        percent = 100.0 * task.completed / task.total
        step = int(percent // self._every)
        if step > self._printed.get(task_id, 0) or (task.completed >= task.total and task_id not in self._printed):
            self._printed[task_id] = step
            self.console.print(f"{task.description}: {task.completed:g}/{task.total:g} ({percent:.0f}%)",
                               highlight=False, markup=False)
