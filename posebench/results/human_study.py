"""Human-study results (`kind: human-study`, written by `posebench study score`) in the results schema family.

A study results file holds every method of one study: `metrics` has `r2g` (all real images), and per method
`r2g/METHOD`, `g2r/METHOD`, `jab/METHOD` (percent, with the bootstrap interval in `details.ci95`); `methods`
lists the methods with their inputs. `report` shows such files as a table per study, `leaderboard add
human-study` takes one method's row from it (`method_view`), `regress` refuses it (no per-image values to gate).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posebench.results.schema import ResultsError, metric_value

KIND = "human-study"
PROTOCOL = "human-study"
METRICS = ("g2r", "jab", "r2g")  # per method; the board's metrics
HIGHER_IS_BETTER = {"g2r": True, "jab": True, "r2g": True}  # PATN's reading; see docs/study.md
TITLES = {"r2g": "R2G: real judged generated", "g2r": "G2R: generated judged real", "jab": "JAB: judged best"}


def metric_key(metric: str, method: str) -> str:
    return f"{metric}/{method}"


def is_study(data: Any) -> bool:
    return isinstance(data, dict) and data.get("kind") == KIND


def file_is_study(path: str | Path) -> bool:
    """Whether a results file is a study's (unreadable files are left to the reader that reports them)."""
    try:
        return is_study(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def check_study(data: dict[str, Any], where: str) -> None:
    """The study-specific part of `validate_results`: the method list and each method's three metrics."""
    methods = data.get("methods")
    if not isinstance(methods, list) or not methods or not all(
            isinstance(m, dict) and isinstance(m.get("label"), str) and m["label"] for m in methods):
        raise ResultsError(f"{where}: a human-study results file lists its methods in `methods` ([{{label, ...}}])")
    for m in methods:
        for metric in METRICS:
            key = metric_key(metric, m["label"])
            if key not in data["metrics"]:
                raise ResultsError(f"{where}: metrics.{key} is missing (every method has {', '.join(METRICS)})")
    for name, m in data["metrics"].items():
        value = metric_value(m["value"])
        if not math.isnan(value) and not 0 <= value <= 100:
            raise ResultsError(f"{where}: metrics.{name}.value: {value!r} is not a percentage (0 to 100)")


def labels(data: dict[str, Any]) -> list[str]:
    return [m["label"] for m in data["methods"]]


def method_view(data: dict[str, Any], method: str, where: str) -> dict[str, Any]:
    """One method's row of a study as a results dict a board takes: metrics `g2r`, `jab`, `r2g` of that method and
    the hash of the images of it the study showed.

    Raises:
        ResultsError: the study has no such method (the message lists its methods).
    """
    names = labels(data)
    if method not in names:
        raise ResultsError(f"{where} has no method {method!r}; its methods: {', '.join(names)} (pass --study-method "
                           "NAME to pick one when the row's --method label differs)")
    info = next(m for m in data["methods"] if m["label"] == method)
    view = dict(data)
    view["metrics"] = {metric: data["metrics"][metric_key(metric, method)] for metric in METRICS}
    view["predictions"] = {**data["predictions"], "images_sha256": info.get("images_sha256")}
    return view


# ------------------------------------------------------------------------------------------------------- report


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(m: dict[str, Any] | None) -> str:
    if m is None:
        return '<td class="num muted">–</td>'
    value = metric_value(m["value"])
    if math.isnan(value):
        return '<td class="num muted">no judgements</td>'
    lo, hi = (m.get("details") or {}).get("ci95", [math.nan, math.nan])
    return (f'<td class="num">{value:.1f} <span class="muted">[{metric_value(lo):.1f}, {metric_value(hi):.1f}] '
            f'n={_e(m["n"])}</span></td>')


def study_section(data: dict[str, Any], path: Path, label: str) -> str:
    """One study as HTML: a row per method (R2G, G2R, JAB with 95% intervals), participants and exclusions."""
    metrics = data["metrics"]
    head = "".join(f"<th>{_e(TITLES[m])} {'↑' if HIGHER_IS_BETTER[m] else '↓'}</th>" for m in ("r2g", "g2r", "jab"))
    rows = "".join(f"<tr><td>{_e(name)}</td>"
                   + "".join(_cell(metrics.get(metric_key(m, name))) for m in ("r2g", "g2r", "jab")) + "</tr>"
                   for name in labels(data))
    rows += ('<tr><td class="muted">all real images</td>' + _cell(metrics.get("r2g"))
             + '<td class="muted"></td><td class="muted"></td></tr>')
    people = data.get("participants") or {}
    counts = ", ".join(f"{people.get(k, 0)} {k}" for k in ("complete", "partial", "excluded", "without answers"))
    boot = data.get("bootstrap") or {}
    excl = "".join(f"<li>participant {_e(x.get('participant'))}: {_e(x.get('reason'))}</li>"
                   for x in data.get("exclusions") or [])
    study = data.get("study") or {}
    return (f'<section class="study"><h3>{_e(label)}</h3>'
            f'<div class="muted">results <code>{_e(path)}</code> · study <code>{_e(study.get("folder"))}</code> '
            f'manifest <code>{_e(study.get("manifest_sha256"))}</code></div>'
            f'<table class="study-table"><tr><th>method</th>{head}</tr>{rows}</table>'
            f'<p>participants: {_e(counts)} (partial participants count with the answers they gave). '
            f'Percent; [95% interval]: {_e(boot.get("method", ""))}, {_e(boot.get("resamples"))} resamples, seed '
            f'{_e(boot.get("seed"))}; n = judgements.</p>'
            + (f"<div>excluded:<ul>{excl}</ul></div>" if excl else '<div class="muted">no exclusions</div>')
            + "".join(f'<p class="warn">{_e(w)}</p>' for w in data.get("warnings") or [])
            + "</section>")


def study_page(paths: Sequence[Path], datas: Sequence[dict[str, Any]], page_labels: Sequence[str] | None,
               css: str, footer: str) -> str:
    """A report page of study results files: one table per study."""
    if page_labels and len(page_labels) != len(paths):
        raise ResultsError(f"got {len(page_labels)} --label for {len(paths)} results files; give one per file, in "
                           "the same order, or none")
    names = list(page_labels) if page_labels else [Path(str((d.get("study") or {}).get("folder") or p.stem)).name
                                                   for p, d in zip(paths, datas, strict=True)]
    sections = "".join(study_section(d, p, n) for p, d, n in zip(paths, datas, names, strict=True))
    title = "posebench report · human study"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{css}</style></head><body><header><h1>{_e(title)}</h1><div class=\"muted\">{len(paths)} study "
            f"results file{'s' if len(paths) > 1 else ''}: R2G, G2R and JAB per method (docs/study.md)</div>"
            f'</header><section id="studies"><h2>Studies</h2>{sections}</section>{footer}</body></html>\n')
