"""Regression gate: compare a new results JSON with a baseline, metric by metric, for CI.

Two results are compared only when they measure the same thing: the same protocol (name and version), the
same metric profile (name, version and content hash) and the same dataset pairs (pairs_sha256). Anything
else is refused (`RegressError`, exit 2), because a difference would then say nothing about the checkpoint.

Direction comes from each metric's `higher_is_better` in the results. In the default point gate a metric
regresses when the new value is worse than the baseline by more than its tolerance (default 0). Values may be the
strings "inf", "-inf" and "nan" that `schema.write_results` stores for non-finite floats: a new NaN, or a new
infinity where the baseline was finite and the direction makes it worse, is a regression.

The interval gate (`gate="interval"`, `compare_files`) also computes a bootstrap interval of new - baseline per
metric from the files eval wrote beside each results file (`posebench.results.regress_intervals`), and fails a
metric only when the whole interval is worse than the baseline by more than the tolerance. A metric without an
interval (no per-image values or features) is judged on its point difference, and a warning says so.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from posebench.errors import PosebenchError
from posebench.metrics.registry import known_direction
from posebench.results.bootstrap import LEVEL, Interval
from posebench.results.schema import dig, json_safe
from posebench.utils.io import atomic_write_text

REPORT_SCHEMA_VERSION = 1
Status = Literal["improved", "unchanged", "within", "regressed", "missing", "added"]
FAILING: tuple[Status, ...] = ("regressed", "missing")
GATES = ("point", "interval")

# (label, dotted key) pairs that must be equal for two results to be comparable
_IDENTITY = (
    ("protocol name", "protocol.name"),
    ("protocol version", "protocol.version"),
    ("profile name", "profile.name"),
    ("profile version", "profile.version"),
    ("profile sha256", "profile.sha256"),
    ("dataset pairs_sha256", "dataset.pairs_sha256"),
)


class RegressError(PosebenchError):
    """Two results that cannot be compared, or a bad --tolerance."""


@dataclass(frozen=True)
class MetricDiff:
    """One metric of the comparison. `delta` is new − baseline; `status` says whether that is a regression, judged
    on `basis`: "point" (delta against the tolerance) or "interval" (the whole `interval` of new − baseline
    against the tolerance)."""

    name: str
    higher_is_better: bool
    baseline: float | None
    new: float | None
    delta: float | None
    tolerance: float
    status: Status
    interval: tuple[float, float] | None = None  # bootstrap interval of new − baseline (low, high)
    interval_method: str | None = None
    basis: Literal["point", "interval"] = "point"

    @property
    def failed(self) -> bool:
        return self.status in FAILING

    def message(self) -> str:
        """One line for humans and JUnit failure messages."""
        word = "higher" if self.higher_is_better else "lower"
        if self.status == "missing":
            return f"{self.name}: in the baseline ({fmt_value(self.baseline)}) but missing from the new results"
        if self.status == "added":
            return f"{self.name}: new metric ({fmt_value(self.new)}), no baseline"
        interval = "" if self.interval is None else f", interval {fmt_interval(self.interval)}"
        basis = " (judged on the interval)" if self.basis == "interval" else ""
        return (f"{self.name}: {fmt_value(self.baseline)} -> {fmt_value(self.new)} "
                f"(delta {fmt_value(self.delta, signed=True)}{interval}, tolerance {fmt_value(self.tolerance)}, "
                f"{word} is better): {self.status}{basis}")


@dataclass(frozen=True)
class RegressionReport:
    """The outcome of `compare`: one `MetricDiff` per metric plus what both results were."""

    protocol: str  # name@version
    profile: str  # name@version
    profile_sha256: str
    pairs_sha256: str
    baseline_file: str
    new_file: str
    metrics: tuple[MetricDiff, ...]
    warnings: tuple[str, ...] = ()
    gate: str = "point"  # one of GATES
    bootstrap: dict[str, Any] | None = None  # {resamples, fid_resamples, seed, level} when intervals were computed

    @property
    def regressions(self) -> list[MetricDiff]:
        return [m for m in self.metrics if m.failed]

    @property
    def ok(self) -> bool:
        return not self.regressions

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers as the strings "inf", "-inf", "nan")."""
        data = asdict(self)
        data["metrics"] = [{**asdict(m), "failed": m.failed} for m in self.metrics]
        return json_safe({"schema_version": REPORT_SCHEMA_VERSION, "ok": self.ok,
                       "regressions": [m.name for m in self.regressions], **data})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    def to_junit(self) -> str:
        """JUnit XML: one testcase per metric, a `<failure>` for each regression or missing metric."""
        suite_name = f"posebench regress {self.protocol} {self.profile}"
        suites = ET.Element("testsuites", name="posebench regress", tests=str(len(self.metrics)),
                            failures=str(len(self.regressions)), errors="0")
        suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(len(self.metrics)),
                              failures=str(len(self.regressions)), errors="0", skipped="0", time="0")
        props = ET.SubElement(suite, "properties")
        for key, value in (("baseline", self.baseline_file), ("new", self.new_file), ("protocol", self.protocol),
                           ("profile", self.profile), ("profile_sha256", self.profile_sha256),
                           ("pairs_sha256", self.pairs_sha256), ("gate", self.gate),
                           *((f"bootstrap_{k}", str(v)) for k, v in (self.bootstrap or {}).items())):
            ET.SubElement(props, "property", name=key, value=value)
        for m in self.metrics:
            case = ET.SubElement(suite, "testcase", classname=f"posebench.regress.{self.protocol}", name=m.name,
                                 time="0")
            if m.interval is not None:  # testcase properties, as pytest's record_property writes them
                case_props = ET.SubElement(case, "properties")
                for key, value in (("delta", repr(m.delta)), ("interval_low", repr(m.interval[0])),
                                   ("interval_high", repr(m.interval[1])), ("interval_method", m.interval_method or ""),
                                   ("basis", m.basis)):
                    ET.SubElement(case_props, "property", name=key, value=value)
            if m.failed:
                failure = ET.SubElement(case, "failure", message=m.message(), type=m.status)
                failure.text = m.message()
            else:
                out = ET.SubElement(case, "system-out")
                out.text = m.message()
        if self.warnings:
            err = ET.SubElement(suite, "system-err")
            err.text = "\n".join(self.warnings)
        ET.indent(suites)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def fmt_value(v: float | None, signed: bool = False) -> str:
    """A number for tables and messages: 6 significant digits, 'nan', 'inf', '-inf', or '–' for None."""
    if v is None:
        return "–"
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:+.6g}" if signed else f"{v:.6g}"


