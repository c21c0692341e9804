"""KID as a profile computes it: the `fid` section's features and drop-last, the `kid` section's subsets."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from posebench.metrics.fid import FeatureMetric


class KID(FeatureMetric):
    """Kernel Inception Distance (clean-fid's subset estimator): the value is the mean over the `kid` section's
    random subsets; `details.subset_std` is their standard deviation (population, what clean-fid and torchmetrics
    print as "KID ± std"), which is not a standard error: `stderr` is left empty. `details.note` says when there
    were fewer images than the subset size."""

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
        subset = min(n_keep, int(self.real.n), spec.subset_size)
        # the spread over subsets is not a standard error (subsets overlap): it goes under its own name, and
        # `stderr` stays empty rather than claim a precision KID's estimator does not give
        details = {"real_n": int(self.real.n), "subset_std": std, "subsets": spec.subsets, "subset_size": subset,
                   "dropped": len(feats) - n_keep, **{k: v for k, v in self.real_meta.items() if k == "real_set"}}
        if subset < spec.subset_size:
            details["note"] = (f"subsets of {subset} images, fewer than the profile's {spec.subset_size} (only "
                               f"{n_keep} generated / {int(self.real.n)} real images): KID is noisier and not "
                               "comparable with values from full-size subsets")
        return {"value": mean, "stderr": None, "n": n_keep, "details": details}
