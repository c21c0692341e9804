"""`posebench regress --gate interval`: paired bootstrap intervals of new - baseline, checked against independent
loop-based recomputations with the same seed, and the features file `posebench eval` keeps for FID/KID.

Stated tolerances: per-image intervals 1e-12 absolute (the same float64 means summed in another order); FID/KID
intervals 1e-9 relative to the spread of the differences (the resamplers rearrange posebench's FID/KID arithmetic,
see posebench.results.set_bootstrap); a results value recomputed from the features file 1e-9 relative.
"""

from __future__ import annotations

import csv
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from posebench.cli import app
from posebench.metrics.functional.frechet import frechet_distance
from posebench.metrics.functional.kid import kid
from posebench.metrics.registry import higher_is_better
from posebench.metrics.stats import FeatureStats
from posebench.results.kept_features import KeptFeatures, RealSet, encode
from posebench.results.regress import compare_files
from posebench.results.regress_intervals import IntervalError
from posebench.results.schema import write_results
from posebench.results.set_bootstrap import FidResampler, KidResampler

runner = CliRunner()
KID = {"num_subsets": 7, "max_subset_size": 20, "seed": 3}


# ---------------------------------------------------------------------------------------------- independent references


def _draws(n: int, resamples: int, seed: int) -> list[np.ndarray]:
    """The documented resampling: default_rng(seed), one integers(0, n, size=n) call per resample, in order."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, size=n) for _ in range(resamples)]


def _quantile(values: list[float], q: float) -> float:
    """numpy's default ('linear', type 7) quantile, by hand: position q (N - 1) in the sorted values."""
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _interval(diffs: list[float]) -> tuple[float, float]:
    return _quantile(diffs, 0.025), _quantile(diffs, 0.975)


def _loop_mean(values: np.ndarray, idx: np.ndarray) -> float:
    total = 0.0
    for i in idx:
        total += float(values[i])
    return total / len(idx)


# ---------------------------------------------------------------------------------------------- constructed runs


