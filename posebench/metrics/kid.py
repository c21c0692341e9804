"""KID as a profile computes it: the `fid` section's features and drop-last, the `kid` section's subsets."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from posebench.metrics.fid import FeatureMetric


class KID(FeatureMetric):
    """Kernel Inception Distance (clean-fid's subset estimator): the value is the mean over the `kid` section's
    random subsets, `stderr` their standard deviation (population, as clean-fid and torchmetrics report it)."""

    section_name = "kid"

    def compute(self) -> torch.Tensor:
        return torch.tensor(self.summary()["value"], dtype=torch.float64)

    def summary(self, positions: Any = None) -> dict[str, Any]:
        """The results entry; `positions`: only those generated images (a breakdown group)."""
        from posebench.metrics.functional.kid import kid

        feats, n_keep = self._kept(positions)
        real = self.real.features()
        spec = self.section
        mean, std = kid(feats[:n_keep], real, num_subsets=spec.subsets, max_subset_size=spec.subset_size,
                        rng=np.random.RandomState(spec.seed))
        details = {"real_n": int(self.real.n), "std": std, "dropped": len(feats) - n_keep,
                   **{k: v for k, v in self.real_meta.items() if k == "real_set"}}
        return {"value": mean, "stderr": std, "n": n_keep, "details": details}
