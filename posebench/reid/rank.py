"""Market-1501 CMC / mAP, vectorized, bit-identical to torchreid's python `eval_market1501` (docs/reid.md).

torchreid's rules, reproduced:

- each query row is ordered by `np.argsort(distmat[q])` (same call, same dtype, so ties break the same way);
- gallery items with the query's pid **and** camera are removed (same-view junk); pid -1 junk is dropped at load
  time, pid 0 distractors stay in the gallery and simply never match;
- queries with no remaining match are skipped (counted in `RankResult.num_skipped`);
- CMC = cumulative hit clipped at 1 over the kept ranking, averaged in float32 over the valid queries;
- AP = mean of precision@hit over the kept ranking; mAP = `np.mean` of the valid queries' APs.

Exactness: the per-query AP sum is evaluated on the compacted (kept-only) precision vector, the same array
torchreid sums, so numpy's pairwise summation gives the same bits. The heavy part (argsort, masks, cumulative
sums, CMC) runs on blocks of `chunk` queries.

One deliberate difference: when a valid query keeps fewer than `max_rank` gallery items, torchreid fails
(ragged CMC rows); here the CMC simply stays at 1 past the end of that query's ranking.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from posebench.errors import PosebenchError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankResult:
    cmc: np.ndarray  # (max_rank,) float32, as torchreid
    mAP: float
    num_valid: int  # queries with at least one valid gallery match
    num_skipped: int  # queries torchreid skips (no match left after same-pid-same-camera removal)
    ap: np.ndarray  # (Q,) float64 per-query AP, NaN for skipped queries


def _check(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
           g_camids: np.ndarray) -> tuple[np.ndarray, ...]:
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise PosebenchError(f"distmat must be 2-D (num_query, num_gallery), got shape {distmat.shape}")
    nq, ng = distmat.shape
    arrays = []
    for name, arr, n in (("q_pids", q_pids, nq), ("g_pids", g_pids, ng), ("q_camids", q_camids, nq),
                         ("g_camids", g_camids, ng)):
        a = np.asarray(arr)
        if a.shape != (n,):
            raise PosebenchError(f"{name} must have shape ({n},) to match distmat {distmat.shape}, got {a.shape}")
        arrays.append(a)
    return (distmat, *arrays)


def rank_details(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
                 g_camids: np.ndarray, max_rank: int = 50, *, chunk: int = 256) -> RankResult:
    """Full result of the Market-1501 evaluation (see `evaluate_rank`), with per-query AP and skip count."""
    distmat, q_pids, g_pids, q_camids, g_camids = _check(distmat, q_pids, g_pids, q_camids, g_camids)
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise PosebenchError(f"max_rank must be an integer >= 1, got {max_rank!r}")
    if chunk < 1:
        raise PosebenchError(f"chunk must be >= 1, got {chunk}")
    num_q, num_g = distmat.shape
    if num_g < max_rank:
        max_rank = num_g
        log.info("number of gallery samples is quite small, got %d", num_g)
    first_hit_counts = np.zeros(max_rank + 1, dtype=np.int64)  # bin max_rank: first hit beyond max_rank
    ap = np.full(num_q, np.nan, dtype=np.float64)
    for start in range(0, num_q, chunk):
        stop = min(start + chunk, num_q)
        # 1. Order each row exactly as torchreid does.
        order = np.argsort(distmat[start:stop], axis=1)
        qp = q_pids[start:stop, None]
        match = g_pids[order] == qp
        same_cam = g_camids[order] == q_camids[start:stop, None]
        # 2. Same pid and same camera are removed; valid hits are matches in other cameras.
        keep = ~(match & same_cam)
        valid = match & ~same_cam
        has = valid.any(axis=1)
        # 3. Kept rank (1-based) of every position, and hits so far.
        kept_rank = np.cumsum(keep, axis=1, dtype=np.int32)
        hits = np.cumsum(valid, axis=1, dtype=np.int32)
        rows = np.nonzero(has)[0]
        first = valid[rows].argmax(axis=1)
        r0 = kept_rank[rows, first] - 1  # 0-based rank of the first hit in the kept list
        first_hit_counts += np.bincount(np.minimum(r0, max_rank), minlength=max_rank + 1)
        n_kept = kept_rank[:, -1]
        # 4. AP on the compacted precision vector (the array torchreid sums), for bit-identical results.
        for i in rows:
            pos = np.nonzero(valid[i])[0]
            ranks = kept_rank[i, pos]
            vec = np.zeros(int(n_kept[i]), dtype=np.float64)
            vec[ranks - 1] = hits[i, pos] / ranks
            ap[start + i] = vec.sum() / len(pos)
    num_valid = int(first_hit_counts.sum())
    if num_valid == 0:
        raise PosebenchError("no query has a valid gallery match (all query identities are missing from the "
                             "gallery or only appear in the query's own camera)")
    cmc = np.cumsum(first_hit_counts[:max_rank]).astype(np.float32) / float(num_valid)
    valid_ap = ap[~np.isnan(ap)]
    return RankResult(cmc, float(np.mean(valid_ap)), num_valid, num_q - num_valid, ap)


def evaluate_rank(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
                  g_camids: np.ndarray, max_rank: int = 50, *, chunk: int = 256) -> tuple[np.ndarray, float]:
    """Market-1501 CMC and mAP, identical to torchreid's `eval_market1501` (python path).

    Args:
        distmat: (Q, G) distances, smaller is closer.
        q_pids, g_pids: (Q,), (G,) person ids (gallery may contain distractors, pid 0).
        q_camids, g_camids: (Q,), (G,) camera ids in one camera space.
        max_rank: CMC length; reduced to G when the gallery is smaller (as torchreid).
        chunk: queries processed per block (memory ~ chunk * G * 30 bytes).

    Returns:
        (cmc of shape (max_rank,) float32, mAP float).

    Raises:
        PosebenchError: shape mismatches, or no query has a valid match.
    """
    res = rank_details(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, chunk=chunk)
    return res.cmc, res.mAP
