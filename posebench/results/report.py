"""`posebench report`: one self-contained HTML page comparing results files of one protocol.

The page holds a metric table per results file, a side-by-side comparison of the methods, per-image metric
histograms (matplotlib, Agg canvas, no pyplot state), grids of the worst and best pairs of each results file
(source | target pose | ground truth | each method's output, built with PIL) and a provenance footer.
Everything is inline: images are base64 PNG data URIs and the CSS is in a `<style>` element, so the file
opens offline and can be attached to an issue or a pull request as it is.

Every results file `posebench eval` writes can be reported: pair protocols (DeepFashion, Market), Human-Art pose
protocols and two plain folders. Results of different profiles are compared in separate tables (their numbers are
not comparable), never ranked against each other. Sample grids (pair protocols only) re-read the images, so the
dataset root and prediction folders recorded in each results file (`config.root`, `config.pred`) must still exist
for them; with `samples=0` the page is built from the results files and their per-image CSVs alone. Human-study
results (`posebench study score`) get a page of their own: a table per study (`posebench.results.human_study`).
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from posebench._version import __version__
from posebench.datasets.names import PairKey, match_generated_files
from posebench.errors import PosebenchError
from posebench.metrics.registry import known_direction
from posebench.results.human_study import file_is_study
from posebench.results.schema import read_results
from posebench.utils.io import atomic_write_text

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from posebench.datasets.index import SplitIndex

CELL_HEIGHT = 128  # px: every image of a sample grid is downscaled to this height
DEFAULT_SAMPLES = 6
RANK_METRIC = "ssim"  # the per-image metric that orders samples when a results file has it
_PAD = 6  # px between grid cells
_HEADER = 20  # px: column titles above a grid
_CAPTION = 16  # px: the value line under each row
_RANK_COL = 28  # px: the rank number left of each row
_NA_GREY = (200, 200, 200)


@dataclass
class ReportRun:
    """One results file with what the report needs from it.

    Attributes:
        path: the results JSON.
        label: column label (from `--label` or the prediction folder's name).
        data: the results dict as `read_results` returns it.
        columns: per-image metric names, in the CSV's order.
        values: image -> metric -> value (float; inf and nan as written by the evaluation); the image is a
            `PairKey` for pair protocols, else the tuple of the CSV's identity columns.
        id_columns: the per-image CSV's identity columns (`source,target`; `name`; `key,scenario,...`).
        root: dataset root recorded in the results config (None when not needed: no sample grids).
        pred: prediction folder recorded in the results config (None when not needed).
        files: pair -> generated image file, filled by `_match_files`.
    """

    path: Path
    label: str
    data: dict[str, Any]
    columns: list[str]
    values: dict[Any, dict[str, float]]
    id_columns: tuple[str, ...] = ("source", "target")
    root: Path | None = None
    pred: Path | None = None
    files: dict[PairKey, Path] = field(default_factory=dict)

    @property
    def is_pairs(self) -> bool:
        return self.id_columns == ("source", "target")

    @property
    def group(self) -> str:
        """Results of one group can be ranked against each other: the same protocol and profile (with version)."""
        return f"{self.data['protocol'].get('name')} · {_profile(self.data)}"

    @property
    def rank_metric(self) -> str | None:
        """The per-image metric that orders samples: SSIM when present, else the CSV's first metric."""
        if RANK_METRIC in self.columns:
            return RANK_METRIC
        return self.columns[0] if self.columns else None

    def higher_is_better(self, metric: str) -> bool:
        m = self.data["metrics"].get(metric)
        if isinstance(m, dict) and "higher_is_better" in m:
            return bool(m["higher_is_better"])
        known = known_direction(metric)
        return True if known is None else known


# ---------------------------------------------------------------------------------------------- loading


def _as_float(value: Any) -> float:
    """A metric value as a float: results files store inf / nan as strings (JSON has neither)."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _existing_dir(results: Path, value: Any, what: str, option: str) -> Path:
    """The folder a results file recorded, which must still exist for the report to show its images."""
    if not value:
        raise PosebenchError(f"{results}: the results config records no {what} ({option}); the report needs it "
                             "to show images. Re-run `posebench eval` with this posebench")
    path = Path(value)
    if not path.is_dir() and not path.is_absolute() and (results.parent / path).is_dir():
        path = results.parent / path  # recorded relative to a working directory that held the results file
    if not path.is_dir():
        raise PosebenchError(f"{results}: {what} {value} (config {option}) no longer exists; the report needs it "
                             f"to show images. Restore it or re-run `posebench eval` with the new location")
    return path


# identity columns the evaluator writes first in a per-image CSV (pairs; two plain folders; Human-Art)
ID_LAYOUTS = (("source", "target"), ("name",), ("key", "scenario", "image_id", "file"))


def read_per_image(results: Path, csv_path: Path) -> tuple[list[str], dict[Any, dict[str, float]], tuple[str, ...]]:
    """Read an evaluation's per-image CSV (identity columns, then one column per metric).

    Args:
        results: the results file that names the CSV (for messages).
        csv_path: the CSV.

    Returns:
        (metric columns in file order, image -> metric -> value, identity columns). The image is a `PairKey`
        for `source,target` files, else the tuple of identity values.

    Raises:
        PosebenchError: the file is missing or its header starts with none of the evaluator's identity layouts.
    """
    if not csv_path.is_file():
        raise PosebenchError(f"{results}: its per-image file {csv_path} is missing; the report needs it for the "
                             "distributions and the worst/best samples. Re-run `posebench eval` to write it")
    with csv_path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    ids = next((layout for layout in ID_LAYOUTS if rows and tuple(rows[0][: len(layout)]) == layout), None)
    if ids is None:
        expected = " or ".join(",".join(layout) for layout in ID_LAYOUTS)
        raise PosebenchError(f"{csv_path}: expected a header starting {expected} (a posebench per-image CSV)")
    k = len(ids)
    columns = rows[0][k:]
    values: dict[Any, dict[str, float]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise PosebenchError(f"{csv_path}:{line}: {len(row)} fields, the header has {len(rows[0])}")
        key = PairKey(row[0], row[1]) if k == 2 else tuple(row[:k])
        values[key] = {c: _as_float(v) for c, v in zip(columns, row[k:], strict=True)}
    return columns, values, ids


def load_run(path: str | Path, label: str | None = None, *, images: bool = True) -> ReportRun:
    """Read one results file with its per-image CSV; with `images`, check that the dataset root and prediction
    folder its sample grids need still exist (pair protocols only: the others have no grids).

    Raises:
        PosebenchError: unknown schema version, another kind of results file, missing per-image CSV, or (with
            `images`) a dataset root / prediction folder that no longer exists.
    """
    path = Path(path)
    data = read_results(path)
    if data.get("kind") == "human-study":
        raise PosebenchError(f"{path} is a human-study results file (posebench study score): `posebench report` shows "
                             "it as a page of its own (give it alone or with other study files); the comparison "
                             "exports (--csv, --latex) are for `posebench eval` results")
    name = data.get("per_image_file")
    if not name:
        raise PosebenchError(f"{path}: names no per-image file (per_image_file); the report needs per-image "
                             "values. Re-run `posebench eval` to write them")
    columns, values, ids = read_per_image(path, path.parent / name)
    config = data.get("config") or {}
    recorded_pred = config.get("pred") or data["predictions"].get("dir")
    run = ReportRun(path, label or Path(str(recorded_pred or path.stem)).name, data, columns, values, ids)
    if images and run.is_pairs and data["protocol"].get("name") != "folders":
        run.root = _existing_dir(path, config.get("root"), "dataset root", "root")
        run.pred = _existing_dir(path, recorded_pred, "prediction folder", "pred")
    return run


def _check_compatible(runs: Sequence[ReportRun]) -> None:
    """All results files must share the protocol (name and version) and the split (profiles may differ: they are
    compared in separate tables)."""
    first = runs[0]

    def proto(r: ReportRun) -> str:
        return f"{r.data['protocol'].get('name')} v{r.data['protocol'].get('version')}"

    for r in runs[1:]:
        if proto(r) != proto(first):
            raise PosebenchError(f"results of different protocols cannot share a report: {first.path} is "
                                 f"{proto(first)}, {r.path} is {proto(r)}")
        a, b = first.data["dataset"].get("split"), r.data["dataset"].get("split")
        if a != b:
            raise PosebenchError(f"results of different splits cannot share a report: {first.path} scored split "
                                 f"{a!r}, {r.path} scored split {b!r}")


def _unique_labels(runs: Sequence[ReportRun], labels: Sequence[str] | None) -> None:
    if labels:
        if len(labels) != len(runs):
            raise PosebenchError(f"got {len(labels)} --label for {len(runs)} results files; give one per file, "
                                 "in the same order, or none")
        for r, lab in zip(runs, labels, strict=True):
            r.label = lab
        return
    seen: dict[str, int] = {}
    for r in runs:  # two prediction folders with the same name: tell them apart by the results file
        seen[r.label] = seen.get(r.label, 0) + 1
    for r in runs:
        if seen[r.label] > 1:
            r.label = f"{r.label} [{r.path.stem}]"


def _match_files(run: ReportRun, known: set[str]) -> None:
    """Map the prediction folder's files to pairs with the naming scheme the evaluation detected."""
    # files the evaluation did not score are skipped: the report only shows scored pairs
    found = match_generated_files(run.pred, scheme=run.data["predictions"].get("scheme"), known=known,
                                  wanted=run.values)
    for key, f in found.items():
        run.files.setdefault(key, f)


# ---------------------------------------------------------------------------------------------- samples


def select_samples(values: dict[PairKey, dict[str, float]], metric: str, higher_is_better: bool,
                   k: int) -> tuple[list[PairKey], list[PairKey]]:
    """The `k` worst and `k` best pairs by one per-image metric (NaN values are left out).

    Ties are broken by (source, target) so the choice is deterministic.

    Returns:
        (worst first, best first).
    """
    scored = [(v[metric], key) for key, v in values.items() if not math.isnan(v.get(metric, math.nan))]
    ascending = sorted(scored, key=lambda t: (t[0], t[1]))
    descending = sorted(scored, key=lambda t: (-t[0], t[1]))
    low, high = [key for _, key in ascending[:k]], [key for _, key in descending[:k]]
    return (low, high) if higher_is_better else (high, low)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _fit_text(draw, text: str, width: int, font) -> str:
    """`text`, shortened with an ellipsis until it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _cell(img: np.ndarray | None, size: tuple[int, int], note: str = "") -> PILImage.Image:
    """One grid cell of `size` = (W, H): the image downscaled, or a grey placeholder with a note."""
    from PIL import Image, ImageDraw

    w, h = size
    if img is None:
        cell = Image.new("RGB", (w, h), _NA_GREY)
        draw = ImageDraw.Draw(cell)
        font = _font(11)
        text = _fit_text(draw, note, w - 4, font)
        draw.text((w / 2, h / 2), text, fill=(80, 80, 80), font=font, anchor="mm")
        return cell
    return Image.fromarray(img).resize((w, h), Image.LANCZOS)


def _pose_image(split: SplitIndex, target: str, frame: tuple[int, int]) -> np.ndarray | None:
    """Stick figure of the target's first person at the ground-truth image size, or None."""
    from posebench.datasets.render import skeleton_image

    people = split.keypoints.get(target)
    if not people:
        return None
    kp = people[0]
    if kp.format not in ("openpose18", "coco17"):
        kp = kp.convert("openpose18")
    return skeleton_image(kp.rescale(frame))


def _fmt(value: float, digits: int = 4) -> str:
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def sample_grid(pairs: Sequence[PairKey], runs: Sequence[ReportRun], split: SplitIndex, metric: str,
                cell_height: int = CELL_HEIGHT, ranked: ReportRun | None = None) -> bytes:
    """A PNG grid: one row per pair; columns source | target pose | ground truth | each run's output.

    Column titles are drawn above the grid; under each method's output is its value of `metric` for that
    pair. A run that did not score a pair gets a grey "not scored" cell; the title of the `ranked` run (the one
    whose values chose the rows) is underlined.

    Args:
        pairs: rows, in order.
        runs: the results files (one output column each).
        split: the dataset split holding sources, targets and keypoints.
        metric: the per-image metric written under each output.
        cell_height: every image is downscaled to this height.
        ranked: the run whose values ordered the rows, if any.

    Returns:
        PNG bytes.
    """
    from PIL import Image, ImageDraw

    from posebench.images import read_rgb

    gts = {p: read_rgb(split.images[p.target]) for p in pairs}
    gh, gw = next(iter(gts.values())).shape[:2] if gts else (cell_height, cell_height)
    cw, ch = max(1, round(gw * cell_height / gh)), cell_height
    titles = ["source", "target pose", "ground truth", *(r.label for r in runs)]
    ncol = len(titles)
    row_h = ch + _CAPTION + _PAD
    width = _RANK_COL + ncol * (cw + _PAD)
    height = _HEADER + len(pairs) * row_h
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font, small = _font(12), _font(11)
    for j, title in enumerate(titles):
        x = _RANK_COL + j * (cw + _PAD) + cw / 2
        text = _fit_text(draw, title, cw + _PAD - 2, font)
        draw.text((x, _HEADER / 2), text, fill=(0, 0, 0), font=font, anchor="mm")
        if j >= 3 and runs[j - 3] is ranked:
            half = draw.textlength(text, font=font) / 2
            draw.line((x - half, _HEADER - 3, x + half, _HEADER - 3), fill=(0, 0, 0), width=1)
    for i, pair in enumerate(pairs):
        y = _HEADER + i * row_h
        gt = gts[pair]
        cells: list[tuple[np.ndarray | None, str, str]] = [
            (read_rgb(split.images[pair.source]), "", ""),
            (_pose_image(split, pair.target, gt.shape[:2]), "no keypoints", ""),
            (gt, "", ""),
        ]
        for r in runs:
            f = r.files.get(pair)
            value = r.values.get(pair, {}).get(metric, math.nan)
            cells.append((read_rgb(f) if f is not None else None, "not scored",
                          f"{metric} {_fmt(value, 3)}" if f is not None else ""))
        draw.text((_RANK_COL / 2, y + ch / 2), str(i + 1), fill=(0, 0, 0), font=font, anchor="mm")
        for j, (img, note, caption) in enumerate(cells):
            x = _RANK_COL + j * (cw + _PAD)
            grid.paste(_cell(img, (cw, ch), note), (x, y))
            if caption:
                draw.text((x + cw / 2, y + ch + _CAPTION / 2), _fit_text(draw, caption, cw + _PAD - 2, small),
                          fill=(40, 40, 40), font=small, anchor="mm")
    buf = io.BytesIO()
    grid.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- plots


def distribution_plot(metric: str, runs: Sequence[ReportRun], higher_is_better: bool) -> bytes:
    """A histogram of one per-image metric with one series per results file, as PNG bytes.

    Non-finite values (PSNR of identical images is +inf) cannot be binned; their count is given in the
    legend instead.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = []
    for r in runs:
        vals = np.array([v[metric] for v in r.values.values() if metric in v], dtype=np.float64)
        series.append((r.label, vals[np.isfinite(vals)], int((~np.isfinite(vals)).sum()), len(vals)))
    finite = [s[1] for s in series if len(s[1])]
    edges = np.histogram_bin_edges(np.concatenate(finite), bins=min(40, max(10, int(math.sqrt(
        sum(len(f) for f in finite)))))) if finite else np.linspace(0, 1, 11)
    fig = Figure(figsize=(5.6, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, vals, non_finite, n in series:
        legend = f"{label} (n={n})" + (f", {non_finite} non-finite not shown" if non_finite else "")
        if n == 0:
            legend = f"{label} (no {metric} values)"
        ax.hist(vals, bins=edges, alpha=0.55, label=legend, edgecolor="none")
    arrow = "↑ higher is better" if higher_is_better else "↓ lower is better"
    ax.set_title(f"{metric} per image ({arrow})", fontsize=10)
    ax.set_xlabel(metric)
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;margin:24px auto;
  max-width:1150px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin:20px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px}th,td{border:1px solid #d5d5d8;padding:3px 9px;text-align:left}
th{background:#f3f3f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:700;background:#eef8ee}.muted{color:#777}.warn{color:#9a5b00}
.runs{display:flex;flex-wrap:wrap;gap:18px}.run{border:1px solid #e2e2e6;border-radius:6px;padding:8px 14px;
  flex:1 1 340px}
.plots{display:flex;flex-wrap:wrap;gap:10px}figure{margin:6px 0}figcaption{font-size:12px;color:#555}
img{max-width:100%;height:auto}code{font-size:12px;word-break:break-all}
footer{margin-top:36px;font-size:12px;color:#444;border-top:1px solid #ddd;padding-top:8px}
ol.pairs{font-size:12px;margin:4px 0 0;padding-left:22px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="{_e(alt)}">'


def _arrow(higher: bool) -> str:
    return "↑" if higher else "↓"


def _canonical(data: dict[str, Any]) -> str:
    if data.get("canonical"):
        return "✓ canonical"
    reasons = "; ".join(data.get("non_canonical_reasons") or [])
    return f'<span class="warn" title="{_e(reasons)}">† non-canonical</span>'


def _profile(data: dict[str, Any]) -> str:
    return f"{data['profile'].get('name')}@{data['profile'].get('version')}"


def _metric_names(runs: Sequence[ReportRun]) -> list[str]:
    names: list[str] = []
    for r in runs:
        names += [m for m in r.data["metrics"] if m not in names]
    return names


def _run_section(r: ReportRun) -> str:
    rows = []
    for name, m in r.data["metrics"].items():
        se = m.get("stderr")
        details = ", ".join(f"{k} {v}" for k, v in (m.get("details") or {}).items() if v not in (0, None, {}))
        rows.append(f'<tr><td>{_e(name)} {_arrow(r.higher_is_better(name))}</td>'
                    f'<td class="num">{_fmt(_as_float(m["value"]))}</td>'
                    f'<td class="num">{"–" if se is None else _fmt(_as_float(se))}</td>'
                    f'<td class="num">{_e(m["n"])}</td><td class="muted">{_e(details)}</td></tr>')
    warnings = "".join(f'<li class="warn">{_e(w)}</li>' for w in r.data.get("warnings") or [])
    flags = ", ".join(r.data.get("flags") or []) or "none"
    return (f'<div class="run"><h3>{_e(r.label)}</h3>'
            f'<div class="muted">results <code>{_e(r.path)}</code><br>predictions <code>'
            f'{_e(r.pred or r.data["predictions"].get("dir"))}</code></div>'
            f'<p>profile {_e(_profile(r.data))} · {_canonical(r.data)} · flags: {_e(flags)}</p>'
            '<table><tr><th>metric</th><th>value</th><th>± stderr</th><th>n</th><th>details</th></tr>'
            + "".join(rows) + "</table>"
            + (f"<div>warnings:<ul>{warnings}</ul></div>" if warnings else '<div class="muted">no warnings</div>')
            + "</div>")


def _comparison(runs: Sequence[ReportRun]) -> str:
    head = "".join(f"<th>{_e(r.label)}</th>" for r in runs)
    rows = []
    for name in _metric_names(runs):
        higher = next(r.higher_is_better(name) for r in runs if name in r.data["metrics"])
        vals = [_as_float(r.data["metrics"][name]["value"]) if name in r.data["metrics"] else math.nan for r in runs]
        valid = [v for v in vals if not math.isnan(v)]
        best = (max(valid) if higher else min(valid)) if len(valid) > 1 else None
        cells = []
        for r, v in zip(runs, vals, strict=True):
            m = r.data["metrics"].get(name)
            if m is None:
                cells.append('<td class="num muted">–</td>')
                continue
            se = m.get("stderr")
            text = _fmt(v) + ("" if se is None else f" ± {_fmt(_as_float(se))}")
            cls = "num best" if best is not None and v == best else "num"
            cells.append(f'<td class="{cls}">{text} <span class="muted">n={_e(m["n"])}</span></td>')
        rows.append(f"<tr><td>{_e(name)} {_arrow(higher)}</td>{''.join(cells)}</tr>")
    def scored(r: ReportRun) -> str:
        total = r.data["dataset"].get("pairs")
        return f"{len(r.values)}" + (f" of {total}" if total is not None else "")

    meta = [
        ("profile", [_e(_profile(r.data)) for r in runs]),
        ("canonical", [_canonical(r.data) for r in runs]),
        ("images scored", [_e(scored(r)) for r in runs]),
        ("warnings", [_e(len(r.data.get("warnings") or [])) for r in runs]),
    ]
    for name, cells_ in meta:
        rows.append(f'<tr><td class="muted">{name}</td>' + "".join(f"<td>{c}</td>" for c in cells_) + "</tr>")
    return (f'<table class="compare"><tr><th>metric</th>{head}</tr>{"".join(rows)}</table>'
            '<p class="muted">↑ higher is better, ↓ lower is better; bold: best of the row; value ± standard '
            "error, n = images scored; † non-canonical (see each file's reasons).</p>")


def _samples_section(r: ReportRun, i: int, runs: Sequence[ReportRun], split: SplitIndex, k: int) -> str:
    metric = r.rank_metric
    if metric is None:
        return f'<h3>{_e(r.label)}</h3><p class="muted">no per-image metric to rank by</p>'
    worst, best = select_samples(r.values, metric, r.higher_is_better(metric), k)
    others = [o for o in runs if o is not r]
    names = " | ".join(_e(o.label) + (" (ranked, underlined)" if o is r and len(runs) > 1 else "") for o in runs)
    out = []
    for kind, pairs in (("worst", worst), ("best", best)):
        title = f"{r.label}: {kind} {len(pairs)} by {metric} {_arrow(r.higher_is_better(metric))}"
        items = "".join(
            f'<li data-source="{_e(p.source)}" data-target="{_e(p.target)}">{_e(p.source)} → {_e(p.target)}: '
            f"{_e(metric)} {_fmt(r.values[p][metric])}"
            + "".join(f" · {_e(o.label)} {_fmt(o.values[p].get(metric, math.nan))}" for o in others
                      if p in o.values)
            + "</li>" for p in pairs)
        grid = _img(sample_grid(pairs, runs, split, metric, ranked=r), title) if pairs else ""
        out.append(f'<section class="samples" id="samples-{i}-{kind}" data-kind="{kind}" data-metric="{_e(metric)}">'
                   f"<h3>{_e(title)}</h3><figure>{grid}<figcaption>columns: source | target pose (skeleton "
                   f"of the target keypoints) | ground truth | {names}"
                   f'</figcaption></figure><ol class="pairs">{items}</ol></section>')
    return "".join(out)


def _provenance(runs: Sequence[ReportRun]) -> str:
    proto = runs[0].data["protocol"]
    rows = "".join(
        f"<tr><td>{_e(r.label)}</td><td>{_e(r.data.get('posebench'))}</td><td>{_e(r.data.get('created', '–'))}</td>"
        f"<td>{_e(_profile(r.data))} <code>{_e(r.data['profile'].get('sha256', '–'))}</code></td>"
        f"<td><code>{_e(r.data['dataset'].get('pairs_sha256', '–'))}</code></td>"
        f"<td><code>{_e(r.data['predictions'].get('images_sha256', '–'))}</code></td></tr>" for r in runs)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return (f"<footer><b>Provenance.</b> Report written by posebench {_e(__version__)} at {_e(now)}. Protocol "
            f"{_e(proto.get('name'))} v{_e(proto.get('version'))} <code>{_e(proto.get('sha256', '–'))}</code>, "
            f"split {_e(runs[0].data['dataset'].get('split'))}."
            "<table><tr><th>results</th><th>posebench</th><th>created</th><th>profile sha256</th>"
            f"<th>pairs_sha256</th><th>images_sha256</th></tr>{rows}</table></footer>")


def build_report(results_paths: Sequence[str | Path], labels: Sequence[str] | None = None,
                 samples: int = DEFAULT_SAMPLES) -> str:
    """Build the self-contained HTML report of one or more results files of one protocol.

    Args:
        results_paths: results JSON files written by `posebench eval`, each with its per-image CSV beside it.
        labels: one column label per results file, in order (default: each prediction folder's name).
        samples: worst and best pairs shown per results file (0: no sample grids).

    Returns:
        The HTML page (images inline as base64 PNG, CSS inline, no scripts, no external requests).

    Raises:
        PosebenchError: no results files; results of different protocols or splits; a missing per-image CSV;
            a dataset root or prediction folder that no longer exists; an unknown schema version; labels that
            do not match the files.

    Example:
        >>> html = build_report(["oracle.json", "copy.json"], labels=["oracle", "copy"])  # doctest: +SKIP
    """
    if not results_paths:
        raise PosebenchError("give at least one results file")
    if samples < 0:
        raise PosebenchError(f"--samples must be >= 0, got {samples}")
    studies = [Path(p) for p in results_paths if file_is_study(p)]
    if studies:
        return _study_report(studies, [Path(p) for p in results_paths], labels)
    runs = load_runs(results_paths, labels, images=samples > 0)

    first = runs[0].data
    split_name = first["dataset"].get("split")
    split = _split_for_samples(runs, split_name) if samples else None

    notes = []
    groups = group_runs(runs)
    if len(groups) > 1:
        notes.append(f"these results use {len(groups)} profiles ({'; '.join(groups)}): each is compared in its own "
                     "table and nothing is ranked across them, as their numbers are not comparable")
    if samples and split is None:
        notes.append("sample grids are drawn for pair protocols (source, target, ground truth); these results "
                     "have none")
    pair_hashes = {r.data["dataset"].get("pairs_sha256") for r in runs}
    if len(pair_hashes) > 1:
        notes.append("the results files were scored on different pair lists (pairs_sha256 differs): "
                     "compare with care")
    roots = {str(r.root.resolve()) for r in runs if r.root is not None}
    if len(roots) > 1:
        notes.append(f"the results files name different dataset roots; images are shown from {runs[0].root}")

    plots = []
    metrics_per_image: list[str] = []
    for r in runs:
        metrics_per_image += [c for c in r.columns if c not in metrics_per_image]
    for m in metrics_per_image:
        higher = next(r.higher_is_better(m) for r in runs if m in r.columns)
        png = distribution_plot(m, [r for r in runs if m in r.columns], higher)
        plots.append(f"<figure>{_img(png, f'{m} per image')}</figure>")

    proto = first["protocol"]
    title = f"posebench report · {proto.get('name')} v{proto.get('version')}"
    parts = [
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(title)}</h1><div class=\"muted\">split {_e(split_name)} · {len(runs)} results file"
        f"{'s' if len(runs) > 1 else ''}: {_e(', '.join(r.label for r in runs))}</div>",
        "".join(f'<p class="warn">{_e(n)}</p>' for n in notes),
        "</header>",
        '<section id="comparison"><h2>Comparison</h2>'
        + "".join((f"<h3>{_e(name)}</h3>" if len(groups) > 1 else "") + _comparison(members)
                  for name, members in groups.items()) + "</section>",
        f'<section id="runs"><h2>Results files</h2><div class="runs">{"".join(_run_section(r) for r in runs)}'
        "</div></section>",
        f'<section id="distributions"><h2>Per-image distributions</h2><div class="plots">{"".join(plots)}</div>'
        "</section>",
    ]
    if samples and split is not None:
        parts.append('<section id="samples"><h2>Worst and best samples</h2>'
                     + "".join(_samples_section(r, i, runs, split, samples) for i, r in enumerate(runs))
                     + "</section>")
    parts += [_provenance(runs), "</body></html>\n"]
    return "".join(parts)


def _study_report(studies: list[Path], paths: list[Path], labels: Sequence[str] | None) -> str:
    """The page of human-study results files (`posebench study score`): a table per study."""
    from posebench.results.human_study import study_page

    if len(studies) != len(paths):
        other = next(p for p in paths if p not in studies)
        raise PosebenchError(f"{studies[0]} is a human-study results file and {other} is not: report them in two "
                             "pages (human judgements and image metrics are not compared in one table)")
    datas = [read_results(p) for p in studies]
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    footer = (f"<footer><b>Provenance.</b> Report written by posebench {_e(__version__)} at {_e(now)}. Each study "
              "names its folder and manifest sha256; its build.json records the seed and inputs that rebuild it."
              "</footer>")
    return study_page(studies, datas, labels, _CSS, footer)


def group_runs(runs: Sequence[ReportRun]) -> dict[str, list[ReportRun]]:
    """The runs by `ReportRun.group` (protocol + profile), in order: only runs of one group are ranked together."""
    groups: dict[str, list[ReportRun]] = {}
    for r in runs:
        groups.setdefault(r.group, []).append(r)
    return groups


def load_runs(results_paths: Sequence[str | Path], labels: Sequence[str] | None = None, *,
              images: bool = False) -> list[ReportRun]:
    """The results files of one report, checked to share protocol and split, with their labels."""
    runs = [load_run(p, images=images) for p in results_paths]
    _check_compatible(runs)
    _unique_labels(runs, labels)
    return runs


def _split_for_samples(runs: Sequence[ReportRun], split_name: str | None) -> SplitIndex | None:
    """The dataset split the sample grids read (pair protocols), with each run's files matched; None otherwise."""
    from posebench.datasets import manifest
    from posebench.datasets.problems import ProblemLog

    first = runs[0]
    if not first.is_pairs or first.root is None:
        return None
    index = manifest.load(first.data["dataset"].get("name") or first.data["protocol"]["name"].split("-")[0],
                          first.root, ProblemLog())
    if split_name not in index.splits:
        raise PosebenchError(f"{first.root} no longer has the {split_name!r} split that {first.path} scored")
    split = index.splits[split_name]
    for r in runs:
        _match_files(r, set(split.images))
    return split


def write_report(results_paths: Sequence[str | Path], out: str | Path, labels: Sequence[str] | None = None,
                 samples: int = DEFAULT_SAMPLES) -> Path:
    """`build_report` written atomically to `out` (checked first: a folder, below a file, read-only); returns `out`."""
    from posebench.utils.io import check_output_path

    out = check_output_path(out, "--out")
    atomic_write_text(out, build_report(results_paths, labels=labels, samples=samples))
    return out
