"""A board as data for other programs: JSON (`leaderboard list/show --json`), CSV and a LaTeX booktabs table
(`leaderboard export`).

Every format keeps the provenance a board carries: each row says whether it was reported (read from a paper, with
its confidence) or measured (a posebench results file, with profile and hashes).
"""

from __future__ import annotations

import csv
import io
import math
import re
from typing import Any

from posebench.results.leaderboard import CONFIDENCE, Board, BoardError, Entry
from posebench.results.schema import json_safe

FORMATS = ("csv", "latex")

# Markers for reported rows whose confidence is not `as-printed`, handed out in order of first use; the dagger is
# kept for non-canonical measured rows, as on the board itself.
_DAGGER = r"$^{\dagger}$"
_CONFIDENCE_MARKERS = (r"$^{*}$", r"$^{\ddagger}$", r"$^{\S}$", r"$^{\P}$", r"$^{\|}$")
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    # not special, but OT1-encoded fonts print other glyphs for them
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
}
_LATEX_RE = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))


def exact_text(entry: Entry, metric: str) -> str:
    """A value with nothing lost: the digits typed in the board file (`0.2330` stays `0.2330`; measured values are
    stored at full precision), else the shortest text that reads back as the same float; '' when missing."""
    if metric not in entry.values:
        return ""
    value = entry.values[metric]
    text = getattr(value, "text", None)  # set by the board loader: the number as it is written in the YAML file
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if text is not None:
        return str(text)
    return str(value) if isinstance(value, int) else repr(float(value))


def _number(value: float) -> float | int | str:
    """A JSON number (a plain float, not the loader's subclass); inf/NaN as strings, as in results files."""
    return json_safe(value if isinstance(value, int) else float(value))


# ---------------------------------------------------------------------------------------------------------
# JSON


def board_summary(board: Board) -> dict[str, Any]:
    """One row of `leaderboard list --json`."""
    kinds = [e.kind for e in board.entries]
    return {"board": board.name, "title": board.title, "protocol": board.protocol, "file": str(board.path),
            "metrics": dict(board.metrics), "reported": kinds.count("reported"), "measured": kinds.count("measured")}


def entry_json(entry: Entry, rank: int, metrics: list[str]) -> dict[str, Any]:
    """One row of `leaderboard show --json` with its provenance: the paper and source of a reported row, the
    results file, profile and hashes of a measured one. Values in the order of `metrics`, the board's."""
    measured = entry.kind == "measured"
    present = [m for m in metrics if m in entry.values]
    return {
        "rank": rank,
        "index": entry.index,
        "method": entry.method,
        "kind": entry.kind,
        "values": {m: _number(entry.values[m]) for m in present},
        "values_text": {m: exact_text(entry, m) for m in present},
        "confidence": entry.confidence,
        "profile": entry.profile_id,
        "profile_notes": list(entry.profile.get("notes", ())),
        "how": entry.how,
        "canonical": entry.canonical if measured else None,  # reported rows are not judged
        "where": entry.where,
        "source": dict(entry.source) or None,
        "paper": dict(entry.paper) or None,
        "results": json_safe(entry.results) if measured else None,
        "flags": list(entry.flags),
        "notes": list(entry.notes),
    }


def board_json(board: Board, sort: str | None = None) -> dict[str, Any]:
    """A whole board, rows ranked best first by `sort` (default: the board's first metric).

    Raises:
        BoardError: `sort` is not one of the board's metrics.
    """
    rows, metrics = board.ranked(sort), list(board.metrics)
    return {"board": board.name, "title": board.title, "protocol": board.protocol, "file": str(board.path),
            "metrics": dict(board.metrics), "sorted_by": sort or metrics[0], "notes": list(board.notes),
            "entries": [entry_json(e, rank, metrics) for rank, e in enumerate(rows, 1)]}


# ---------------------------------------------------------------------------------------------------------
# CSV


def to_csv(board: Board, sort: str | None = None) -> str:
    """Header row, then one row per entry, best first: rank, method, one column per metric (the exact values,
    see `exact_text`; empty when missing), kind, confidence, profile, canonical (measured rows only) and source."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")  # "\n": the file is written in text mode, which may translate it
    writer.writerow(["rank", "method", *board.metrics, "kind", "confidence", "profile", "canonical", "source"])
    for rank, e in enumerate(board.ranked(sort), 1):
        canonical = ("true" if e.canonical else "false") if e.kind == "measured" else ""
        writer.writerow([rank, e.method, *[exact_text(e, m) for m in board.metrics], e.kind, e.confidence or "",
                         e.profile_id, canonical, e.where])
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------------
# LaTeX


def latex_escape(text: str) -> str:
    """Text for a LaTeX document: & % $ # _ { } ~ ^ \\ (and < > |) escaped, on one line."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group()], " ".join(str(text).split()))


