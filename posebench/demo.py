"""`posebench demo`: the whole benchmark loop offline, on the embedded default (synthetic people).

Stages, each resumable (a re-run with the same --out reuses what is finished):
  1. data: a synthetic DeepFashion-format dataset (`posebench data synth`), identities split train/test;
  2. pose: `synthetic-posenet` trained on the training people's exact keypoints (`posebench pose train`):
     the pose estimator of the AP / CAP / PCE metrics and of the reference model's gradient guidance;
  3. train: RePoseDM `demo-b1` and `demo-full` (guidance through that estimator), each for a share of the
     time budget (or its config's steps, whichever comes first);
  4. sample: every synthetic test pair with both runs; plus the trivial baselines copy-source and
     mean-train (posebench.baselines);
  5. eval: `posebench eval` on each folder with every metric whose weights are here (SSIM, PSNR always;
     pose metrics with the demo's estimator; LPIPS, FID, KID when the registry has their files, otherwise
     listed as skipped with the command that fetches them);
  6. a leaderboard (YAML + Markdown) and the HTML report, then a summary printed and written (demo.json).

The synthetic split is not the protocol's pinned split, so every result is non-canonical, and the pose
numbers come from a synthetic-domain estimator: both are said in the results and the summary.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from posebench.errors import PosebenchError
from posebench.utils.io import atomic_write_text

PROTOCOL = "deepfashion-256x176"
BOARD = "demo-synthetic"
METHODS = ("reposedm-b1", "reposedm-full", "copy-source", "mean-train")
BASELINE_METHODS = ("copy-source", "mean-train")
# metric -> registry files it needs (the clean profile's defaults)
OPTIONAL_METRICS: dict[str, tuple[str, ...]] = {"lpips": ("alexnet-tv-imagenet",), "fid": ("inception-fid-clean",),
                                                "kid": ("inception-fid-clean",)}
ALWAYS_METRICS = ("ssim", "psnr", "ap", "cap", "pce")


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of the demo; the defaults fit 10 minutes on 2 CPU cores (tests pass smaller ones)."""

    identities: int = 40
    poses: int = 4  # images per person: 12 ordered pairs per person
    test_fraction: float = 0.15  # 6 test people: 72 test pairs (sampling is the slow part on a CPU)
    shared_background: bool = True  # one backdrop per person, as DeepFashion's in-shop shoots
    image_size: tuple[int, int] = (128, 88)  # stored images (H, W); the protocol scores at 256x176
    pose_steps: int = 300
    pose_input: int = 64
    b1_config: str = "demo-b1"
    full_config: str = "demo-full"
    max_steps: int | None = None  # default: each config's train.max_steps
    sample_steps: int = 10  # DDIM; 20 gave the same SSIM (0.698 vs 0.701) at twice the time
    batch_size: int = 16  # sampling and evaluation
    seed: int = 0
    # Shares of the time budget: the two trainings (b1, full); the rest is data, pose network, sampling, eval.
    train_share: tuple[float, float] = (0.3, 0.47)


@dataclass
class DemoResult:
    out: Path
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    trained: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> steps, stopped_by
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> metric -> value
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> reason and command
    verdict: dict[str, bool] = field(default_factory=dict)  # "reposedm-b1 > baselines on ssim" -> bool
    paths: dict[str, str] = field(default_factory=dict)


def available_metrics() -> tuple[list[str], dict[str, str]]:
    """Metrics the demo computes, and the skipped ones with the reason and the command that fetches them."""
    from posebench import weights

    metrics = list(ALWAYS_METRICS)
    skipped: dict[str, str] = {}
    for metric, files in OPTIONAL_METRICS.items():
        missing = [f for f in files if weights.status(f) not in (weights.Status.VERIFIED, weights.Status.UNCHECKED)]
        if missing:
            skipped[metric] = (f"weights {', '.join(missing)} not in the cache ({weights.weights_dir()}); "
                               f"fetch with: posebench weights download {' '.join(missing)}")
        else:
            metrics.append(metric)
    return metrics, skipped


class _Stages:
    """Prints a header per stage and records its wall time."""

    def __init__(self, console: Any, result: DemoResult) -> None:
        self.console, self.result = console, result

    def run(self, name: str, title: str, fn: Callable[[], Any]) -> Any:
        self.console.rule(f"[bold]{title}")
        t0 = time.perf_counter()
        value = fn()
        self.result.stages[name] = round(time.perf_counter() - t0, 1)
        return value


def _write_full_config(path: Path, base: str, posenet: Path) -> None:
    """demo-full with the trained synthetic-domain estimator as its pose field, at CPU cost: first-order
    training (second order, eq. 15, runs at 0.48 it/s here vs 1.05) with lambda 0.1 (at 1 the field's pixel
    gradients left grid artifacts: SSIM 0.615), and Tweedie-only gradients in sampling."""
    text = (f"# posebench demo: {base} guided by the synthetic-posenet trained in this demo\n"
            f"base: {base}\nmodel:\n  guidance:\n    estimator: synthetic-posenet\n"
            f"    estimator_weights: {json.dumps(str(posenet.resolve()))}\n"
            "    train_mode: first-order\n    train_weight: 0.1\n    sample_grad: tweedie\n")
    atomic_write_text(path, text)


