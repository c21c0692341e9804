"""`posebench eval` keeps the features FID and KID were computed from, and `posebench regress --gate interval`
bootstraps FID/KID from them: end to end on synthetic DeepFashion with a randomly initialised, calibrated FID
Inception (as tests/posebench/test_evaluate.py builds it), two noisy "samplings" of the same predictions.

Stated tolerances: features equal the extractor's own output to 1e-5 (a separate forward pass); FID recomputed from
the file with posebench's frechet_distance equals the results value to 1e-12 relative (the same arithmetic); the
bootstrap's point estimate (the FID resampler on all rows) to 1e-6 relative here, where both covariances are rank
deficient (12 generated, 6 real images, 2048-d); KID to 1e-9 relative.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from fakenets import calibrated
from PIL import Image
from typer.testing import CliRunner

from posebench.cli import app
from posebench.metrics.functional.frechet import frechet_distance, frechet_distances_of_subsets
from posebench.metrics.stats import FeatureStats
from posebench.results.kept_features import read
from posebench.results.schema import read_results
from posebench.results.set_bootstrap import FidResampler, KidResampler

runner = CliRunner()


@pytest.fixture(scope="module")
def two_samplings(tmp_path_factory):
    from posebench.datasets.synth import synthesize
    from posebench.metrics.features import fid_inception_skeleton

    base = tmp_path_factory.mktemp("samplings")
    home = base / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("POSEBENCH_HOME", str(home))
    root = base / "df"
    synthesize("deepfashion", root, identities=4, poses=3, size=(256, 176), seed=3, test_fraction=0.5,
               progress=False)
    torch.manual_seed(0)
    torch.save(calibrated(fid_inception_skeleton(), sorted((root / "train").iterdir())).state_dict(),
               base / "fid.pth")
    pairs = [ln.split(",") for ln in (root / "fasion-resize-pairs-test.csv").read_text().split()[1:]]
    for name, seed in (("a", 1), ("b", 2)):  # the same predictions, independent noise per sampling
        out = base / name
        out.mkdir()
        rng = np.random.default_rng(seed)
        for src, tgt in pairs:
            img = np.asarray(Image.open(root / "test" / tgt).convert("RGB"), dtype=np.float64)
            noisy = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(out / f"{Path(src).stem}__{Path(tgt).stem}.png")
        res = runner.invoke(app, ["eval", "--protocol", "deepfashion-256x176", "--root", str(root), "--pred",
                                  str(out), "--out", str(base / f"{name}.json"), "--profile", "clean",
                                  "--batch-size", "12", "--fid-weights", str(base / "fid.pth"), "--metrics",
                                  "fid,kid,ssim,psnr"])
        assert res.exit_code == 0, res.output
    yield {"base": base, "root": root, "pairs": pairs}
    mp.undo()


def test_eval_keeps_the_features_fid_and_kid_used(two_samplings):
    from posebench.metrics.features import build_extractor

    base = two_samplings["base"]
    results = read_results(base / "a.json")
    assert results["features_file"] == "a.features.safetensors" and results["per_image_id_columns"] == ["source",
                                                                                                         "target"]
    kept = read(base / "a.features.safetensors")
    n = len(two_samplings["pairs"])
    assert kept.generated.shape == (n, 2048) and kept.positions.tolist() == list(range(n))
    assert [r.name for r in kept.real] == ["train"] and kept.kid == {"num_subsets": 100, "max_subset_size": 1000,
                                                                     "seed": 0}
    # the rows are the extractor's features of the generated images, in the per-image CSV's order
    rows = (base / "a.per_image.csv").read_text().splitlines()[1:]
    files = [base / "a" / f"{Path(r.split(',')[0]).stem}__{Path(r.split(',')[1]).stem}.png" for r in rows]
    ext = build_extractor("clean", weights=base / "fid.pth")
    with torch.inference_mode():
        own = ext(torch.from_numpy(np.stack([np.asarray(Image.open(f)) for f in files])).permute(0, 3, 1, 2)
                  .float()).double().numpy()
    np.testing.assert_allclose(kept.generated, own, rtol=1e-5, atol=1e-5)
    # the real set's statistics are the cached ones FID used
    cache = Path(results["dataset"]["real_sets"]["train"]["cache_file"])
    with np.load(cache, allow_pickle=False) as real:
        n_r, s_r, ss_r = float(real["n"]), real["sum"], real["outer"]
    mu_r = s_r / n_r
    np.testing.assert_allclose(kept.real[0].mean, mu_r, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kept.real[0].cov, (ss_r - n_r * np.outer(mu_r, mu_r)) / (n_r - 1), rtol=1e-9,
                               atol=1e-9)
    # FID and KID recomputed from the file are the values eval wrote
    gs = FeatureStats()
    gs.update(kept.generated)
    fid = results["metrics"]["fid"]["value"]
    real = kept.real[0]
    assert frechet_distance(gs.mean(), gs.cov(), real.mean, real.cov) == pytest.approx(fid, rel=1e-12)
    assert FidResampler(kept.generated, real.mean, real.cov).one(np.arange(n)) == pytest.approx(fid, rel=1e-6)
    kid = KidResampler(kept.generated, real.features, **kept.kid)(np.arange(n)[None])[0]
    assert kid == pytest.approx(results["metrics"]["kid"]["value"], rel=1e-9)


def test_regress_interval_gate_on_two_evaluations(two_samplings):
    base = two_samplings["base"]
    resamples, seed = 8, 2
    res = runner.invoke(app, ["regress", "--results", str(base / "b.json"), "--baseline", str(base / "a.json"),
                              "--gate", "interval", "--fid-resamples", str(resamples), "--seed", str(seed),
                              "--resamples", "300", "--json"])
    assert res.exit_code in (0, 1), res.output
    got = {m["name"]: m for m in json.loads(res.stdout)["metrics"]}
    assert {k: m["basis"] for k, m in got.items()} == {k: "interval" for k in ("ssim", "psnr", "fid", "kid")}
    # FID interval: posebench's batched Frechet distance (frechet_distances_of_subsets) over the documented draws
    ka, kb = read(base / "a.features.safetensors"), read(base / "b.features.safetensors")
    n = len(ka.generated)
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, n, size=n) for _ in range(resamples)]
    fb = frechet_distances_of_subsets(kb.generated, draws, kb.real[0].mean, kb.real[0].cov)
    fa = frechet_distances_of_subsets(ka.generated, draws, ka.real[0].mean, ka.real[0].cov)
    diffs = sorted(x - y for x, y in zip(fb, fa, strict=True))
    lo_pos, hi_pos = 0.025 * (resamples - 1), 0.975 * (resamples - 1)
    lo = diffs[math.floor(lo_pos)] + (diffs[math.floor(lo_pos) + 1] - diffs[math.floor(lo_pos)]) * (lo_pos % 1)
    hi = diffs[math.floor(hi_pos)] + (diffs[math.floor(hi_pos) + 1] - diffs[math.floor(hi_pos)]) * (hi_pos % 1)
    spread = diffs[-1] - diffs[0]
    assert got["fid"]["interval"][0] == pytest.approx(lo, abs=1e-6 * spread)
    assert got["fid"]["interval"][1] == pytest.approx(hi, abs=1e-6 * spread)
    assert got["fid"]["delta"] == pytest.approx(
        read_results(base / "b.json")["metrics"]["fid"]["value"] - read_results(base / "a.json")["metrics"]["fid"]
        ["value"], rel=1e-12)