def best_values(board: Board, entries: list[Entry]) -> dict[str, float]:
    """Per metric, the best finite value among `entries` (lowest or highest by the metric's direction)."""
    best: dict[str, float] = {}
    for m in board.metrics:
        values = [float(e.values[m]) for e in entries if m in e.values and math.isfinite(e.values[m])]
        if values:
            best[m] = max(values) if board.higher_is_better(m) else min(values)
    return best


def _legend_text(text: str) -> str:
    return latex_escape(text.replace("`", ""))


def to_latex(board: Board, sort: str | None = None) -> str:
    """A booktabs table (needs `\\usepackage{booktabs}`): a column per metric with its direction arrow, the best
    value per metric in bold, method names escaped, and footnote-style markers, explained under the table, on
    non-canonical measured rows and on reported rows whose confidence is not `as-printed`."""
    rows = board.ranked(sort)
    best = best_values(board, rows)
    markers: dict[str, str] = {}  # confidence -> marker, in order of first use
    non_canonical: list[Entry] = []
    body = []
    for e in rows:
        mark = ""
        if e.kind == "measured" and not e.canonical:
            mark = _DAGGER
            non_canonical.append(e)
        elif e.kind == "reported" and e.confidence != "as-printed":
            conf = str(e.confidence)
            if conf not in markers:
                markers[conf] = _CONFIDENCE_MARKERS[len(markers)]
            mark = markers[conf]
        cells = []
        for m in board.metrics:
            if m not in e.values:
                cells.append("--")
                continue
            text = latex_escape(e.display(m))
            cells.append(rf"\textbf{{{text}}}" if best.get(m) == float(e.values[m]) else text)
        body.append(" & ".join([latex_escape(e.method) + mark, *cells]) + r" \\")
    arrows = {m: r"$\uparrow$" if board.higher_is_better(m) else r"$\downarrow$" for m in board.metrics}
    label = re.sub(r"[^A-Za-z0-9:._-]", "-", board.name)
    caption = (f"{latex_escape(board.title)}. $\\downarrow$/$\\uparrow$: lower/higher is better; the best value per "
               "column is in bold.")
    legend = [f"{mark} reported, confidence \\texttt{{{latex_escape(conf)}}}: {_legend_text(CONFIDENCE[conf])}."
              for conf, mark in markers.items()]
    if non_canonical:
        reasons = "; ".join(f"{e.method}: {', '.join(e.results.get('non_canonical_reasons') or ['not canonical'])}"
                            for e in non_canonical)
        legend.append(f"{_DAGGER} measured with posebench, not canonical ({latex_escape(reasons)}).")
    measured = [f"{e.method} ({e.profile_id})" for e in rows if e.kind == "measured"]
    if measured:
        legend.append(f"Measured with posebench (metric profile@version): {latex_escape('; '.join(measured))}.")
    sources = sorted({e.where for e in rows if e.kind == "reported"})
    if sources:
        legend.append(f"Reported rows copied from: {latex_escape('; '.join(sources))}.")
    out = [
        f"% {' '.join(board.title.split())} ({board.name}): generated by "
        f"`posebench leaderboard export {board.name} --format latex`",
        r"% needs \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{caption}}}",
        rf"\label{{tab:{label}}}",
        r"\begin{tabular}{l" + "r" * len(board.metrics) + "}",
        r"\toprule",
        " & ".join(["Method", *[f"{latex_escape(m)} {arrows[m]}" for m in board.metrics]]) + r" \\",
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
    ]
    if legend:
        out += [r"\par\smallskip{\footnotesize", *[f"{line}\\par" for line in legend], "}"]
    out += [r"\end{table}", ""]
    return "\n".join(out)


def check_format(fmt: str) -> None:
    """Raises BoardError naming the formats when `fmt` is not one of them."""
    if fmt not in FORMATS:
        raise BoardError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")


def export_board(board: Board, fmt: str, sort: str | None = None) -> str:
    """The board as text in `fmt` (one of FORMATS).

    Raises:
        BoardError: an unknown format, or `sort` is not one of the board's metrics.
    """
    check_format(fmt)
    return to_csv(board, sort) if fmt == "csv" else to_latex(board, sort)
