"""`posebench report` end to end: synthetic DeepFashion, two baselines (oracle = the ground-truth target,
copy-source = the source image) scored with SSIM and PSNR only (no weight files needed), then one report.

The HTML is checked as text (labels, metrics, image count, self-containment, the worst/best pairs against the
per-image CSV) and, when Debian's `chromium` is installed (.ci/install-chromium.sh), rendered headless: the
screenshot must be non-trivial and every <img> must have decoded.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from posebench.cli import app
from posebench.datasets.names import PairKey
from posebench.protocols import get_profile
from posebench.results.report import select_samples

runner = CliRunner()
K = 3  # --samples: 12 test pairs, so the worst and best three never overlap
LABELS = ("oracle-gt", "copy-src")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Dataset root, the two prediction folders, their results files and the report built from them."""
    from posebench.datasets.synth import synthesize

    base = tmp_path_factory.mktemp("report")
    root = base / "df"
    synthesize("deepfashion", root, identities=5, poses=3, size=(256, 176), seed=3, test_fraction=0.4,
               progress=False)
    pairs = [ln.split(",") for ln in (root / "fasion-resize-pairs-test.csv").read_text().split()[1:]]
    results = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSEBENCH_HOME", str(base / "home"))
        for name, pick in (("oracle", 1), ("copy-source", 0)):
            pred = base / name
            pred.mkdir()
            for p in pairs:
                Image.open(root / "test" / p[pick]).convert("RGB").save(pred / f"{Path(p[0]).stem}__"
                                                                               f"{Path(p[1]).stem}.png")
            out = base / f"{name}.json"
            res = runner.invoke(app, ["eval", "--protocol", "deepfashion-256x176", "--root", str(root),
                                      "--pred", str(pred), "--out", str(out), "--metrics", "ssim,psnr",
                                      "--batch-size", "8"])
            assert res.exit_code == 0, res.output
            results.append(out)
        report = base / "report.html"
        res = runner.invoke(app, ["report", *map(str, results), "--out", str(report), "--samples", str(K),
                                  "--label", LABELS[0], "--label", LABELS[1]])
        assert res.exit_code == 0, res.output
    return {"base": base, "results": results, "report": report, "html": report.read_text(), "pairs": pairs}


def _per_image(results: Path) -> dict[PairKey, float]:
    data = json.loads(results.read_text())
    with (results.parent / data["per_image_file"]).open(newline="") as fh:
        return {PairKey(r["source"], r["target"]): float(r["ssim"]) for r in csv.DictReader(fh)}


def _section_pairs(html: str, section: str) -> list[PairKey]:
    m = re.search(rf'<section class="samples" id="{section}"[^>]*>(.*?)</section>', html, re.S)
    assert m is not None, f"no section {section}"
    return [PairKey(s, t) for s, t in re.findall(r'<li data-source="([^"]+)" data-target="([^"]+)"', m[1])]


def test_report_contents(world):
    html = world["html"]
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    for label in LABELS:
        assert html.count(label) >= 5  # comparison header, run card, sample titles, grid captions, footer
    for metric, arrow in (("ssim", "↑"), ("psnr", "↑")):
        assert f"{metric} {arrow}" in html
    # 2 histograms (ssim, psnr) + a worst and a best grid per results file
    assert html.count("<img") == 2 + 2 * len(LABELS)
    assert html.count('src="data:image/png;base64,') == html.count("<img")
    assert "http://" not in html and "https://" not in html and "<script" not in html and "<link" not in html
    assert html.count("† non-canonical") >= 2  # the synthetic root is not the pinned split
    for results in world["results"]:
        data = json.loads(results.read_text())
        for sha in (data["profile"]["sha256"], data["dataset"]["pairs_sha256"], data["predictions"]["images_sha256"]):
            assert sha in html
        assert f"{data['metrics']['ssim']['value']:.4f}" in html
        assert all(w in html for w in data["warnings"])
    assert f"clean@{get_profile('clean').version}" in html and "deepfashion-256x176 v1" in html
    assert len(world["report"].read_bytes()) < 3_000_000  # downscaled grids keep the page small


