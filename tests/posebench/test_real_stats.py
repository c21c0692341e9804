"""Real-set statistics: cache keys, rejection of foreign caches, resume after a kill."""

from __future__ import annotations

import numpy as np
import pytest

from posebench import real_stats


def _featurize_factory(calls):
    def featurize(batch):
        calls.append(len(batch))
        return np.stack([np.arange(4, dtype=np.float64) + i for i in (hash(str(p)) % 97 for p in batch)])
    return featurize


def test_cache_hit_and_key_mismatch(tmp_path):
    paths = [tmp_path / f"{i}.png" for i in range(10)]
    calls: list[int] = []
    f = _featurize_factory(calls)
    a, meta = real_stats.real_set_stats("t", {"k": 1}, paths, f, batch_size=4, drop_last=False, keep_features=True)
    assert meta == {"n": 10, "dropped": 0, "cache_file": meta["cache_file"], "from_cache": False}
    assert sum(calls) == 10
    b, meta2 = real_stats.real_set_stats("t", {"k": 1}, paths, f, batch_size=4, drop_last=False, keep_features=True)
    assert meta2["from_cache"] is True and sum(calls) == 10  # nothing recomputed
    np.testing.assert_array_equal(a.mean(), b.mean())
    _, meta3 = real_stats.real_set_stats("t", {"k": 2}, paths, f, batch_size=4, drop_last=False, keep_features=True)
    assert meta3["from_cache"] is False and sum(calls) == 20  # another key: another file, recomputed


def test_drop_last_counts(tmp_path):
    paths = [tmp_path / f"{i}.png" for i in range(10)]
    _, meta = real_stats.real_set_stats("d", {"k": 1}, paths, _featurize_factory([]), batch_size=4, drop_last=True,
                                        keep_features=False)
    assert meta["n"] == 8 and meta["dropped"] == 2
    with pytest.raises(Exception, match="fewer than one batch"):
        real_stats.real_set_stats("e", {"k": 1}, paths[:3], _featurize_factory([]), batch_size=4, drop_last=True,
                                  keep_features=False)


def test_resume_after_kill(tmp_path, monkeypatch):
    monkeypatch.setattr(real_stats, "CHECKPOINT_EVERY", 4)
    paths = [tmp_path / f"{i}.png" for i in range(20)]
    calls: list[int] = []
    inner = _featurize_factory(calls)

    def dies_after_12(batch):
        if sum(calls) >= 12:
            raise KeyboardInterrupt  # the job is killed
        return inner(batch)

    with pytest.raises(KeyboardInterrupt):
        real_stats.real_set_stats("r", {"k": 1}, paths, dies_after_12, batch_size=4, drop_last=False,
                                  keep_features=True)
    done_before = sum(calls)
    full, _ = real_stats.real_set_stats("r2", {"k": 9}, paths, _featurize_factory([]), batch_size=4,
                                        drop_last=False, keep_features=True)
    resumed, meta = real_stats.real_set_stats("r", {"k": 1}, paths, inner, batch_size=4, drop_last=False,
                                              keep_features=True)
    assert sum(calls) - done_before < 20  # resumed from the checkpoint, not from the start
    assert meta["n"] == 20
    np.testing.assert_allclose(resumed.mean(), full.mean(), rtol=1e-12)
    np.testing.assert_allclose(resumed.cov(), full.cov(), rtol=1e-12)
    assert not list(real_stats.stats_dir().glob("*.partial.npz"))