def _synth(plan: DemoPlan, root: Path, progress: bool) -> None:
    from posebench.datasets.synth import synthesize

    stamp = root / "posebench-demo-data.json"
    want = {"identities": plan.identities, "poses": plan.poses, "size": list(plan.image_size), "seed": plan.seed,
            "test_fraction": plan.test_fraction, "shared_background": plan.shared_background}
    if stamp.is_file():
        if json.loads(stamp.read_text()) == want:
            return
        raise PosebenchError(f"{root} holds demo data made with other settings ({stamp}); use another --out")
    synthesize("deepfashion", root, identities=plan.identities, poses=plan.poses,
                         size=plan.image_size, seed=plan.seed, test_fraction=plan.test_fraction, overwrite=True,
                         shared_background=plan.shared_background, progress=progress)
    atomic_write_text(stamp, json.dumps(want) + "\n")


def _train(config: str, root: Path, run: Path, seconds: float, max_steps: int | None,
           progress: bool) -> dict[str, Any]:
    from posebench.protocols import get_protocol
    from reposedm.config import load_config
    from reposedm.data import PairSource
    from reposedm.train import train

    spec = get_protocol(PROTOCOL)
    cfg = load_config(config)
    total = max_steps if max_steps is not None else cfg.train.max_steps
    if (run / "demo-train.json").is_file():
        return json.loads((run / "demo-train.json").read_text())  # finished earlier (steps or time)
    resume = (run / "config.json").is_file()  # started earlier: train() writes it before step 1
    result = train(cfg, source=PairSource(spec.dataset, root, "train"), out=run, resume=resume, max_steps=total,
                   progress=progress, max_seconds=max(seconds, 1.0))
    info = {"config": cfg.name, "steps": result.step, "stopped_by": result.stopped_by,
            "last_loss": result.losses[-1] if result.losses else None}
    atomic_write_text(run / "demo-train.json", json.dumps(info) + "\n")
    return info


def _evaluate(root: Path, pred: Path, out: Path, metrics: list[str], posenet: Path, batch_size: int,
              progress: bool) -> dict[str, Any]:
    from posebench.evaluation import EvalConfig, evaluate

    cfg = EvalConfig(protocol=PROTOCOL, root=root, pred=pred, out=out, metrics=tuple(metrics),
                     pose_estimator="synthetic-posenet", pose_weights=posenet, batch_size=batch_size,
                     progress=progress)
    return evaluate(cfg)


def _board(path: Path, metrics: list[str], results: dict[str, Path]) -> None:
    """A fresh board of the demo's measured rows (replaced on every run)."""
    import yaml

    from posebench.results.leaderboard import add_measured, measured_entry
    from posebench.results.schema import HIGHER_IS_BETTER, read_results
    from posebench.utils.io import sha256_file

    directions = {m: "higher" if HIGHER_IS_BETTER[m] else "lower" for m in metrics}
    head = {"schema_version": 1, "board": BOARD,
            "title": "posebench demo: synthetic people in DeepFashion format (non-canonical)",
            "protocol": PROTOCOL, "metrics": directions,
            "notes": ["synthetic split: not comparable with any published row",
                      "ap / cap / pce from synthetic-posenet, a synthetic-domain estimator trained by the demo"]}
    methods = list(results)
    # the first row is written with the head, so add_measured appends the others in place (block style)
    first_file = results[methods[0]]
    first = measured_entry(read_results(first_file), methods[0], metrics,
                           Path(os.path.relpath(first_file, path.parent)).as_posix(), sha256_file(first_file))
    atomic_write_text(path, yaml.safe_dump({**head, "entries": [first]}, sort_keys=False))
    for method in methods[1:]:
        add_measured(path, results[method], method)


def _verdict(metrics: dict[str, dict[str, float]]) -> dict[str, bool]:
    out = {}
    for model in ("reposedm-b1", "reposedm-full"):
        for metric in ("ssim", "ap"):
            ours = metrics.get(model, {}).get(metric, math.nan)
            best = max(metrics.get(b, {}).get(metric, math.nan) for b in BASELINE_METHODS)
            out[f"{model} beats both baselines on {metric}"] = bool(ours > best)
    return out