def test_worst_and_best_follow_the_per_image_csv(world):
    for i, results in enumerate(world["results"]):
        ssim = _per_image(results)
        by_value = sorted(ssim, key=lambda k: (ssim[k], k))
        assert _section_pairs(world["html"], f"samples-{i}-worst") == by_value[:K]
        best = sorted(ssim, key=lambda k: (-ssim[k], k))[:K]
        assert _section_pairs(world["html"], f"samples-{i}-best") == best
    copy = _per_image(world["results"][1])
    worst, best = _section_pairs(world["html"], "samples-1-worst"), _section_pairs(world["html"], "samples-1-best")
    assert max(copy[p] for p in worst) < min(copy[p] for p in best)


def test_select_samples_direction():
    values = {PairKey(f"s{i}", f"t{i}"): {"lpips": v} for i, v in enumerate([0.3, 0.1, float("nan"), 0.5, 0.2])}
    worst, best = select_samples(values, "lpips", higher_is_better=False, k=2)
    assert worst == [PairKey("s3", "t3"), PairKey("s0", "t0")]  # lower is better: the largest are the worst
    assert best == [PairKey("s1", "t1"), PairKey("s4", "t4")]  # NaN is never shown


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (.ci/install-chromium.sh)")
def test_report_renders_in_chromium(world, tmp_path):
    # The report has no script; a copy gets one that records, after the load event, how many images decoded.
    probe = tmp_path / "probe.html"
    probe.write_text(world["html"].replace(
        "</body>", '<script>addEventListener("load",()=>{const im=[...document.images];document.body.setAttribute('
        '"data-decoded",im.filter(i=>i.complete&&i.naturalWidth>0).length+"/"+im.length)})</script></body>'))
    flags = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,2000", world["report"].as_uri()],
                   check=True, capture_output=True, timeout=60)
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], check=True, capture_output=True, text=True,
                         timeout=60).stdout

    n = world["html"].count("<img")
    assert f'data-decoded="{n}/{n}"' in dom
    assert '<table class="compare">' in dom and 'id="samples-1-best"' in dom and "<footer>" in dom
    assert shot.stat().st_size > 10_000
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2000, 1200)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # tables, plots and photos, not a blank page


def _variant(world, name: str, change) -> Path:
    """A copy of the copy-source results file (beside the original, so its per-image CSV is found) with
    `change(data)` applied."""
    data = json.loads(world["results"][1].read_text())
    change(data)
    path = world["base"] / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["protocol"].update(name="market-128x64"), ["different protocols", "deepfashion-256x176 v1",
                                                            "market-128x64 v1", "oracle.json", "bad-protocol.json"]),
    (lambda d: d["dataset"].update(split="train"), ["different splits", "'test'", "'train'", "bad-split.json"]),
    (lambda d: d.update(per_image_file="gone.per_image.csv"), ["gone.per_image.csv", "missing", "bad-csv.json"]),
    (lambda d: d["config"].update(pred="/nonexistent/preds"), ["/nonexistent/preds", "no longer exists",
                                                               "report needs it", "bad-pred.json"]),
    (lambda d: d["config"].update(root="/nonexistent/root"), ["/nonexistent/root", "dataset root", "bad-root.json"]),
    (lambda d: d.update(schema_version=99), ["schema 99 is not supported", "bad-schema.json"]),
], ids=["protocol", "split", "csv", "pred", "root", "schema"])
def test_bad_inputs_exit_2(world, tmp_path, change, expected):
    bad = _variant(world, expected[-1], change)
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", str(world["results"][0]), str(bad), "--out", str(out)])
    assert res.exit_code == 2, res.output
    for text in expected:
        assert text in res.output, (text, res.output)
    assert not out.exists()


