"""Checkpoint regression gate: sample a fixed, seeded evaluation subset with a checkpoint, score it and
compare it with the suite's stored baseline (`posebench regress --checkpoint RUN --suite NAME`).

Orchestration across floors (reference-model sampling, the evaluator, the regression comparison), so it
lives at the top beside the CLI; reposedm is imported only when a suite runs.

A suite is a small YAML file, kept with the project (`suites/NAME.yaml`, or any path):

    suite: df-smoke
    version: 1
    protocol: deepfashion-256x176
    pairs: 32                  # size of the subset: a seeded permutation of the sorted test pairs
    subset_seed: 0
    sampling: {scheduler: ddim, steps: 25, seed: 0}   # also guidance_scale, pose_guidance_scale
    profile: clean
    metrics: [ssim, lpips, psnr]
    tolerance: {ssim: 0.005, lpips: 0.005, psnr: 0.1}
    baseline: df-smoke.baseline.json   # relative to the suite file

Image k of the subset uses the same seed as image k of a full `posebench sample` run, so a suite's images
are a subset of what the full evaluation would generate.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posebench.errors import PosebenchError
from posebench.utils.io import atomic_open, atomic_write_text
from posebench.utils.keys import check_keys, read_yaml_mapping

_KEYS = {"suite", "version", "protocol", "pairs", "subset_seed", "sampling", "profile", "metrics", "tolerance",
         "baseline", "description"}
_SAMPLING_KEYS = {"scheduler", "steps", "seed", "guidance_scale", "pose_guidance_scale", "batch_size"}


class SuiteError(PosebenchError):
    """A suite file that cannot be run."""


@dataclass(frozen=True)
class Suite:
    name: str
    version: int
    protocol: str
    pairs: int
    subset_seed: int
    sampling: dict[str, Any]
    profile: str | None
    metrics: tuple[str, ...] | None
    tolerance: dict[str, float]
    baseline: Path
    path: Path
    description: str = ""

    def identity(self) -> dict[str, Any]:
        """What must be equal for two suite results to be compared (besides protocol/profile/pairs)."""
        return {"name": self.name, "version": self.version, "pairs": self.pairs, "subset_seed": self.subset_seed,
                "sampling": dict(sorted(self.sampling.items()))}


def resolve_suite_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise SuiteError(f"suite file {path} does not exist")
        return path
    candidate = Path("suites") / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    raise SuiteError(f"no suite {name_or_path!r}: expected {candidate} (relative to the current folder) or a path "
                     "to a suite YAML file")


def load_suite(name_or_path: str) -> Suite:
    path = resolve_suite_path(name_or_path)
    data = read_yaml_mapping(path, SuiteError, allow_empty=True)
    _known(data, _KEYS, str(path))
    sampling = data.get("sampling") or {}
    _known(sampling, _SAMPLING_KEYS, f"{path}: sampling")
    for key in ("suite", "protocol", "pairs", "baseline"):
        if key not in data:
            raise SuiteError(f"{path}: missing required key {key!r}")
    pairs = data["pairs"]
    if not isinstance(pairs, int) or isinstance(pairs, bool) or pairs <= 0:
        raise SuiteError(f"{path}: pairs must be a positive integer, got {pairs!r}")
    tolerance = data.get("tolerance") or {}
    if not isinstance(tolerance, dict) or not all(isinstance(v, (int, float)) and v >= 0 for v in tolerance.values()):
        raise SuiteError(f"{path}: tolerance must map metric names to non-negative numbers")
    metrics = data.get("metrics")
    if metrics is not None and (not isinstance(metrics, list) or not metrics
                                or not all(isinstance(m, str) for m in metrics)):
        raise SuiteError(f"{path}: metrics must be a non-empty list of metric names, e.g. [fid, ssim, lpips]")
    return Suite(
        name=str(data["suite"]), version=int(data.get("version", 1)), protocol=str(data["protocol"]), pairs=pairs,
        subset_seed=int(data.get("subset_seed", 0)), sampling=dict(sampling), profile=data.get("profile"),
        metrics=tuple(metrics) if metrics else None, tolerance={k: float(v) for k, v in tolerance.items()},
        baseline=(path.parent / str(data["baseline"])), path=path, description=str(data.get("description", "")))


def _known(data: dict[str, Any], known: set[str], where: str) -> None:
    check_keys(data, known, where, SuiteError)


def subset_indices(num_pairs: int, size: int, seed: int) -> list[int]:
    """Positions in the sorted pair list: the first `size` of a seeded permutation, sorted."""
    import numpy as np

    rng = np.random.default_rng([int(seed), 0x5B17E])
    return sorted(int(k) for k in rng.permutation(num_pairs)[: min(size, num_pairs)])


@dataclass
class GateOutcome:
    results: Path
    report: Any | None  # RegressionReport, None when the baseline was (re)written
    baseline_written: bool = False
    notes: list[str] = field(default_factory=list)


def _store_baseline(results: dict[str, Any], out: Path, baseline: Path) -> None:
    """The baseline results with the files `--gate interval` reads beside them (the per-image CSV, the kept FID/KID
    features), renamed after the baseline and named in it, so a later run can be compared by intervals too."""
    from posebench.results.kept_features import features_path

    stored = dict(results)
    sidecars = {"per_image_file": baseline.with_suffix(".per_image.csv"), "features_file": features_path(baseline)}
    for key, dest in sidecars.items():
        name = results.get(key)
        if name and (out.parent / name).is_file():
            with atomic_open(dest, "wb") as fh, open(out.parent / name, "rb") as src:  # never half a file
                shutil.copyfileobj(src, fh)
            stored[key] = dest.name
    atomic_write_text(baseline, json.dumps(stored, indent=2) + "\n")


def run_checkpoint_suite(checkpoint: Path, suite: Suite, *, root: Path, work: Path | None = None,
                         update_baseline: bool = False, device: str = "cpu", progress: bool = True) -> GateOutcome:
    """Sample the suite's subset with `checkpoint`, evaluate it and compare with the stored baseline.

    Raises:
        SuiteError: no baseline (and not `update_baseline`), or a baseline from another suite definition.
        PosebenchError: the data root, checkpoint or protocol problems the lower layers report.
    """
    from posebench.protocols import get_protocol
    from posebench.results.regress import comparability_problems, compare
    from posebench.results.schema import read_results
    from posebench.run.evaluator import EvalConfig, evaluate, preflight
    from reposedm.checkpoints import resolve_checkpoint, verify_checkpoint
    from reposedm.data import PairSource, load_pairs
    from reposedm.generate import generate

    ckpt = resolve_checkpoint(Path(checkpoint))
    verify_checkpoint(ckpt)
    spec = get_protocol(suite.protocol)
    # everything the evaluation and the comparison need, before minutes of sampling: metric names, the profile's
    # sections, every weight file the metrics load, and a readable baseline from this suite
    try:
        preflight(spec.name, profile=suite.profile, metrics=suite.metrics)
    except PosebenchError as exc:
        raise SuiteError(f"{suite.path}: {exc}") from None
    if not update_baseline:
        if not suite.baseline.exists():
            raise SuiteError(f"suite {suite.name}: no baseline at {suite.baseline}. Run once with --update-baseline "
                             "on the reference checkpoint")
        read_results(suite.baseline)
    _, pairs = load_pairs(PairSource(spec.dataset, Path(root), spec.split))
    chosen = subset_indices(len(pairs), suite.pairs, suite.subset_seed)
    subset_sha = hashlib.sha256("\n".join(str(pairs[k]) for k in chosen).encode()).hexdigest()
    digest = hashlib.sha256((ckpt / "checksums.json").read_bytes()).hexdigest()[:12]
    work = Path(work) if work is not None else Path(".posebench-gate") / suite.name / f"{ckpt.name}-{digest}"
    images = work / "images"
    if images.exists():  # a different subset left over from an edited suite must not be scored
        stale = {p.name for p in images.glob("*.png")} - {pairs[k].filename for k in chosen}
        if stale:
            shutil.rmtree(images)
    s = suite.sampling
    generate(ckpt, protocol=spec.name, root=Path(root), out=images, scheduler=s.get("scheduler", "ddim"),
             steps=int(s.get("steps", 50)), guidance_scale=s.get("guidance_scale"),
             pose_guidance_scale=s.get("pose_guidance_scale"), seed=int(s.get("seed", 0)),
             batch_size=int(s.get("batch_size", 8)), device=device, indices=chosen, progress=progress)
    out = work / "results.json"
    evaluate(EvalConfig(protocol=spec.name, root=Path(root), pred=images, out=out, profile=suite.profile,
                        metrics=suite.metrics, allow_missing=True, device=device, progress=progress))
    results = json.loads(out.read_text())
    results["suite"] = {**suite.identity(), "subset_sha256": subset_sha, "checkpoint": str(ckpt),
                        "checkpoint_checksums_sha256": digest}
    atomic_write_text(out, json.dumps(results, indent=2) + "\n")

    if update_baseline or not suite.baseline.exists():
        if not update_baseline:
            raise SuiteError(f"suite {suite.name}: no baseline at {suite.baseline}. Run once with --update-baseline "
                             f"on the reference checkpoint (results of this run: {out})")
        suite.baseline.parent.mkdir(parents=True, exist_ok=True)
        _store_baseline(results, out, suite.baseline)
        return GateOutcome(out, None, baseline_written=True)
    base = read_results(suite.baseline)
    base_suite = base.get("suite") or {}
    mine = results["suite"]
    diffs = [k for k in ("name", "version", "pairs", "subset_seed", "sampling", "subset_sha256")
             if base_suite.get(k) != mine.get(k)]
    if diffs:
        raise SuiteError(f"baseline {suite.baseline} was made by another suite definition (differs in "
                         f"{', '.join(diffs)}); refresh it with --update-baseline on the reference checkpoint")
    problems = comparability_problems(results, base)
    if problems:
        raise SuiteError(f"baseline {suite.baseline} is not comparable: {'; '.join(problems)}")
    report = compare(results, base, suite.tolerance, new_file=str(out), baseline_file=str(suite.baseline))
    return GateOutcome(out, report)
