"""Re-ID protocol: subsets (docs/reid.md), generation plans, and rank parity with torchreid's python path."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from posebench.datasets.names import parse_market
from posebench.errors import PosebenchError
from posebench.reid import (
    evaluate_rank,
    make_plan,
    make_subset,
    names_sha256,
    rank_details,
    read_plan,
    read_subset_manifest,
    validate_generated,
    write_plan,
    write_subset_manifest,
)


def _market_names(n_images: int, n_ids: int, seed: int = 0) -> list[str]:
    """n_images unique Market names over n_ids pids (every pid at least once), 6 cameras."""
    rng = np.random.default_rng(seed)
    pids = np.concatenate([np.arange(n_ids), rng.integers(0, n_ids, n_images - n_ids)])
    names = []
    for i, p in enumerate(pids):
        names.append(f"{p + 1:04d}_c{i % 6 + 1}s1_{i:06d}_01.jpg")
    return names


@pytest.fixture(scope="module")
def market_names() -> list[str]:
    return _market_names(12_936, 751)


# ---------------------------------------------------------------------------------------------- subsets


def test_subset_sizes_match_the_real_set(market_names: list[str]) -> None:
    sizes = [len(make_subset(market_names, f, seed=0)) for f in (0.2, 0.4, 0.6, 0.8)]
    assert sizes == [2587, 5174, 7762, 10349]


def test_subset_properties(market_names: list[str]) -> None:
    a = make_subset(market_names, 0.2, seed=1)
    assert a == make_subset(list(reversed(market_names)), 0.2, seed=1)  # deterministic, input order irrelevant
    assert a != make_subset(market_names, 0.2, seed=2)
    assert set(a) <= set(market_names) and len(set(a)) == len(a) and a == sorted(a)
    assert {parse_market(n).pid for n in a} == {parse_market(n).pid for n in market_names}
    assert len(make_subset(market_names, 1.0, seed=0)) == len(market_names)


@pytest.mark.parametrize("fraction", [0, -0.1, 1.01, float("nan"), True, "0.2"])
def test_subset_bad_fraction(market_names: list[str], fraction: object) -> None:
    with pytest.raises(PosebenchError, match="fraction"):
        make_subset(market_names, fraction, seed=0)  # type: ignore[arg-type]


def test_subset_bad_inputs(market_names: list[str]) -> None:
    with pytest.raises(PosebenchError, match="fewer than"):
        make_subset(market_names, 0.05, seed=0)  # 647 images < 751 ids
    with pytest.raises(PosebenchError, match="not Market-1501"):
        make_subset(["-1_c1s1_000001_01.jpg", "0002_c1s1_000451_03.jpg"], 0.5, seed=0)
    with pytest.raises(PosebenchError, match="duplicate"):
        make_subset(["0002_c1s1_000451_03.jpg"] * 2, 0.5, seed=0)


def test_subset_manifest_round_trip(tmp_path: Path, market_names: list[str]) -> None:
    names = make_subset(market_names, 0.4, seed=3)
    src = names_sha256(market_names)
    path = write_subset_manifest(tmp_path / "sub.json", names, 0.4, 3, src)
    m = read_subset_manifest(path, source_hash=src)
    assert (m.names, m.fraction, m.seed, m.source_hash) == (names, 0.4, 3, src)
    with pytest.raises(PosebenchError, match="source_hash"):
        read_subset_manifest(path, source_hash="0" * 64)
    doc = json.loads(path.read_text())
    doc["names"] = doc["names"][1:]
    path.write_text(json.dumps(doc))
    with pytest.raises(PosebenchError, match="count .* names_hash"):
        read_subset_manifest(path)


# ---------------------------------------------------------------------------------------------- plan


def test_plan_rules() -> None:
    subset = make_subset(_market_names(600, 60), 0.5, seed=0)
    stems = {n[:-4] for n in subset}
    rows = make_plan(subset, k=2, seed=5)
    assert rows == make_plan(subset, k=2, seed=5)
    assert rows != make_plan(subset, k=2, seed=6)
    assert len(rows) == 2 * len(subset) and len({r.filename for r in rows}) == len(rows)
    for r in rows:
        name = parse_market(r.source)
        assert (r.pid, r.camid) == (name.pid, name.camid)
        assert r.source in stems and r.target in stems and r.target != r.source
        assert r.filename == f"{r.source}__{r.target}.png"
    with pytest.raises(PosebenchError, match="k="):
        make_plan(subset[:3], k=3)
    with pytest.raises(PosebenchError, match="k"):
        make_plan(subset, k=0)


def _png(path: Path, size: tuple[int, int] = (128, 64)) -> None:
    from PIL import Image

    Image.new("RGB", (size[1], size[0]), (10, 20, 30)).save(path)


def test_plan_csv_and_validate_generated(tmp_path: Path, market_names: list[str]) -> None:
    rows = make_plan(market_names[:8], k=1, seed=0)
    assert read_plan(write_plan(tmp_path / "plan.csv", rows)) == rows
    out = tmp_path / "gen"
    out.mkdir()
    for r in rows:
        _png(out / r.filename)
    validate_generated(rows, out)  # all good
    (out / rows[0].filename).unlink()  # missing
    _png(out / rows[1].filename, (256, 128))  # wrong size
    (out / rows[2].filename).write_bytes(b"not a png")  # unreadable
    _png(out / "stray.png")  # extra
    with pytest.raises(PosebenchError) as exc:
        validate_generated(rows, out)
    msg = str(exc.value)
    for needle in ("missing (1)", rows[0].filename, "extra (1): stray.png", "unreadable (1)", rows[2].filename,
                   "wrong size", f"{rows[1].filename} is 256x128"):
        assert needle in msg


def test_end_to_end_synthetic_market(tmp_path: Path) -> None:
    from posebench.datasets.synth import synthesize

    synthesize("market", tmp_path / "m", identities=6, poses=3, progress=False)
    names = sorted(p.name for p in (tmp_path / "m" / "bounding_box_train").iterdir())
    subset = make_subset(names, 0.5, seed=0)
    assert len(subset) == round(0.5 * len(names))
    assert {parse_market(n).pid for n in subset} == {parse_market(n).pid for n in names}
    rows = make_plan(subset, k=1, seed=0)
    assert [r.source for r in rows] == sorted(n.rsplit(".", 1)[0] for n in subset)


# ---------------------------------------------------------------------------------------------- rank parity


def _torchreid_eval(*args: np.ndarray, max_rank: int = 50) -> tuple[np.ndarray, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchreid.reid.metrics.rank import eval_market1501
    return eval_market1501(*args, max_rank)


def _random_problem(seed: int, nq: int = 50, ng: int = 400, n_ids: int = 40, ties: bool = False):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, n_ids + 1, nq)
    g_pids = rng.integers(0, n_ids + 1, ng)  # pid 0: distractors
    q_cams = rng.integers(0, 6, nq)
    g_cams = rng.integers(0, 6, ng)
    # A query whose only same-pid gallery images share its camera (torchreid skips it), and one with none.
    q_pids[0], q_cams[0] = n_ids + 1, 2
    g_pids[:3], g_cams[:3] = n_ids + 1, 2
    q_pids[1] = n_ids + 2
    dist = rng.random((nq, ng))
    if ties:
        dist = np.round(dist * 8) / 8  # many equal distances
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_rank_parity_with_torchreid(seed: int, ties: bool) -> None:
    problem = _random_problem(seed, ties=ties)
    ref_cmc, ref_map = _torchreid_eval(*problem)
    for chunk in (7, 256):
        cmc, mAP = evaluate_rank(*problem, chunk=chunk)
        assert cmc.dtype == ref_cmc.dtype and np.array_equal(cmc, ref_cmc)
        assert mAP == ref_map
    res = rank_details(*problem)
    assert res.num_skipped >= 2 and np.isnan(res.ap[0]) and np.isnan(res.ap[1])
    assert res.num_valid + res.num_skipped == len(problem[1])


def test_rank_parity_float32_and_small_gallery() -> None:
    dist, qp, gp, qc, gc = _random_problem(11, nq=30, ng=40, n_ids=8)
    dist = dist.astype(np.float32)
    ref = _torchreid_eval(dist, qp, gp, qc, gc, max_rank=20)
    cmc, mAP = evaluate_rank(dist, qp, gp, qc, gc, max_rank=20)
    assert np.array_equal(cmc, ref[0]) and mAP == ref[1]


def test_rank_errors() -> None:
    dist, qp, gp, qc, gc = _random_problem(0, nq=5, ng=20)
    with pytest.raises(PosebenchError, match="g_pids"):
        evaluate_rank(dist, qp, gp[:-1], qc, gc)
    with pytest.raises(PosebenchError, match="no query"):
        evaluate_rank(dist, qp + 1000, gp, qc, gc)