def test_label_count_must_match(world, tmp_path):
    res = runner.invoke(app, ["report", *map(str, world["results"]), "--label", "one", "--out",
                              str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "1 --label for 2 results files" in res.output


def test_results_of_two_profiles_are_never_ranked_together(world, tmp_path):
    """`clean@2` and `pidm@2` numbers are not comparable: one table each, no best across them, and said so."""
    other = _variant(world, "pidm-profile.json", lambda d: d["profile"].update(name="pidm"))
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", str(world["results"][0]), str(other), "--out", str(out), "--samples", "0"])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert "these results use 2 profiles" in html and "not comparable" in html
    assert html.count('<table class="compare">') == 2 and 'class="num best"' not in html  # one run per table


def test_samples_0_needs_neither_the_dataset_root_nor_the_images(world, tmp_path):
    """The page is built from the results files and their per-image CSVs alone."""
    moved = _variant(world, "moved.json", lambda d: d["config"].update(root="/nonexistent/root",
                                                                         pred="/nonexistent/preds"))
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", str(world["results"][0]), str(moved), "--out", str(out), "--samples", "0"])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert 'id="samples"' not in html and "ssim" in html


def _foreign_layout(world, name: str, header: list[str], rows: list[list[str]], protocol: str) -> Path:
    """A results file whose per-image CSV has another identity layout (Human-Art, two plain folders)."""
    data = json.loads(world["results"][1].read_text())
    data["protocol"]["name"] = protocol
    data["per_image_file"] = f"{name}.per_image.csv"
    with (world["base"] / data["per_image_file"]).open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    data["metrics"]["ssim"].update(value=float(np.mean([float(r[-2]) for r in rows])), n=len(rows))
    path = world["base"] / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def test_human_art_and_plain_folder_results_are_reported(world, tmp_path):
    humanart = _foreign_layout(world, "humanart", ["key", "scenario", "image_id", "file", "ssim", "psnr"],
                               [["a/1", "cartoon", "1", "1.png", "0.5", "20.0"],
                                ["b/2", "dance", "2", "2.png", "0.7", "22.0"]], "humanart-val")
    out = tmp_path / "h.html"
    res = runner.invoke(app, ["report", str(humanart), "--out", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert "humanart-val" in html and "sample grids are drawn for pair protocols" in html
    assert "0.6000" in html  # the results' SSIM, the mean of the two per-image values

    folders = _foreign_layout(world, "folders", ["name", "ssim", "psnr"], [["x", "0.25", "10.0"]], "folders")
    res = runner.invoke(app, ["report", str(folders), "--out", str(tmp_path / "f.html")])
    assert res.exit_code == 0, res.output
    bad = _foreign_layout(world, "unknown-layout", ["id", "ssim", "psnr"], [["x", "0.25", "10.0"]], "folders")
    res = runner.invoke(app, ["report", str(bad), "--out", str(tmp_path / "b.html")])
    assert res.exit_code == 2 and "expected a header starting source,target or name or key" in res.output


def test_a_reid_results_file_is_refused_for_what_it_is(tmp_path):
    reid = tmp_path / "results.json"
    reid.write_text(json.dumps({"schema_version": 1, "kind": "reid-augment", "rows": []}))
    for args in (["report", str(reid), "--out", str(tmp_path / "r.html")],
                 ["regress", "--results", str(reid), "--baseline", str(reid), "--tolerance", "map=1"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "re-ID augmentation results file" in res.output, res.output
        assert "upgrade posebench" not in res.output


def test_comparison_exports_for_papers(world, tmp_path):
    """--csv holds every value of the results files exactly; --latex a booktabs table per profile, best in bold."""
    out_csv, out_tex = tmp_path / "c.csv", tmp_path / "c.tex"
    other = _variant(world, "pidm-export.json", lambda d: d["profile"].update(name="pidm"))
    res = runner.invoke(app, ["report", *map(str, world["results"]), str(other), "--out", str(tmp_path / "r.html"),
                              "--samples", "0", "--label", "oracle_gt", "--label", "copy&src", "--label", "other",
                              "--csv", str(out_csv), "--latex", str(out_tex)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out_csv.open(newline="")))
    for path, label in zip(world["results"], ("oracle_gt", "copy&src"), strict=True):
        metrics = json.loads(path.read_text())["metrics"]
        got = {r["metric"]: r for r in rows if r["label"] == label}
        assert set(got) == set(metrics)
        for name, m in metrics.items():
            assert float(got[name]["value"]) == float(m["value"]) and int(got[name]["n"]) == m["n"]
    tex = out_tex.read_text()
    assert tex.count(r"\toprule") == 2 and tex.count(r"\bottomrule") == 2  # clean@2 and pidm@2 apart
    assert r"oracle\_gt" in tex and r"copy\&src" in tex and r"ssim $\uparrow$" in tex
    assert r"\textbf{1.0000}" in tex  # the oracle's SSIM, the best of its table
    res = runner.invoke(app, ["report", str(world["results"][0]), "--out", str(tmp_path / "r2.html"), "--samples",
                              "0", "--csv", str(tmp_path)])
    assert res.exit_code == 2
