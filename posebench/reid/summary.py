"""The summary of a re-ID augmentation run: rows over seeds, the results document, the table and the plot.

Spread: the sample standard deviation (n - 1) over seeds; with one seed there is none, so `*_std` is null and the
table shows the mean alone. The published curves come from another, unknown re-ID setup: the plot draws them
(dashed, "published (other setup)") only for canonical runs, and leaves them out of a non-canonical one (a smoke
run's few identities and epochs give numbers on another scale), saying so in its title.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from posebench.reid.provenance import GeneratorTraining
from posebench.utils.io import atomic_open

METRICS = ("mAP", "rank1", "rank5", "rank10")
KIND = "reid-augment"  # `kind` of the results: report, regress and leaderboard add refuse this kind
SCHEMA_VERSION = 1  # the schema family of `posebench eval`'s results
RESULTS_FORMAT = "posebench-reid-augment"
SEEDS_HINT = "one seed: no spread shown; several seeds (e.g. --seeds 0,1,2) give mean ± std"


def aggregate(runs: list[dict[str, Any]], methods: list[str], fractions: list[float]) -> list[dict[str, Any]]:
    """One row per (method, fraction): mean and sample std over its seeds (std None for one seed)."""
    rows = []
    for method in methods:
        for f in fractions:
            sel = [r for r in runs if r["method"] == method and r["fraction"] == f]
            row: dict[str, Any] = {"method": method, "fraction": f, "n_seeds": len(sel),
                                   "seeds": [r["seed"] for r in sel]}
            for m in METRICS:
                vals = np.array([r["metrics"][m] for r in sel], dtype=float)
                row[f"{m}_mean"] = float(vals.mean())
                row[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else None
            rows.append(row)
    return rows


def cell(row: dict[str, Any], metric: str) -> str:
    """A table cell in %: `78.3 ± 1.2` over several seeds; one seed shows no spread (`78.3 (1 seed)` for mAP)."""
    mean = f"{100 * row[metric + '_mean']:.1f}"
    if row[metric + "_std"] is None:
        return f"{mean} (1 seed)" if metric == "mAP" else mean
    return f"{mean} ± {100 * row[metric + '_std']:.1f}"


def plot_note(n_departures: int, n_ids: int, epochs: int, image_size: tuple[int, int]) -> str:
    """The plot's title lines under the title: why the published curves are (not) comparable."""
    if not n_departures:
        return "published curves: another, unknown re-ID setup; compare gains over Standard, not mAP"
    return (f"non-canonical run ({n_departures} departure{'s' if n_departures > 1 else ''} from docs/reid.md): "
            f"{n_ids} ids, {epochs} epoch{'s' if epochs != 1 else ''}, {image_size[0]}x{image_size[1]}\n"
            "not comparable with the published curves (left out)")


def results_document(*, root: Path, fractions: list[float], seeds: list[int], settings: dict[str, Any],
                     versions: dict[str, Any], env: dict[str, Any], training: GeneratorTraining,
                     non_canonical: list[str], rows: list[dict[str, Any]], runs: list[dict[str, Any]],
                     published: list[dict[str, Any]]) -> dict[str, Any]:
    """results.json: `posebench eval`'s schema family (schema_version, kind, posebench, created, canonical,
    non_canonical_reasons, env) around the re-ID keys."""
    from posebench._version import __version__

    return {"schema_version": SCHEMA_VERSION, "kind": KIND, "posebench": __version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "canonical": not non_canonical, "non_canonical_reasons": list(non_canonical), "env": env,
            "format": RESULTS_FORMAT, "version": 1, "market_root": str(root), "fractions": fractions,
            "seeds": list(seeds), "settings": settings, "versions": versions,
            "generator_train_set": training.train_set, "generator_training": training.to_json(),
            "leakage_caveat": training.caveat, "rows": rows, "runs": runs,
            "published_for_reference": {"board": "market-reid", "rows": published, "plotted": not non_canonical,
                                        "note": "mAP % from another, unknown re-ID setup: compare gains over "
                                                "each setup's own baseline, not absolute values"}}


def plot(rows: list[dict[str, Any]], methods: list[str], path: Path, published: list[dict[str, Any]],
         note: str, draw_published: bool) -> None:
    """map_vs_fraction.png; its title and the PNG's Title/Description text chunks carry `note` and the series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    labels = []
    for method in methods:
        sel = sorted((r for r in rows if r["method"] == method), key=lambda r: r["fraction"])
        spread = [r["mAP_std"] for r in sel]
        yerr = None if all(s is None for s in spread) else [100 * (s or 0.0) for s in spread]
        ax.errorbar([100 * r["fraction"] for r in sel], [100 * r["mAP_mean"] for r in sel], yerr=yerr, marker="o",
                    capsize=3, label=method)
        labels.append(method)
    for pub in published if draw_published else []:
        xs, ys = zip(*pub["points"], strict=True)
        label = f"{pub['method']} published (other setup)"
        ax.plot([100 * x for x in xs], ys, linestyle="--", marker="x", alpha=0.5, linewidth=1, label=label)
        labels.append(label)
    title = "Market-1501 re-ID augmentation"
    ax.set_title(f"{title}\n{note}", fontsize="small")
    ax.set_xlabel("real training images kept (%)")
    ax.set_ylabel("mAP (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120,
                    metadata={"Title": title, "Description": f"{note}\nseries: {'; '.join(labels)}"})
    plt.close(fig)


def print_summary(rows: list[dict[str, Any]], console, training: GeneratorTraining, kind: str,
                  non_canonical: list[str]) -> None:
    """The rich table, then the seeds hint, what is known of the generator, and the non-canonical reasons."""
    from rich.table import Table

    table = Table(title="Re-ID augmentation, % (mean ± std over seeds)")
    for col in ("method", "fraction", "seeds", "mAP", "Rank-1", "Rank-5", "Rank-10"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(r["method"], f"{r['fraction']:g}", str(r["n_seeds"]), *(cell(r, m) for m in METRICS))
    console.print(table)
    if any(r["n_seeds"] == 1 for r in rows):
        console.print(f"Note: {SEEDS_HINT}.", soft_wrap=True)
    for line in generator_lines(training, kind):
        console.print(line, soft_wrap=True)
    if non_canonical:
        console.print(f"Non-canonical ({len(non_canonical)} departure{'s' if len(non_canonical) > 1 else ''} from "
                      "docs/reid.md): " + "; ".join(non_canonical) + ".", soft_wrap=True)


def generator_lines(training: GeneratorTraining, kind: str) -> list[str]:
    """What is printed about the generator's training data (nothing for `none`)."""
    if kind == "none":
        return []
    if kind == "copy-source":
        return [f"Generator: {training.description}; no leakage caveat."]
    lines = [f"Generator trained on: {training.description}."]
    if training.caveat:
        lines.append(f"Caveat: {training.caveat}.")
    return lines
