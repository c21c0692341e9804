"""`posebench regress`: direction-aware metric gate with tolerances, refusals, JSON and JUnit output."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from posebench.cli import app
from posebench.metrics.registry import higher_is_better
from posebench.results.regress import RegressError, compare, parse_tolerances
from posebench.results.schema import read_results, write_results

runner = CliRunner()
BASE = {"fid": 6.0, "ssim": 0.73, "lpips": 0.17}


def _results(**values: Any) -> dict[str, Any]:
    """A minimal results dict that `write_results` / `read_results` accept."""
    return {
        "schema_version": 1, "posebench": "0.0.0-test", "created": "2025-01-01T00:00:00+00:00",
        "canonical": True, "non_canonical_reasons": [],
        "protocol": {"name": "deepfashion-256x176", "version": 1, "sha256": "b" * 64},
        "profile": {"name": "clean", "version": 1, "sha256": "p" * 64},
        "dataset": {"name": "deepfashion", "split": "test", "pairs": 8570, "pairs_sha256": "a" * 64},
        "predictions": {"dir": "samples", "count": 8570, "images_sha256": "c" * 64},
        "flags": [],
        "metrics": {k: {"value": v, "stderr": None, "higher_is_better": higher_is_better(k), "n": 8570, "details": {}}
                    for k, v in {**BASE, **values}.items()},
        "warnings": [], "env": {},
    }


def _write(path: Path, data: dict[str, Any]) -> Path:
    write_results(path, data)
    return path


def _regress(tmp_path: Path, new: dict[str, Any], *args: str, base: dict[str, Any] | None = None):
    b = _write(tmp_path / "base.json", base or _results())
    n = _write(tmp_path / "new.json", new)
    return runner.invoke(app, ["regress", "--results", str(n), "--baseline", str(b), *args], env={"COLUMNS": "200"})


@pytest.mark.parametrize("new, tolerance, code", [
    ({"fid": 6.8}, "fid=0.5", 1),                # worse FID beyond tolerance
    ({"fid": 6.4}, "fid=0.5", 0),                # worse, within tolerance
    ({"fid": 6.0000001}, None, 1),               # default tolerance 0
    ({"fid": 5.2, "ssim": 0.75}, None, 0),       # improvements
    ({"ssim": 0.72}, "ssim=0.005", 1),           # higher is better: a lower SSIM regresses
    ({"ssim": 0.726}, "fid=0.5,ssim=0.005", 0),
    ({"lpips": 0.1701}, "lpips=0.001", 0),
])
def test_exit_codes(tmp_path, new, tolerance, code):
    args = ["--tolerance", tolerance] if tolerance else []
    res = _regress(tmp_path, _results(**new), *args)
    assert res.exit_code == code, res.output
    assert ("regressed" in res.output) == (code == 1)


@pytest.mark.parametrize("key, value, label", [
    (("protocol", "name"), "deepfashion-512x352", "protocol name differs"),
    (("protocol", "version"), 2, "protocol version differs"),
    (("profile", "name"), "pidm", "profile name differs"),
    (("profile", "version"), 2, "profile version differs"),
    (("profile", "sha256"), "q" * 64, "profile sha256 differs"),
    (("dataset", "pairs_sha256"), "d" * 64, "dataset pairs_sha256 differs"),
])
def test_refuses_results_that_measure_something_else(tmp_path, key, value, label):
    new = _results(fid=1.0)
    new[key[0]][key[1]] = value
    res = _regress(tmp_path, new)
    assert res.exit_code == 2, res.output
    assert "refusing to compare" in res.output and label in res.output


def test_junit_and_json_reports(tmp_path):
    junit, out = tmp_path / "regress.xml", tmp_path / "regress.json"
    res = _regress(tmp_path, _results(fid=7.0, ssim=0.70, lpips=0.16), "--tolerance", "fid=0.5",
                   "--junit", str(junit), "--json-out", str(out))
    assert res.exit_code == 1, res.output
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert sorted(c.get("name") for c in cases) == ["fid", "lpips", "ssim"]
    failed = sorted(c.get("name") for c in cases if c.find("failure") is not None)
    assert failed == ["fid", "ssim"]
    assert root.find("testsuite").get("failures") == "2" and root.find("testsuite").get("tests") == "3"
    report = json.loads(out.read_text())
    assert report["ok"] is False and report["regressions"] == ["fid", "ssim"]
    by_name = {m["name"]: m for m in report["metrics"]}
    assert by_name["fid"]["delta"] == pytest.approx(1.0) and by_name["fid"]["tolerance"] == 0.5
    assert by_name["lpips"]["status"] == "improved"
    # a passing run: no failures, and `--json -` prints the report instead of the table
    res = _regress(tmp_path, _results(fid=5.0), "--junit", str(junit), "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["ok"] is True
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "0"


@pytest.mark.parametrize("base_psnr, new_psnr", [(17.0, math.inf), (math.inf, 17.0), (17.0, math.nan),
                                                   (math.nan, math.nan)])
def test_non_finite_values_are_refused(tmp_path, base_psnr, new_psnr):
    """An infinite PSNR (identical images) or a NaN is neither an improvement nor a regression: refused, exit 2,
    naming the file and the metric (exit 1 means "regressed")."""
    b = read_results(_write(tmp_path / "b.json", _results(psnr=base_psnr)))  # written as "inf" / "nan" strings
    n = read_results(_write(tmp_path / "n.json", _results(psnr=new_psnr)))
    with pytest.raises(RegressError, match=r"psnr is (inf|nan): regress compares finite values only"):
        compare(n, b)
    write_results(tmp_path / "base.json", _results(psnr=base_psnr))
    write_results(tmp_path / "new.json", _results(psnr=new_psnr))
    res = runner.invoke(app, ["regress", "--results", str(tmp_path / "new.json"), "--baseline",
                              str(tmp_path / "base.json")])
    assert res.exit_code == 2 and "finite values only" in res.output


def test_invalid_results_files_exit_2(tmp_path):
    """A metrics list, a missing protocol name, a value out of range: exit 2 naming the file, never 0 or 1."""
    good = _results()
    cases = {"list": {**good, "metrics": [1, 2]}, "no name": {**good, "protocol": {"version": 1}},
             "ssim 7": {**good, "metrics": {**good["metrics"], "ssim": {**good["metrics"]["ssim"], "value": 7.0}}}}
    for label, data in cases.items():
        (tmp_path / "bad.json").write_text(json.dumps(data))
        write_results(tmp_path / "base.json", good)
        res = runner.invoke(app, ["regress", "--results", str(tmp_path / "bad.json"), "--baseline",
                                  str(tmp_path / "base.json")])
        assert res.exit_code == 2 and str(tmp_path / "bad.json") in res.output, (label, res.output)


def test_missing_and_added_metrics(tmp_path):
    base = _results(psnr=17.0)
    new = _results(kid=0.01)
    report = compare(new, base)
    status = {m.name: m.status for m in report.metrics}
    assert status["psnr"] == "missing" and status["kid"] == "added" and not report.ok
    assert [m.name for m in report.regressions] == ["psnr"]


def test_bad_tolerances(tmp_path):
    for spec in ("fid", "fid=abc", "fid=-1", "fid=1,fid=2"):
        with pytest.raises(RegressError):
            parse_tolerances(spec)
    assert parse_tolerances(" fid=0.5, ssim=0.005 ,") == {"fid": 0.5, "ssim": 0.005}
    res = _regress(tmp_path, _results(), "--tolerance", "fdi=1")
    assert res.exit_code == 2 and "fdi" in res.output