def fmt_interval(interval: tuple[float, float] | None) -> str:
    """`[low, high]` of new − baseline, signed, or '–'."""
    if interval is None:
        return "–"
    return f"[{fmt_value(interval[0], signed=True)}, {fmt_value(interval[1], signed=True)}]"


def _value(v: Any, where: str) -> float:
    """A finite metric value. A value that is not a number, or NaN (undefined) or infinite (PSNR of identical
    images), has no difference to gate on: refused (exit 2), not judged improved or regressed."""
    from posebench.results.schema import metric_value

    try:
        value = metric_value(v)
    except ValueError as exc:
        raise RegressError(f"{where}: {exc}") from None
    if not math.isfinite(value):
        raise RegressError(f"{where} is {value}: regress compares finite values only (an undefined or infinite "
                           "metric cannot be gated; see that results file's warnings)")
    return value


def parse_tolerances(spec: str | None) -> dict[str, float]:
    """`"fid=0.5,ssim=0.005"` -> `{"fid": 0.5, "ssim": 0.005}` (absolute, in the metric's units).

    Raises:
        RegressError: a malformed item, a negative or non-finite tolerance, or a metric named twice.
    """
    out: dict[str, float] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, raw = item.partition("=")
        name = name.strip()
        try:
            tol = float(raw)
        except ValueError:
            tol = math.nan
        if not sep or not name or not math.isfinite(tol) or tol < 0:
            raise RegressError(f"--tolerance: {item!r} must be METRIC=NUMBER with a number >= 0 "
                               "(e.g. fid=0.5,ssim=0.005)")
        if name in out:
            raise RegressError(f"--tolerance: {name!r} is given twice")
        out[name] = tol
    return out