def _run(folder: Path, name: str, ids: list[tuple[str, str]], values: dict[str, np.ndarray], *,
         features: dict[str, Any] | None = None, extra_metrics: dict[str, float] | None = None) -> Path:
    """A results file with its per-image CSV (rows in the order of `ids`) and, with `features`, a features file
    whose FID/KID values are computed by posebench's own functions, as eval does."""
    metrics: dict[str, Any] = {}
    for key, vals in values.items():
        metrics[key] = {"value": float(np.mean(vals)), "stderr": None, "higher_is_better": higher_is_better(key),
                        "n": len(vals), "details": {}}
    for key, value in (extra_metrics or {}).items():
        metrics[key] = {"value": value, "stderr": None, "higher_is_better": higher_is_better(key), "n": len(ids),
                        "details": {}}
    doc: dict[str, Any] = {
        "schema_version": 1, "posebench": "0.0.0-test", "created": "2025-01-01T00:00:00+00:00", "canonical": True,
        "non_canonical_reasons": [], "protocol": {"name": "deepfashion-256x176", "version": 1, "sha256": "b" * 64},
        "profile": {"name": "clean", "version": 2, "sha256": "p" * 64},
        "dataset": {"name": "deepfashion", "split": "test", "pairs": len(ids), "pairs_sha256": "a" * 64},
        "predictions": {"dir": "samples", "count": len(ids), "images_sha256": "c" * 64}, "flags": [],
        "metrics": metrics, "warnings": [], "env": {}, "per_image_file": f"{name}.per_image.csv",
        "per_image_id_columns": ["source", "target"],
    }
    if features is not None:
        gen, real = features["generated"], features["real"]
        rs = FeatureStats(keep_features=True)
        rs.update(real)
        gs = FeatureStats()
        gs.update(gen)
        doc["metrics"]["fid"] = {"value": frechet_distance(gs.mean(), gs.cov(), rs.mean(), rs.cov()), "stderr": None,
                                 "higher_is_better": False, "n": len(gen), "details": {}}
        k, _ = kid(gen, rs.features(), num_subsets=KID["num_subsets"], max_subset_size=KID["max_subset_size"],
                   rng=np.random.RandomState(KID["seed"]))
        doc["metrics"]["kid"] = {"value": k, "stderr": None, "higher_is_better": False, "n": len(gen), "details": {}}
        kept = KeptFeatures(gen, np.asarray(features["positions"]), (RealSet("train", rs.mean(), rs.cov(),
                                                                              rs.features()),),
                            {"fid": {"metric": "fid", "real": 0}, "kid": {"metric": "kid", "real": 0}}, KID)
        (folder / f"{name}.features.safetensors").write_bytes(encode(kept))
        doc["features_file"] = f"{name}.features.safetensors"
    with (folder / f"{name}.per_image.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "target", *sorted(values)])
        for i, ident in enumerate(ids):
            w.writerow([*ident, *(repr(float(values[k][i])) for k in sorted(values))])
    write_results(folder / f"{name}.json", doc)
    return folder / f"{name}.json"


def _ids(n: int) -> list[tuple[str, str]]:
    return [(f"src{i:03d}", f"tgt{i:03d}") for i in range(n)]


def _regress(new: Path, base: Path, *args: str):
    return runner.invoke(app, ["regress", "--results", str(new), "--baseline", str(base), *args],
                         env={"COLUMNS": "220"})


def _report(res) -> dict[str, Any]:
    return {m["name"]: m for m in json.loads(res.stdout)["metrics"]}


# ---------------------------------------------------------------------------------------------- per-image metrics


def test_per_image_interval_equals_a_loop_reference(tmp_path):
    """CLI end to end: the interval of SSIM / LPIPS equals a from-scratch loop over the documented draws; the
    baseline's CSV lists the images in another order (pairing is by identity, not by row)."""
    rng = np.random.default_rng(11)
    n, resamples, seed = 37, 300, 5
    ssim_b, lpips_b = rng.uniform(0.5, 0.9, n), rng.uniform(0.1, 0.3, n)
    ssim_n, lpips_n = ssim_b + rng.normal(0, 0.02, n), lpips_b + rng.normal(0.004, 0.01, n)
    order = rng.permutation(n)
    ids = _ids(n)
    new = _run(tmp_path, "new", ids, {"ssim": ssim_n, "lpips": lpips_n})
    base = _run(tmp_path, "base", [ids[i] for i in order], {"ssim": ssim_b[order], "lpips": lpips_b[order]})
    res = _regress(new, base, "--gate", "interval", "--resamples", str(resamples), "--seed", str(seed),
                   "--json")
    assert res.exit_code in (0, 1), res.output
    got = _report(res)
    for key, x, y in (("ssim", ssim_n, ssim_b), ("lpips", lpips_n, lpips_b)):
        diffs = [_loop_mean(x, idx) - _loop_mean(y, idx) for idx in _draws(n, resamples, seed)]
        lo, hi = _interval(diffs)
        assert got[key]["interval"][0] == pytest.approx(lo, abs=1e-12)
        assert got[key]["interval"][1] == pytest.approx(hi, abs=1e-12)
        assert got[key]["delta"] == pytest.approx(np.mean(x) - np.mean(y), abs=1e-12)
        assert got[key]["basis"] == "interval" and f"{resamples} resamples, seed {seed}" in got[key]["interval_method"]
    # deterministic by seed; another seed moves the interval
    again = _report(_regress(new, base, "--gate", "interval", "--resamples", str(resamples), "--seed", str(seed),
                             "--json"))
    other = _report(_regress(new, base, "--gate", "interval", "--resamples", str(resamples), "--seed", "6",
                             "--json"))
    assert again["ssim"]["interval"] == got["ssim"]["interval"] and other["ssim"]["interval"] != got["ssim"]["interval"]


def test_a_known_shift_is_detected_and_a_zero_shift_is_not(tmp_path):
    rng = np.random.default_rng(3)
    n = 200
    base = rng.uniform(0.5, 0.9, n)
    noise = rng.normal(0, 0.01, n)
    ids = _ids(n)
    b = _run(tmp_path, "base", ids, {"ssim": base})
    shifted = _run(tmp_path, "shifted", ids, {"ssim": base - 0.03 + noise})
    res = _regress(shifted, b, "--gate", "interval", "--tolerance", "ssim=0.01", "--json")
    assert res.exit_code == 1, res.output
    m = _report(res)["ssim"]
    assert m["status"] == "regressed" and m["interval"][0] < -0.03 < m["interval"][1] and m["interval"][1] < -0.01
    same = _run(tmp_path, "same", ids, {"ssim": base + noise - noise.mean()})  # zero shift, per-image noise
    res = _regress(same, b, "--gate", "interval", "--json")
    assert res.exit_code == 0, res.output
    m = _report(res)["ssim"]
    assert m["interval"][0] < 0 < m["interval"][1] and m["status"] != "regressed"


def test_interval_gate_passes_where_the_point_gate_raises_a_false_alarm(tmp_path):
    """Two samplings of one checkpoint: per-image noise and a mean worse by 0.001 SSIM by chance. The point gate
    (tolerance 0) fails; the interval covers 0, so the interval gate passes and says the point was worse."""
    rng = np.random.default_rng(4)
    n = 100
    base = rng.uniform(0.5, 0.9, n)
    noise = rng.normal(0, 0.02, n)
    ids = _ids(n)
    b = _run(tmp_path, "base", ids, {"ssim": base})
    new = _run(tmp_path, "new", ids, {"ssim": base + noise - noise.mean() - 0.001})
    point = _regress(new, b, "--json")
    assert point.exit_code == 1 and _report(point)["ssim"]["status"] == "regressed"
    assert _report(point)["ssim"]["interval"] is None  # the default gate computes no interval
    interval = _regress(new, b, "--gate", "interval", "--json")
    assert interval.exit_code == 0, interval.output
    m = _report(interval)["ssim"]
    assert m["status"] == "within" and m["interval"][0] < 0 < m["interval"][1]
    shown = _regress(new, b, "--intervals", "--json")  # point gate, intervals shown: still fails
    assert shown.exit_code == 1 and _report(shown)["ssim"]["interval"] == m["interval"]
    table = _regress(new, b, "--gate", "interval")
    assert "95% interval" in table.output and "within (interval)" in table.output


# ---------------------------------------------------------------------------------------------- FID and KID


def _feature_runs(tmp_path: Path, n: int = 30, d: int = 8, shift: float = 0.0) -> tuple[Path, Path, dict]:
    rng = np.random.default_rng(21)
    real = rng.normal(0, 1, (60, d))
    gen_b = rng.normal(0.2, 1, (n, d))
    gen_n = gen_b + rng.normal(shift, 0.3, (n, d))
    order = rng.permutation(n)
    ids = _ids(n)
    ssim = rng.uniform(0.5, 0.9, n)
    new = _run(tmp_path, "new", ids, {"ssim": ssim}, features={"generated": gen_n, "real": real,
                                                                "positions": np.arange(n)})
    # the baseline scored the same images, listed in another order (its CSV and its feature rows)
    base = _run(tmp_path, "base", [ids[i] for i in order], {"ssim": ssim[order]},
                features={"generated": gen_b[order], "real": real, "positions": np.arange(n)})
    return new, base, {"gen_n": gen_n, "gen_b": gen_b, "real": real, "order": order}


def test_fid_and_kid_intervals_equal_a_loop_reference(tmp_path):
    """CLI end to end: per resample, FID by posebench's frechet_distance and KID by posebench's kid on the
    resampled generated features of each run (the same images), against the fixed real set."""
    new, base, f = _feature_runs(tmp_path)
    resamples, seed = 40, 9
    res = _regress(new, base, "--gate", "interval", "--fid-resamples", str(resamples), "--seed", str(seed),
                   "--json")
    assert res.exit_code in (0, 1), res.output
    got = _report(res)
    rs = FeatureStats(keep_features=True)
    rs.update(f["real"])

    def fid(x: np.ndarray) -> float:
        gs = FeatureStats()
        gs.update(x)
        return frechet_distance(gs.mean(), gs.cov(), rs.mean(), rs.cov())

    def kid_of(x: np.ndarray) -> float:
        return kid(x, rs.features(), num_subsets=KID["num_subsets"], max_subset_size=KID["max_subset_size"],
                   rng=np.random.RandomState(KID["seed"]))[0]

    for key, stat in (("fid", fid), ("kid", kid_of)):
        diffs = [stat(f["gen_n"][idx]) - stat(f["gen_b"][idx]) for idx in _draws(30, resamples, seed)]
        lo, hi = _interval(diffs)
        scale = max(diffs) - min(diffs)
        assert got[key]["interval"][0] == pytest.approx(lo, abs=1e-9 * scale), key
        assert got[key]["interval"][1] == pytest.approx(hi, abs=1e-9 * scale), key
        # the baseline's value as it scored its rows (KID's subsets are drawn by row position)
        assert got[key]["delta"] == pytest.approx(stat(f["gen_n"]) - stat(f["gen_b"][f["order"]]), rel=1e-9)
        assert f"{resamples} resamples" in got[key]["interval_method"]


def test_resamplers_agree_with_posebench_fid_and_kid():
    """The fast resamplers give posebench's FID / KID of the resampled features: 1e-9 relative with a full-rank
    generated covariance (n > D), 1e-7 when n <= D, where a 40-digit computation shows the resampler is the exact
    one and frechet_distance carries ~1e-8 round-off (the square root of its rank-deficient covariance)."""
    import mpmath as mp

    rng = np.random.default_rng(0)
    for n, d, rel in ((50, 16, 1e-9), (10, 16, 1e-7)):
        gen, real = rng.normal(0.3, 1, (n, d)), rng.normal(0, 1, (40, d))
        rs = FeatureStats(keep_features=True)
        rs.update(real)
        fr = FidResampler(gen, rs.mean(), rs.cov())
        kr = KidResampler(gen, rs.features(), num_subsets=5, max_subset_size=8, seed=1)
        idx = np.stack([np.arange(n)] + [rng.integers(0, n, n) for _ in range(3)])
        fids, kids = fr(idx), kr(idx)
        for i, row in enumerate(idx):
            gs = FeatureStats()
            gs.update(gen[row])
            assert fids[i] == pytest.approx(frechet_distance(gs.mean(), gs.cov(), rs.mean(), rs.cov()), rel=rel)
            ref = kid(gen[row], rs.features(), num_subsets=5, max_subset_size=8, rng=np.random.RandomState(1))[0]
            assert kids[i] == pytest.approx(ref, rel=1e-9, abs=1e-12)
    # n <= D: the exact value at 40 digits
    mp.mp.dps = 40
    n, d = 6, 10
    gen, real = rng.normal(0.3, 1, (n, d)), rng.normal(0, 1, (30, d))
    rs = FeatureStats()
    rs.update(real)

    def stats(x):
        m = mp.matrix(x.tolist())
        mu = [mp.fsum(m[i, j] for i in range(len(x))) / len(x) for j in range(d)]
        c = mp.matrix(d, d)
        for a in range(d):
            for b in range(d):
                c[a, b] = mp.fsum((m[i, a] - mu[a]) * (m[i, b] - mu[b]) for i in range(len(x))) / (len(x) - 1)
        return mu, c

    mr, cr = stats(real)
    e, q = mp.eigsy(cr)
    a = q * mp.diag([mp.sqrt(max(v, 0)) for v in e]) * q.T
    fr = FidResampler(gen, rs.mean(), rs.cov())
    for row in (np.arange(n), np.array([0, 0, 3, 5, 5, 5])):  # all rows; a resample with repeated rows
        mg, cg = stats(gen[row])
        ev, _ = mp.eigsy(a * cg * a)
        exact = (mp.fsum((mg[j] - mr[j]) ** 2 for j in range(d)) + mp.fsum(cg[j, j] + cr[j, j] for j in range(d))
                 - 2 * mp.fsum(mp.sqrt(max(v, 0)) for v in ev))
        assert fr.one(row) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_resamplers_on_cuda_equal_cpu():
    """`regress --device cuda`: the same FID / KID per resample as on the CPU, to float64 round-off."""
    rng = np.random.default_rng(3)
    gen, real = rng.normal(0.3, 1, (300, 64)), rng.normal(0, 1, (400, 64))
    rs = FeatureStats(keep_features=True)
    rs.update(real)
    idx = np.stack([np.arange(300)] + [rng.integers(0, 300, 300) for _ in range(4)])
    for make in (lambda dev: FidResampler(gen, rs.mean(), rs.cov(), device=dev),
                 lambda dev: KidResampler(gen, rs.features(), num_subsets=7, max_subset_size=50, seed=2, device=dev)):
        np.testing.assert_allclose(make("cuda")(idx), make("cpu")(idx), rtol=1e-9, atol=1e-12)


def test_fid_shift_is_detected(tmp_path):
    new, base, _ = _feature_runs(tmp_path, shift=0.8)
    res = _regress(new, base, "--gate", "interval", "--fid-resamples", "30", "--tolerance", "fid=0.1", "--json")
    got = _report(res)  # stdout is the JSON alone: the bootstrap's progress goes to stderr
    assert res.exit_code == 1 and got["fid"]["status"] == "regressed" and got["fid"]["interval"][0] > 0.1
    # without a terminal, plain progress lines (a CI log): the last one says every resample was done
    assert "fid bootstrap (30 images, cpu): 30/30 (100%)" in res.stderr
    quiet = _regress(new, base, "--gate", "interval", "--fid-resamples", "30", "--tolerance", "fid=0.1", "--json",
                     "--quiet")
    assert "bootstrap" not in quiet.stderr and _report(quiet) == got


# ---------------------------------------------------------------------------------------------- reports


def test_the_table_is_never_cut_in_a_log(tmp_path):
    """Without a terminal (a CI log) at rich's default 80 columns, every cell prints whole (no `…`)."""
    new, base, _ = _feature_runs(tmp_path)
    res = runner.invoke(app, ["regress", "--results", str(new), "--baseline", str(base), "--gate", "interval",
                              "--fid-resamples", "20", "--resamples", "100", "--tolerance", "fid=1000,kid=1000",
                              "--quiet"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "…" not in res.stdout and "(interval)" in res.stdout


def test_junit_and_json_carry_the_interval(tmp_path):
    new, base, _ = _feature_runs(tmp_path)
    junit, out = tmp_path / "gate.xml", tmp_path / "gate.json"
    res = _regress(new, base, "--gate", "interval", "--fid-resamples", "20", "--resamples", "100", "--junit",
                   str(junit), "--json-out", str(out), "--tolerance", "fid=1000,kid=1000")
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["gate"] == "interval"
    assert report["bootstrap"] == {"resamples": 100, "fid_resamples": 20, "seed": 0, "level": 0.95}
    by_name = {m["name"]: m for m in report["metrics"]}
    root = ET.parse(junit).getroot()
    props = {p.get("name"): p.get("value") for p in root.find("testsuite/properties")}
    assert props["gate"] == "interval" and props["bootstrap_fid_resamples"] == "20"
    for case in root.iter("testcase"):
        m = by_name[case.get("name")]
        cp = {p.get("name"): p.get("value") for p in case.find("properties")}
        assert float(cp["interval_low"]) == m["interval"][0] and float(cp["interval_high"]) == m["interval"][1]
        assert cp["basis"] == "interval" and "interval [" in case.find("system-out").text


def test_metrics_without_an_interval_fall_back_to_the_point_with_a_warning(tmp_path):
    ids = _ids(20)
    vals = np.linspace(0.5, 0.7, 20)
    b = _run(tmp_path, "base", ids, {"ssim": vals, "pce": vals}, extra_metrics={"is": 3.0})
    n = _run(tmp_path, "new", ids, {"ssim": vals, "pce": vals}, extra_metrics={"is": 2.9})
    for path in (b, n):  # PCE as a mean of batch means: not the mean of its per-image column
        doc = json.loads(path.read_text())
        doc["metrics"]["pce"]["value"] = 0.55
        path.write_text(json.dumps(doc))
    res = _regress(n, b, "--gate", "interval", "--json")
    assert res.exit_code == 1  # IS has no interval: judged on its point difference, which is worse
    got = json.loads(res.stdout)
    assert {m["name"]: m["basis"] for m in got["metrics"]} == {"ssim": "interval", "pce": "point", "is": "point"}
    assert any(w.startswith("is: no interval") and "judged on the point difference" in w for w in got["warnings"])
    assert any(w.startswith("pce: no interval") and "aggregated otherwise" in w for w in got["warnings"])


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_naming_the_file(tmp_path):
    new, base, _ = _feature_runs(tmp_path)
    cases = [(["--resamples", "0"], "--resamples must be a whole number >= 1"),
             (["--fid-resamples", "0"], "--fid-resamples must be a whole number >= 1"),
             (["--gate", "strict"], "--gate must be one of point, interval")]
    for args, message in cases:
        res = _regress(new, base, *args)
        assert res.exit_code == 2 and message in res.output, (args, res.output)
    # a features file that belongs to another evaluation
    swapped = tmp_path / "swap"
    swapped.mkdir()
    for name in ("new", "base"):
        for suffix in (".json", ".per_image.csv"):
            (swapped / f"{name}{suffix}").write_bytes((tmp_path / f"{name}{suffix}").read_bytes())
    (swapped / "new.features.safetensors").write_bytes((tmp_path / "base.features.safetensors").read_bytes())
    (swapped / "base.features.safetensors").write_bytes((tmp_path / "new.features.safetensors").read_bytes())
    res = _regress(swapped / "new.json", swapped / "base.json", "--gate", "interval", "--fid-resamples", "5")
    assert res.exit_code == 2 and "not the one eval wrote" in res.output
    assert str(swapped / "new.features.safetensors") in res.output.replace("\n", "")
    # a missing features file, a missing per-image CSV
    (tmp_path / "base.features.safetensors").unlink()
    res = _regress(new, base, "--gate", "interval", "--fid-resamples", "5")
    assert res.exit_code == 2 and "no such features file" in res.output
    assert str(tmp_path / "base.features.safetensors") in res.output.replace("\n", "")
    (tmp_path / "new.per_image.csv").unlink()
    res = _regress(new, base, "--gate", "interval")
    assert res.exit_code == 2 and "no such per-image CSV" in res.output
    assert str(tmp_path / "new.per_image.csv") in res.output.replace("\n", "")
    # the point gate never reads them
    assert _regress(new, base, "--tolerance", "fid=1e9,kid=1e9,ssim=1").exit_code == 0


def test_different_image_sets_are_refused(tmp_path):
    ids = _ids(30)
    vals = np.linspace(0.5, 0.7, 30)
    b = _run(tmp_path, "base", ids, {"ssim": vals})
    n = _run(tmp_path, "new", [*ids[:29], ("src999", "tgt999")], {"ssim": vals})
    res = _regress(n, b, "--gate", "interval")
    text = res.output.replace("\n", "")
    assert res.exit_code == 2 and "scored different images for ssim: 1 only in the new results" in text
    assert str(tmp_path / "new.per_image.csv") in text and str(tmp_path / "base.per_image.csv") in text
    assert "src999,tgt999" in text and "src029,tgt029" in text
    with pytest.raises(IntervalError, match="scored different images"):
        compare_files(n, b, gate="interval")
    # a CSV whose column does not give the results' value is not the one eval wrote with them
    lines = (tmp_path / "base.per_image.csv").read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",0.9"
    (tmp_path / "base.per_image.csv").write_text("\n".join(lines) + "\n")
    res = _regress(b, b, "--gate", "interval")
    assert res.exit_code == 2 and "the CSV is not the one eval wrote" in res.output
    assert str(tmp_path / "base.per_image.csv") in res.output.replace("\n", "")
