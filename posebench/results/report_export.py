"""The comparison of a `posebench report` as CSV (every value at full precision) and as LaTeX booktabs tables for a
paper: one table per protocol + profile group, as on the HTML page, since numbers of two profiles are not
comparable and are never ranked together."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence

from posebench.results.board_export import latex_escape
from posebench.results.report import ReportRun, _as_float, _metric_names, group_runs

_DAGGER = r"$^{\dagger}$"


def comparison_csv(runs: Sequence[ReportRun]) -> str:
    """One row per results file and metric: group, label, metric, value, stderr, n, canonical, results file."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["group", "label", "metric", "higher_is_better", "value", "stderr", "n", "canonical", "results"])
    for group, members in group_runs(runs).items():
        for r in members:
            for name, m in r.data["metrics"].items():
                se = m.get("stderr")
                writer.writerow([group, r.label, name, r.higher_is_better(name), repr(_as_float(m["value"])),
                                 "" if se is None else repr(_as_float(se)), m["n"], r.data.get("canonical"),
                                 str(r.path)])
    return buf.getvalue()


def _cell(value: float, digits: int = 4) -> str:
    if math.isnan(value):
        return "--"
    if math.isinf(value):
        return r"$\infty$" if value > 0 else r"$-\infty$"
    return f"{value:.{digits}f}"


def comparison_latex(runs: Sequence[ReportRun], digits: int = 4) -> str:
    """A booktabs table per group (needs `\\usepackage{booktabs}`): a row per results file, a column per metric
    with its direction arrow, the best value of each column in bold, a dagger on non-canonical results."""
    tables = []
    for group, members in group_runs(runs).items():
        names = _metric_names(members)
        higher = {n: next(r.higher_is_better(n) for r in members if n in r.data["metrics"]) for n in names}
        best = {}
        for n in names:
            vals = [_as_float(r.data["metrics"][n]["value"]) for r in members if n in r.data["metrics"]]
            finite = [v for v in vals if math.isfinite(v)]
            if len(finite) > 1:
                best[n] = max(finite) if higher[n] else min(finite)
        body = []
        for r in members:
            cells = []
            for n in names:
                if n not in r.data["metrics"]:
                    cells.append("--")
                    continue
                v = _as_float(r.data["metrics"][n]["value"])
                text = _cell(v, digits)
                cells.append(rf"\textbf{{{text}}}" if n in best and v == best[n] else text)
            mark = "" if r.data.get("canonical") else _DAGGER
            body.append(" & ".join([latex_escape(r.label) + mark, *cells]) + r" \\")
        head = " & ".join(["Method", *(latex_escape(n) + (r" $\uparrow$" if higher[n] else r" $\downarrow$")
                                      for n in names)]) + r" \\"
        label = re.sub(r"[^A-Za-z0-9:._-]", "-", group.replace(" · ", "-"))
        note = (r" \textsuperscript{\dag}: not canonical (see the results file's reasons)."
                if any(not r.data.get("canonical") for r in members) else "")
        tables.append("\n".join([
            r"\begin{table}[t]", r"\centering",
            rf"\caption{{{latex_escape(group)} (posebench). $\downarrow$/$\uparrow$: lower/higher is better; the "
            rf"best value per column is in bold.{note}}}",
            rf"\label{{tab:{label}}}",
            r"\begin{tabular}{l" + "r" * len(names) + "}", r"\toprule", head, r"\midrule", *body, r"\bottomrule",
            r"\end{tabular}", r"\end{table}"]))
    return "\n\n".join(tables) + "\n"
