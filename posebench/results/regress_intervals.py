"""Bootstrap intervals of new - baseline for `posebench regress`, from what `posebench eval` wrote beside each
results file: the per-image CSV (`per_image_file`) and the kept FID/KID features (`features_file`).

- A metric that is the mean of its per-image CSV column (SSIM, LPIPS, PSNR, their variants and masked forms; PCE
  when its pose profile averages over images, not over batches) gets a paired bootstrap of that mean over its kept
  rows (`posebench.results.bootstrap`).
- FID and KID get a paired bootstrap over generated images: each resample recomputes FID (and KID) of the resampled
  generated features against each run's real set, fixed as the evaluation scored it
  (`posebench.results.set_bootstrap`).

Pairing: images are matched by the CSV's identity columns (`per_image_id_columns` of the results, e.g. source,
target), so resample b takes the same images from both runs. Two runs that kept different images are refused:
a paired interval of different image sets would not be a statement about the checkpoint. Before any resampling,
the sidecar files must reproduce the results' own values (per-image mean within 1e-9 relative; FID recomputed
with `frechet_distance` within 1e-9 relative; KID within 1e-9 relative + 1e-10), so an interval is never computed
from files that belong to another evaluation.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posebench.errors import PosebenchError
from posebench.results.bootstrap import LEVEL, Interval, paired_difference, paired_mean_difference, percentile_interval

__all__ = ["IntervalError", "check_resamples", "metric_intervals"]

KID_KERNEL_LIMIT = 4 << 30  # bytes of the n x n KID kernel above which KID gets no interval (a warning says so)
_REL, _KID_ABS = 1e-9, 1e-10


class IntervalError(PosebenchError):
    """Sidecar files that cannot give an interval: missing, unreadable, not matching their results, or two runs that
    scored different images."""


@dataclass
class _Run:
    """One results file and what eval wrote beside it, read on first use."""

    path: Path
    results: dict[str, Any]
    _csv: tuple[list[tuple[str, ...]], dict[str, list[str]], Path] | None = field(default=None, repr=False)
    _features: Any = field(default=None, repr=False)

    def value(self, name: str) -> float:
        return float(self.results["metrics"][name]["value"])

    def n(self, name: str) -> int:
        return int(self.results["metrics"][name]["n"])

    def per_image(self) -> tuple[list[tuple[str, ...]], dict[str, list[str]], Path]:
        """(identity of each row, column name -> raw values, the CSV's path)."""
        if self._csv is None:
            name = self.results.get("per_image_file")
            if not name:
                raise IntervalError(f"{self.path} names no per_image_file; intervals need the per-image CSV that "
                                    "posebench eval writes beside its results (re-run eval, or use --gate point)")
            path = self.path.parent / name
            try:
                with path.open(newline="", encoding="utf-8") as fh:
                    rows = list(csv.reader(fh))
            except FileNotFoundError:
                raise IntervalError(f"{path}: no such per-image CSV (named by {self.path}); keep the files posebench "
                                    "eval writes beside the results, or use --gate point") from None
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise IntervalError(f"{path}: unreadable per-image CSV ({exc})") from None
            if not rows:
                raise IntervalError(f"{path}: empty per-image CSV (no header)")
            header, body = rows[0], rows[1:]
            id_cols = self.results.get("per_image_id_columns") or _leading_id_columns(header, self.results)
            missing = [c for c in id_cols if c not in header]
            if missing or not id_cols:
                raise IntervalError(f"{path}: no identity columns {missing or id_cols} in its header {header}")
            bad = next((i for i, r in enumerate(body) if len(r) != len(header)), None)
            if bad is not None:
                raise IntervalError(f"{path}: row {bad + 2} has {len(body[bad])} fields, the header {len(header)}")
            at = [header.index(c) for c in id_cols]
            ids = [tuple(r[j] for j in at) for r in body]
            cols = {c: [r[j] for r in body] for j, c in enumerate(header) if c not in id_cols}
            self._csv = (ids, cols, path)
        return self._csv

    def features(self) -> Any:
        if self._features is None:
            from posebench.results.kept_features import FeaturesFileError, read

            name = self.results.get("features_file")
            try:
                self._features = read(self.path.parent / name)
            except FeaturesFileError as exc:
                raise IntervalError(f"{exc} (named by {self.path}); keep the files posebench eval writes beside the "
                                    "results, or use --gate point") from None
        return self._features


def _leading_id_columns(header: list[str], results: dict[str, Any]) -> list[str]:
    """Results written before `per_image_id_columns`: the CSV's leading columns up to the first metric column."""
    metrics = set(results.get("metrics") or {})
    out = []
    for c in header:
        if c in metrics:
            break
        out.append(c)
    return out


def _close(a: float, b: float, abs_tol: float = 0.0) -> bool:
    return abs(a - b) <= _REL * max(abs(a), abs(b)) + abs_tol


def _pair(new_ids: list[tuple[str, ...]], base_ids: list[tuple[str, ...]], what: str, new_file: Path,
          base_file: Path) -> np.ndarray:
    """Permutation p with base_ids[p[i]] == new_ids[i]; refuses different image sets or repeated identities."""
    for ids, f in ((new_ids, new_file), (base_ids, base_file)):
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise IntervalError(f"{f}: image {','.join(dup)} appears twice among the images {what} kept; the "
                                "paired bootstrap needs one row per image")
    only_new, only_base = set(new_ids) - set(base_ids), set(base_ids) - set(new_ids)
    if only_new or only_base:
        ex_new = f" (e.g. {','.join(sorted(only_new)[0])})" if only_new else ""
        ex_base = f" (e.g. {','.join(sorted(only_base)[0])})" if only_base else ""
        raise IntervalError(
            f"{new_file} and {base_file} scored different images for {what}: {len(only_new)} only in the new "
            f"results{ex_new}, {len(only_base)} only in the baseline{ex_base}. A paired bootstrap resamples the same "
            "images in both runs: evaluate both on the same generated pairs, or gate with --gate point")
    where = {ident: i for i, ident in enumerate(base_ids)}
    return np.array([where[i] for i in new_ids], dtype=np.int64)


class _NotAMean(Exception):
    """The results value of a metric is not the mean of its per-image column (e.g. PCE as a mean of batch means)."""


def _per_image_values(run: _Run, name: str, strict: bool) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """The kept rows of `name` (the first n, as eval's mean used them) and their identities, checked against the
    results value: a mismatch is an error when `strict` (the value is that mean by definition), else `_NotAMean`."""
    ids, cols, path = run.per_image()
    n = run.n(name)
    if n > len(ids):
        raise IntervalError(f"{path}: {len(ids)} rows, but {run.path} says {name} used {n} images")
    try:
        vals = np.array([float(v) for v in cols[name][:n]], dtype=np.float64)
    except ValueError:
        row = next(i for i, v in enumerate(cols[name][:n]) if not _is_float(v))
        raise IntervalError(f"{path}: row {row + 2}, column {name}: {cols[name][row]!r} is not a number") from None
    mean = float(vals.mean())
    if not _close(mean, run.value(name)):
        if not strict:
            raise _NotAMean(f"the mean of its per-image column ({mean!r}) is not its value ({run.value(name)!r}) in "
                            f"{run.path}: aggregated otherwise (e.g. per batch)")
        raise IntervalError(f"{path}: the mean of column {name} over its first {n} rows is {mean!r}, but {run.path} "
                            f"says {run.value(name)!r}; the CSV is not the one eval wrote with these results")
    return ids[:n], vals


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _per_image_interval(new: _Run, base: _Run, name: str, resamples: int, seed: int, level: float,
                        strict: bool) -> Interval:
    new_ids, x = _per_image_values(new, name, strict)
    base_ids, y = _per_image_values(base, name, strict)
    perm = _pair(new_ids, base_ids, name, new.per_image()[2], base.per_image()[2])
    return paired_mean_difference(x, y[perm], resamples=resamples, seed=seed, level=level)


def _set_side(run: _Run, name: str, device: str, like: Any = None) -> tuple[Any, Any, list[tuple[str, ...]]]:
    """(the real set of `name`, a resampler of `name` over this run's kept generated rows, identity of each row),
    checked first: the features reproduce the results' value of `name`. `like`: the other run's resampler (its
    real-set square root is reused when the real sets are the same)."""
    from posebench.metrics.functional.frechet import frechet_distance
    from posebench.metrics.stats import FeatureStats
    from posebench.results.set_bootstrap import FidResampler, KidResampler

    kept = run.features()
    path = run.path.parent / run.results["features_file"]
    spec = kept.metrics[name]
    real = kept.real[spec["real"]]
    if run.n(name) != len(kept.generated):
        raise IntervalError(f"{path}: {len(kept.generated)} generated rows, but {run.path} says {name} used "
                            f"{run.n(name)}; the features file is not the one eval wrote with these results")
    if spec["metric"] == "fid":
        gen = FeatureStats()
        gen.update(kept.generated)  # exactly as posebench.metrics.fid.FID.summary
        value = frechet_distance(gen.mean(), gen.cov(), real.mean, real.cov)
        ok = _close(value, run.value(name))
        stat = FidResampler(kept.generated, real.mean, real.cov, like=like, device=device)
    else:
        stat = KidResampler(kept.generated, real.features, **kept.kid, device=device)
        value = float(stat(np.arange(len(kept.generated))[None])[0])  # the identity resample: KID as eval had it
        ok = _close(value, run.value(name), _KID_ABS)
    if not ok:
        raise IntervalError(f"{path}: {name} recomputed from these features is {value!r}, but {run.path} says "
                            f"{run.value(name)!r}; the features file is not the one eval wrote with these results")
    ids, _, csv_path = run.per_image()
    if kept.positions.min() < 0 or kept.positions.max() >= len(ids):
        raise IntervalError(f"{path}: generated rows point outside the {len(ids)} rows of {csv_path}")
    return real, stat, [ids[p] for p in kept.positions]


def _set_interval(new: _Run, base: _Run, name: str, resamples: int, seed: int, level: float,
                  warnings: list[str], device: str, progress: bool) -> Interval | None:
    from posebench.results.set_bootstrap import kid_kernel_bytes

    kept = new.features()
    kind, n = kept.metrics[name]["metric"], len(kept.generated)
    if kind == "kid" and kid_kernel_bytes(n) > KID_KERNEL_LIMIT:
        warnings.append(f"{name}: no interval: the KID bootstrap of {n} images needs a {n}x{n} kernel "
                        f"({kid_kernel_bytes(n) / 2**30:.1f} GiB > {KID_KERNEL_LIMIT / 2**30:.0f} GiB)")
        return None
    real_new, stat_new, new_ids = _set_side(new, name, device)
    real_base, stat_base, base_ids = _set_side(base, name, device, like=stat_new if kind == "fid" else None)
    perm = _pair(new_ids, base_ids, name, new.path.parent / new.results["features_file"],
                 base.path.parent / base.results["features_file"])
    if not (np.array_equal(real_new.mean, real_base.mean) and np.array_equal(real_new.cov, real_base.cov)):
        warnings.append(f"{name}: the two runs' real-set statistics differ (real set {real_new.name!r}); each run's "
                        f"{name} is recomputed against its own real set, as its evaluation scored it")
    # resample rows of the new run; perm[idx] are the same images among the baseline's rows
    with _bar(f"{name} bootstrap ({n} images, {device})", resamples, progress) as advance:
        diffs = paired_difference(stat_new, lambda idx: stat_base(perm[idx]), n, resamples=resamples, seed=seed,
                                  chunk=_SET_CHUNK, advance=advance)
    lo, hi = percentile_interval(diffs, level)
    what = "FID" if kind == "fid" else f"KID, {kept.kid['num_subsets']} subsets drawn with seed {kept.kid['seed']},"
    return Interval(lo, hi, level, resamples, n, f"paired bootstrap over {n} generated images ({what} recomputed "
                    f"per resample against the fixed real set), {resamples} resamples, seed {seed}, {level:.0%} "
                    "percentile interval")


_SET_CHUNK = 8  # FID/KID resamples between progress updates (a full-size FID resample takes about a second on a CPU)


@contextmanager
def _bar(label: str, total: int, progress: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (stdout may carry `--json`), as a function told how many resamples are done."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from posebench.utils.progress import Progress

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task(label, total=total)
        yield lambda k: bar.advance(task, k)


def check_resamples(resamples: int, fid_resamples: int) -> None:
    for option, value in (("--resamples", resamples), ("--fid-resamples", fid_resamples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise IntervalError(f"{option} must be a whole number >= 1 (resamples of the bootstrap), got {value!r}")


def metric_intervals(new_path: str | Path, new: dict[str, Any], base_path: str | Path, base: dict[str, Any],
                     names: list[str], *, resamples: int = 2000, fid_resamples: int = 200, seed: int = 0,
                     level: float = LEVEL, device: str = "cpu", progress: bool = False
                     ) -> tuple[dict[str, Interval], dict[str, str], list[str]]:
    """Intervals of new - baseline for the metrics `names` both results have.

    Returns:
        (intervals by metric, why a metric has none, warnings).

    Raises:
        IntervalError: a sidecar file is missing or unreadable, does not reproduce its results' value, or the two
            runs kept different images.
    """
    from posebench.metrics.registry import METRICS, base_name

    check_resamples(resamples, fid_resamples)
    new_run, base_run = _Run(Path(new_path), new), _Run(Path(base_path), base)
    out: dict[str, Interval] = {}
    why: dict[str, str] = {}
    warnings: list[str] = []
    for name in names:
        if not all(math.isfinite(r.value(name)) for r in (new_run, base_run)):
            why[name] = "a value is not finite"
            continue
        base_metric = base_name(name)
        spec = METRICS.get(base_metric) if base_metric in METRICS else None
        if spec is not None and spec.aggregation == "mean":
            if not (new.get("per_image_file") and base.get("per_image_file")):
                why[name] = "a results file names no per-image CSV"
            elif not all(name in r.per_image()[1] for r in (new_run, base_run)):
                why[name] = "no per-image column for it in both CSVs"
            else:
                try:  # SSIM, LPIPS, PSNR are their column's mean by definition: a mismatch is an error
                    out[name] = _per_image_interval(new_run, base_run, name, resamples, seed, level,
                                                    strict=spec.consumes == "pixels")
                except _NotAMean as exc:
                    why[name] = str(exc)
            continue
        if base_metric in ("fid", "kid"):
            if not (new.get("features_file") and base.get("features_file")):
                why[name] = ("a results file names no features file (written by posebench eval since the "
                             "regress bootstrap; none for per-scenario FID)")
            elif any(name not in r.features().metrics for r in (new_run, base_run)):
                why[name] = "a features file holds no features for it"
            else:
                interval = _set_interval(new_run, base_run, name, fid_resamples, seed, level, warnings, device,
                                         progress)
                if interval is None:
                    why[name] = "too many images for the KID bootstrap (see the warning)"
                else:
                    out[name] = interval
            continue
        why[name] = "a statistic of the whole set without a bootstrap (only per-image means, FID and KID have one)"
    return out, why, warnings