def run_demo(out: Path, *, minutes: float = 10.0, plan: DemoPlan | None = None, progress: bool = True,
             console: Any = None) -> DemoResult:
    """Run every stage (see the module docstring) into `out`; returns the summary (also `out/demo.json`).

    Raises:
        PosebenchError: a bad budget, or `out` holding demo data made with other settings.
    """
    from rich.console import Console

    from posebench.baselines import write_baseline
    from posebench.pose.train import train_pose
    from posebench.results.leaderboard import load_board, render_markdown
    from posebench.results.report import write_report
    from reposedm.generate import generate

    if not minutes > 0:
        raise PosebenchError(f"--minutes must be positive, got {minutes}")
    plan = plan or DemoPlan()
    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    budget = 60.0 * minutes
    result = DemoResult(out, 0.0)
    stages = _Stages(console, result)
    root, posenet = out / "data", out / "posenet.safetensors"

    stages.run("data", "1/6 data: synthetic people, DeepFashion format", lambda: _synth(plan, root, progress))

    def pose() -> None:
        if not posenet.is_file():
            summary = train_pose(root, "deepfashion", posenet, steps=plan.pose_steps, input_size=plan.pose_input,
                                 seed=plan.seed, progress=progress)
            err = summary["joint_error_px"]
            console.print(f"synthetic-posenet (a synthetic-domain estimator): joint error on the test people "
                          f"{err['untrained']:.1f} -> {err['trained']:.1f} px at {plan.pose_input} px input")

    stages.run("pose", "2/6 pose network: synthetic-posenet on the training people", pose)
    full_yaml = out / "configs" / "demo-full.yaml"
    _write_full_config(full_yaml, plan.full_config, posenet)

    runs = {"reposedm-b1": (plan.b1_config, out / "runs" / "b1"), "reposedm-full": (str(full_yaml),
                                                                                   out / "runs" / "full")}
    for (method, (config, run)), share in zip(runs.items(), plan.train_share, strict=True):
        seconds = share * budget
        info = stages.run(f"train {method}", f"3/6 train {method} (up to {seconds / 60:.1f} min)",
                          lambda c=config, r=run, s=seconds: _train(c, root, r, s, plan.max_steps, progress))
        result.trained[method] = info
        limit = "time budget reached" if info["stopped_by"] == "time" else "all configured steps"
        console.print(f"{method}: {info['steps']} steps ({limit})")

    gen = out / "generated"

    def sample_all() -> None:
        for method, (_, run) in runs.items():
            generate(run, protocol=PROTOCOL, root=root, out=gen / method, steps=plan.sample_steps,
                     seed=plan.seed, batch_size=plan.batch_size, progress=progress)
        for kind in BASELINE_METHODS:
            write_baseline(kind, PROTOCOL, root, gen / kind, progress=progress)

    stages.run("sample", "4/6 sample the test pairs; baselines copy-source and mean-train", sample_all)

    metrics, result.skipped = available_metrics()
    for metric, why in result.skipped.items():
        console.print(f"[yellow]skipped {metric}:[/] {why}")
    results_dir = out / "results"
    results_paths = {m: results_dir / f"{m}.json" for m in METHODS}

    def evaluate_all() -> None:
        for method in METHODS:
            res = _evaluate(root, gen / method, results_paths[method], metrics, posenet, plan.batch_size, progress)
            result.metrics[method] = {k: float(v["value"]) for k, v in res["metrics"].items()}

    stages.run("eval", f"5/6 posebench eval ({', '.join(metrics)})", evaluate_all)

    def publish() -> None:
        board = out / f"{BOARD}.yaml"
        _board(board, [m for m in metrics if m in next(iter(result.metrics.values()))], results_paths)
        atomic_write_text(out / "leaderboard.md", render_markdown([load_board(board)]))
        write_report([results_paths[m] for m in METHODS], out / "report.html", labels=list(METHODS))
        result.paths = {"data": str(root), "pose network": str(posenet), "runs": str(out / "runs"),
                        "generated": str(gen), "results": str(results_dir), "leaderboard": str(board),
                        "leaderboard (markdown)": str(out / "leaderboard.md"), "report": str(out / "report.html"),
                        "summary": str(out / "demo.json")}

    stages.run("publish", "6/6 leaderboard and report", publish)
    result.verdict = _verdict(result.metrics)
    result.seconds = round(time.perf_counter() - t0, 1)
    summary = {**asdict(result), "out": str(out), "plan": asdict(plan), "minutes": minutes,
               "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                           "cpus": _cpus()}}
    atomic_write_text(out / "demo.json", json.dumps(summary, indent=2, default=str) + "\n")
    _print_summary(console, result, budget)
    return result


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _print_summary(console: Any, result: DemoResult, budget: float) -> None:
    from rich.table import Table

    from posebench.results.schema import HIGHER_IS_BETTER

    names = list(next(iter(result.metrics.values())))
    table = Table(title="posebench demo · deepfashion-256x176 on synthetic people (non-canonical)")
    table.add_column("method")
    for m in names:
        table.add_column(f"{m} {'↑' if HIGHER_IS_BETTER.get(m, True) else '↓'}", justify="right")
    for method, values in result.metrics.items():
        table.add_row(method, *(f"{values[m]:.4f}" if math.isfinite(values[m]) else "–" for m in names))
    console.print(table)
    for claim, ok in result.verdict.items():
        console.print(f"{'[green]yes[/]' if ok else '[red]NO[/]'}  {claim}")
    console.print("ap / cap / pce: synthetic-posenet, a synthetic-domain estimator trained by this demo.")
    for metric, why in result.skipped.items():
        console.print(f"skipped {metric}: {why}")
    for what, path in result.paths.items():
        console.print(f"{what:>24}: {path}")
    within = "within" if result.seconds <= budget else "OVER"
    console.print(f"done in {result.seconds / 60:.1f} min ({within} the {budget / 60:.0f}-minute budget); "
                  "stage times are in demo.json")