def comparability_problems(new: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """Why `new` and `base` cannot be compared (empty when they can)."""
    out = []
    for label, key in _IDENTITY:
        a, b = dig(new, key), dig(base, key)
        if a is None or b is None:
            side = "new results" if a is None else "baseline"
            out.append(f"{label}: missing from the {side} ({key}); cannot check that both measure the same thing")
        elif a != b:
            out.append(f"{label} differs: new {a!r}, baseline {b!r}")
    return out


def _direction(name: str, new_m: dict[str, Any] | None, base_m: dict[str, Any] | None) -> bool:
    dirs = {m["higher_is_better"] for m in (new_m, base_m) if m and isinstance(m.get("higher_is_better"), bool)}
    if len(dirs) > 1:
        raise RegressError(f"metric {name!r}: higher_is_better differs between the new results and the baseline")
    if dirs:
        return dirs.pop()
    known = known_direction(name)
    if known is not None:  # e.g. ssim_masked, fid_test
        return known
    raise RegressError(f"metric {name!r}: no higher_is_better in either results file; cannot tell its direction")


def _judge(base: float, new: float, higher_is_better: bool, tol: float) -> Status:
    if math.isnan(base) and math.isnan(new):
        return "unchanged"
    if math.isnan(new):
        return "regressed"  # a metric that stopped being computable
    if math.isnan(base) or new == base:
        return "improved" if math.isnan(base) else "unchanged"
    worse = (base - new) if higher_is_better else (new - base)  # > 0: the new value is worse
    if worse <= 0:
        return "improved"
    return "within" if worse <= tol else "regressed"


def _judge_interval(base: float, new: float, interval: tuple[float, float], higher_is_better: bool,
                    tol: float) -> Status:
    """Regressed only when the whole interval of new − baseline is worse than the baseline by more than `tol`;
    a point difference past the tolerance with an interval that is not is `within`."""
    low, high = interval
    least_worse = -high if higher_is_better else low  # the interval's most favourable end, as "how much worse"
    if least_worse > tol:
        return "regressed"
    point = _judge(base, new, higher_is_better, tol)
    return "within" if point == "regressed" else point


def compare(new: dict[str, Any], base: dict[str, Any], tolerances: dict[str, float] | None = None, *,
            new_file: str = "new", baseline_file: str = "baseline", gate: str = "point",
            intervals: dict[str, Interval] | None = None, no_interval: dict[str, str] | None = None,
            bootstrap: dict[str, Any] | None = None, extra_warnings: list[str] | None = None) -> RegressionReport:
    """Compare two results dicts (as `read_results` returns them) metric by metric.

    Args:
        new: the results under test.
        base: the baseline results.
        tolerances: metric -> absolute tolerance; metrics not named get 0.
        new_file, baseline_file: labels for the report.
        gate: "point" (the point difference against the tolerance) or "interval" (the whole interval against the
            tolerance; metrics without one fall back to the point difference, with a warning).
        intervals: metric -> bootstrap interval of new − baseline (`compare_files` computes them).
        no_interval: metric -> why it has no interval (for the warnings).
        bootstrap, extra_warnings: the bootstrap settings and its warnings, for the report.

    Returns:
        A `RegressionReport`; `report.ok` is False when any metric regressed beyond its tolerance or is
        missing from `new`.

    Raises:
        RegressError: the results measure different things (protocol, profile or pairs differ), a tolerance
            names a metric neither result has, or a metric value is not a number.
    """
    tolerances = dict(tolerances or {})
    intervals = dict(intervals or {})
    if gate not in GATES:
        raise RegressError(f"--gate must be one of {', '.join(GATES)}, got {gate!r}")
    problems = comparability_problems(new, base)
    if problems:
        raise RegressError(f"refusing to compare {new_file} with {baseline_file}; they do not measure the same "
                           "thing:\n" + "\n".join(f"  - {p}" for p in problems))
    new_metrics, base_metrics = new.get("metrics", {}), base.get("metrics", {})
    names = list(base_metrics) + [m for m in new_metrics if m not in base_metrics]
    unknown = sorted(set(tolerances) - set(names))
    if unknown:
        raise RegressError(f"--tolerance names metrics that neither results file has: {', '.join(unknown)}; "
                           f"metrics: {', '.join(names)}")
    diffs = []
    for name in names:
        nm, bm = new_metrics.get(name), base_metrics.get(name)
        hib = _direction(name, nm, bm)
        tol = tolerances.get(name, 0.0)
        b = _value(bm["value"], f"{baseline_file}: {name}") if bm else None
        n = _value(nm["value"], f"{new_file}: {name}") if nm else None
        if b is None:
            diffs.append(MetricDiff(name, hib, None, n, None, tol, "added"))
        elif n is None:
            diffs.append(MetricDiff(name, hib, b, None, None, tol, "missing"))
        else:
            delta = 0.0 if n == b else n - b
            iv = intervals.get(name)
            interval = None if iv is None else (iv.low, iv.high)
            if gate == "interval" and interval is not None:
                status, basis = _judge_interval(b, n, interval, hib, tol), "interval"
            else:
                status, basis = _judge(b, n, hib, tol), "point"
            diffs.append(MetricDiff(name, hib, b, n, delta, tol, status, interval,
                                    None if iv is None else iv.method, basis))
    warnings = list(extra_warnings or [])
    for name, why in (no_interval or {}).items():
        tail = "; judged on the point difference" if gate == "interval" else ""
        warnings.append(f"{name}: no interval ({why}){tail}")
    if bool(new.get("canonical")) != bool(base.get("canonical")):
        warnings.append(f"canonical: new {bool(new.get('canonical'))}, baseline {bool(base.get('canonical'))}")
    new_flags, base_flags = sorted(new.get("flags") or []), sorted(base.get("flags") or [])
    if new_flags != base_flags:
        warnings.append(f"flags differ: new {new_flags}, baseline {base_flags}")
    for name in names:
        nm, bm = new_metrics.get(name), base_metrics.get(name)
        if nm and bm and nm.get("n") != bm.get("n"):
            warnings.append(f"{name}: scored over {nm.get('n')} images (new) vs {bm.get('n')} (baseline)")
    return RegressionReport(
        protocol=f"{new['protocol']['name']}@{new['protocol']['version']}",
        profile=f"{new['profile']['name']}@{new['profile']['version']}",
        profile_sha256=str(new["profile"]["sha256"]), pairs_sha256=str(new["dataset"]["pairs_sha256"]),
        baseline_file=baseline_file, new_file=new_file, metrics=tuple(diffs), warnings=tuple(warnings),
        gate=gate, bootstrap=bootstrap,
    )


def compare_files(new_file: str | Path, baseline_file: str | Path, tolerances: dict[str, float] | None = None, *,
                  gate: str = "point", intervals: bool = False, resamples: int = 2000, fid_resamples: int = 200,
                  seed: int = 0, level: float = LEVEL, device: str = "cpu", progress: bool = False) -> RegressionReport:
    """`compare` two results files; with `gate="interval"` (or `intervals=True`, shown but not gating) also the
    bootstrap interval of new − baseline of each metric both have, from the per-image CSV and the features file
    beside each results file (`posebench.results.regress_intervals`).

    Args:
        resamples: bootstrap resamples of the per-image metrics' paired mean difference.
        fid_resamples: bootstrap resamples of FID and KID (each recomputes them on the resampled generated set).
        seed: seed of every metric's resampling (the same seed, the same intervals).
        level: the interval's coverage (0.95: the 2.5th and 97.5th percentiles).
        device: torch device of the FID / KID resampling (`cuda`: the same intervals to round-off, much faster at
            full test-set size).
        progress: a bar on stderr for each FID / KID bootstrap.

    Raises:
        RegressError: the results are not comparable, a bad gate, or a bad tolerance.
        IntervalError: with intervals: a bad number of resamples, a missing or mismatched sidecar file, or two runs
            that scored different images.
    """
    from posebench.results.regress_intervals import check_resamples, metric_intervals
    from posebench.results.schema import ResultsError, read_results
    from posebench.utils.device import checked_device

    if gate not in GATES:
        raise RegressError(f"--gate must be one of {', '.join(GATES)}, got {gate!r}")
    check_resamples(resamples, fid_resamples)
    if gate != "point" or intervals:
        checked_device(device)
    new, base = read_results(new_file), read_results(baseline_file)
    for data, path in ((new, new_file), (base, baseline_file)):
        if data.get("kind") == "human-study":
            raise ResultsError(f"{path} is a human-study results file (posebench study score): human judgements of "
                               "one study, with no per-image values and no checkpoint to gate; regress compares "
                               "`posebench eval` results. Compare studies by their intervals in `posebench report`")
    kw: dict[str, Any] = {"new_file": str(new_file), "baseline_file": str(baseline_file), "gate": gate}
    report = compare(new, base, tolerances, **kw)  # every refusal (comparability, tolerances, values) comes first
    if gate == "point" and not intervals:
        return report
    names = [m for m in base.get("metrics", {}) if m in new.get("metrics", {})]
    found, why, warnings = metric_intervals(new_file, new, baseline_file, base, names, resamples=resamples,
                                            fid_resamples=fid_resamples, seed=seed, level=level, device=device,
                                            progress=progress)
    return compare(new, base, tolerances, intervals=found, no_interval=why, extra_warnings=warnings,
                   bootstrap={"resamples": resamples, "fid_resamples": fid_resamples, "seed": seed, "level": level},
                   **kw)


def write_report_json(report: RegressionReport, path: str | Path) -> None:
    atomic_write_text(path, report.to_json())


def write_junit(report: RegressionReport, path: str | Path) -> None:
    atomic_write_text(path, report.to_junit())
