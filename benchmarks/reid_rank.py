"""Market-1501 ranking speed: posebench's vectorized `evaluate_rank` vs torchreid's python `eval_market1501`.

Full Market size (3,368 queries x 15,913 gallery), random float32 distances, 751 ids over 6 cameras, pid 0
distractors in the gallery. Each evaluator runs once (torchreid's python path takes minutes); the results must
be identical (CMC bit-equal, mAP equal). Target: ratio >= 10x.

    .venv/bin/python benchmarks/reid_rank.py [--queries 3368] [--gallery 15913] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from posebench.reid.rank import rank_details


def _problem(nq: int, ng: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    n_ids, n_distractors = 751, min(2793, ng // 6)
    q_pids = rng.integers(1, n_ids + 1, nq)
    q_cams = rng.integers(0, 6, nq)
    g_pids = np.concatenate([rng.integers(1, n_ids + 1, ng - n_distractors), np.zeros(n_distractors, np.int64)])
    g_cams = rng.integers(0, 6, ng)
    # Make the matrix look like a trained model's: same-pid pairs are closer on average (mAP well above chance).
    dist = rng.normal(1.0, 0.15, (nq, ng)).astype(np.float32)
    same = q_pids[:, None] == g_pids[None, :]
    dist[same] -= np.float32(0.4)
    return dist, q_pids, g_pids, q_cams, g_cams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=3368)
    ap.add_argument("--gallery", type=int, default=15913)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    problem = _problem(args.queries, args.gallery, args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchreid.reid.metrics.rank import evaluate_rank as tr_evaluate_rank

    t0 = time.perf_counter()
    res = rank_details(*problem)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_cmc, ref_map = tr_evaluate_rank(*problem, max_rank=50, use_metric_cuhk03=False, use_cython=False)
    t_ref = time.perf_counter() - t0

    assert np.array_equal(res.cmc, ref_cmc), np.abs(res.cmc - ref_cmc).max()
    assert res.mAP == ref_map, (res.mAP, ref_map)
    print(f"size {args.queries} x {args.gallery}: valid queries {res.num_valid}, skipped {res.num_skipped}")
    print(f"mAP {res.mAP:.6f}  rank-1 {res.cmc[0]:.6f}  (identical to torchreid)")
    print(f"torchreid python eval_market1501: {t_ref:8.2f} s")
    print(f"posebench evaluate_rank:          {t_ours:8.2f} s")
    print(f"speed-up: {t_ref / t_ours:.1f}x")


if __name__ == "__main__":
    main()
