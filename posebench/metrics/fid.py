"""FID as a profile computes it: the `fid` section's feature extractor and weights, its chains, its drop-last.

Generated images stream through `update` (their Inception features are kept, so drop-last keeps the first images
in position order, and the drop-last range can be computed). The real set either streams through
`update(images, real=True)` (its running float64 statistics) or is set from cached statistics with `set_real`
(what `posebench eval` does: `posebench.real_stats`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics.utilities import dim_zero_cat

from posebench.errors import PosebenchError
from posebench.images import apply_chain, read_rgb
from posebench.metrics.base import ProfileMetric, kept_by_drop_last, resolve_chain
from posebench.metrics.inputs import ImagePairs
from posebench.metrics.stats import FeatureStats

DROP_LAST_TRIALS = 20  # random choices of the dropped generated images behind `drop_last_range`


class FeatureMetric(ProfileMetric):
    """Inception features of generated images (kept, with positions) and of a real set, from the profile's
    `fid` section. Shared by FID and KID: pass one's `extractor` to the other and they share the forward
    passes of a batch (`ImagePairs.memo`)."""

    section_name = "fid"
    higher_is_better = False

    def __init__(self, profile: Any = "clean", *, weights: str | os.PathLike[str] | None = None, device: str = "cpu",
                 extractor: Any = None, features_of: FeatureMetric | None = None, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        self.features_of = features_of  # another metric that keeps the generated features (one copy for all)
        self.fid_section = self.profile.section("fid")
        self.pred_chain = resolve_chain(self.profile.prediction_chain_for("fid"), self.resolution)
        self.gt_chain = resolve_chain(self.profile.chain("fid"), self.resolution)
        if extractor is None and features_of is not None:
            extractor = features_of.extractor
        if extractor is None:
            from posebench.metrics.features import build_extractor

            extractor = build_extractor(self.fid_section.extractor, weights=weights or self.fid_section.weights,
                                        device=device)
        self.extractor = extractor
        self.add_state("feats", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")
        self.add_state("seen", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.real: FeatureStats | None = None
        self.real_meta: dict[str, Any] = {}

    def featurize(self, images: np.ndarray | Sequence[np.ndarray], labels: Sequence[str] | None = None) -> np.ndarray:
        """(B, D) float64 features of prepared (B, H, W, 3) images (uint8, or float32 from a float chain);
        `labels` name the images in the error a NaN/Inf feature raises."""
        arrays = np.stack(list(images))
        x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float()
        floats = arrays.dtype != np.uint8  # a float chain may overshoot [0, 255] on purpose (PCDMs)
        with torch.inference_mode():
            feats = self.extractor(x.to(self.extractor.device), check_range=not floats).double().cpu().numpy()
        bad = ~np.isfinite(feats).all(axis=1)
        if bad.any():
            first = int(np.argmax(bad))
            name = labels[first] if labels is not None else f"image {first} of its batch"
            raise PosebenchError(f"{name}: its Inception features are NaN/Inf ({int(bad.sum())} images of this batch "
                                 "are); check that image and the extractor's weights (e.g. fp16 overflow)")
        return feats

    def featurize_files(self, paths: Sequence[Path]) -> np.ndarray:
        """Features of real-set files through the ground-truth chain (every step applied, as to the ground truth)."""
        return self.featurize([apply_chain(read_rgb(p), list(self.gt_chain)) for p in paths], [str(p) for p in paths])

    def pred_features(self, pairs: ImagePairs, *, resize: bool | None = None) -> np.ndarray:
        """Features of the generated images through the prediction chain; `resize` overrides the profile's
        `resize_predictions` (Human-Art resizes every generated image for FID, whatever its size)."""
        resize = self.profile.resize_predictions if resize is None else resize
        key = ("features", id(self.extractor), self.pred_chain, resize)
        return pairs.memo(key, lambda: self.featurize(pairs.preds_at(self.pred_chain, resize=resize,
                                                                     profile=self.profile.name), pairs.labels))

    def update(self, preds: Any, target: Any = None, *, real: bool = False, index: Any = None) -> None:
        """Add generated images (or, with `real=True`, real-set images, prepared by the ground-truth chain)."""
        pairs = ImagePairs.of(preds, target)
        if real:
            feats = self.featurize([apply_chain(img, list(self.gt_chain)) for img in pairs.preds])
            if self.real is None:
                self.real = FeatureStats(keep_features=True)
            self.real.update(feats)
            return
        if self.features_of is not None:
            return  # the owner keeps them
        self.update_features(self.pred_features(pairs), index=index)

    def update_features(self, feats: np.ndarray, *, index: Any = None) -> None:
        """Add generated images' features computed elsewhere (`pred_features` of an `ImagePairs`)."""
        feats = torch.from_numpy(np.asarray(feats, dtype=np.float64))
        n = feats.shape[0]
        idx = (torch.arange(n, dtype=torch.long) + int(self.seen)) if index is None else \
            torch.as_tensor(index, dtype=torch.long).reshape(-1)
        self.feats.append(feats.to(self.device))
        self.index.append(idx.to(self.device))
        self.seen += n

    def set_real(self, stats: FeatureStats, meta: dict[str, Any] | None = None) -> None:
        """Real-set statistics computed elsewhere (e.g. `posebench.real_stats.real_set_stats`, cached)."""
        self.real = stats
        self.real_meta = dict(meta or {})

    def generated(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, (N, D) features), in position order."""
        if self.features_of is not None:
            return self.features_of.generated()
        if isinstance(self.feats, list) and not self.feats:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.extractor.dims))
        idx = dim_zero_cat(self.index).cpu().numpy()
        feats = dim_zero_cat(self.feats).cpu().numpy()
        order = np.argsort(idx, kind="stable")
        return idx[order], feats[order]

    def generated_features(self, positions: Any = None) -> np.ndarray:
        """(N, D) features in position order; only the images at `positions` when given (a breakdown group)."""
        idx, feats = self.generated()
        return feats if positions is None else feats[np.isin(idx, np.asarray(positions))]

    def _kept(self, positions: Any = None) -> tuple[np.ndarray, int]:
        feats = self.generated_features(positions)
        n_keep = kept_by_drop_last(len(feats), self.fid_section)
        if n_keep < 2:
            raise PosebenchError(f"{self.section_name.upper()} needs at least 2 generated images after drop-last; "
                                 f"got {n_keep}")
        if self.real is None or self.real.n < 2:
            raise PosebenchError(f"{self.section_name.upper()} needs a real set of at least 2 images: stream it with "
                                 "update(images, real=True) or give its statistics with set_real()")
        return feats, n_keep


class FID(FeatureMetric):
    """Fréchet Inception Distance of the generated images against the real set, as the profile computes it.

    Example:
        >>> fid = FID(profile="clean", protocol="deepfashion-256x176")
        >>> fid.update(real_images, real=True)   # (B, 3, H, W) in [0, 1], or uint8
        >>> fid.update(generated)
        >>> fid.compute()
    """

    def __init__(self, *args: Any, drop_last_range: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drop_last_range = drop_last_range

    def compute(self) -> torch.Tensor:
        return torch.tensor(self.summary()["value"], dtype=torch.float64)

    def summary(self, positions: Any = None) -> dict[str, Any]:
        """The results entry; `positions`: only those generated images (a breakdown group)."""
        from posebench.metrics.functional.frechet import frechet_distance

        feats, n_keep = self._kept(positions)
        gen = FeatureStats()
        gen.update(feats[:n_keep])
        value = frechet_distance(gen.mean(), gen.cov(), self.real.mean(), self.real.cov())
        details: dict[str, Any] = {"real_n": int(self.real.n), "dropped": len(feats) - n_keep,
                                   **{k: v for k, v in self.real_meta.items() if k in ("real_set", "real_dropped")}}
        if n_keep < len(feats) and self.drop_last_range:
            details["drop_last_range"] = drop_last_fid_range(feats, n_keep, self.real)
        return {"value": value, "stderr": None, "n": n_keep, "details": details}


def drop_last_fid_range(feats: np.ndarray, n_keep: int, real: FeatureStats, *, trials: int = DROP_LAST_TRIALS,
                        seed: int = 0) -> dict[str, Any]:
    """FID over `trials` seeded random choices of which generated images a drop-last batching keeps.

    GFLA, PIDM and PCDMs list the generated folder in directory order (`glob`, unsorted) and drop the last
    images, so which ones they drop, and their FID, depends on the file system; posebench keeps the first in
    sorted order. This range shows how far that choice alone moves the number (the real set stays as scored).
    """
    from posebench.metrics.functional.frechet import frechet_distances_of_subsets

    rng = np.random.default_rng(seed)
    subsets = [np.sort(rng.choice(len(feats), n_keep, replace=False)) for _ in range(trials)]
    values = frechet_distances_of_subsets(feats, subsets, real.mean(), real.cov())
    return {"min": min(values), "max": max(values), "trials": trials, "seed": seed, "kept": n_keep,
            "of": len(feats), "what": "FID with the kept generated images chosen at random (directory order)"}
