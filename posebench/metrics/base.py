"""The shared part of posebench's metric classes (`torchmetrics.Metric`s that apply a profile themselves).

`ProfileMetric` resolves a profile (a name, a YAML path or a `Profile`) and the protocol resolution that
`size: protocol` steps mean, and gives each metric its prediction and ground-truth chains. `PerImageMetric` keeps
one value per image with its position (states `values` and `index`, both concatenated across processes), so the
mean, the drop-last selection and the per-image CSV follow the global image order whatever the sharding.

Every number posebench writes comes from one of these classes: `posebench eval`, `posebench.evaluate()` and a
training loop (`SSIM(profile="pidm").update(preds, target)`) run the same code.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from posebench.metrics.inputs import ImagePairs, ResolvedChain
from posebench.protocols import Profile, get_profile, get_protocol


def resolve_chain(steps: Any, resolution: tuple[int, int] | None) -> ResolvedChain:
    """Profile steps at a protocol resolution; protocol-size steps are dropped when there is none."""
    return tuple(r for r in (s.resolve(resolution) for s in steps) if r is not None)


def kept_by_drop_last(n: int, section: Any) -> int:
    """How many of `n` images a metric keeps under its profile section: all without drop-last; with drop-last,
    the whole batches of min(batch_size, n) images. The reference scripts (GFLA, PIDM, PCDMs) shrink a batch
    larger than the data to the data size ("batch size is bigger than the data size"), then drop the remainder."""
    if not getattr(section, "drop_last", False) or n == 0:
        return n
    bs = min(int(section.batch_size), n)
    return (n // bs) * bs


class ProfileMetric(Metric):
    """A metric configured by one section of a metric profile.

    Args:
        profile: profile name (`clean`, `pidm`, ...), a profile YAML path, or a `Profile`.
        protocol: protocol name whose resolution `size: protocol` steps mean (overrides `resolution`).
        resolution: (H, W) for `size: protocol` steps; None scores ground truths at their own size.
        kwargs: `torchmetrics.Metric` options (`sync_on_compute`, `dist_sync_fn`, ...).
    """

    section_name = ""  # the profile section that configures this metric
    full_state_update = False

    def __init__(self, profile: str | Profile = "clean", *, protocol: str | None = None,
                 resolution: tuple[int, int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.profile = profile if isinstance(profile, Profile) else get_profile(profile)
        self.resolution = get_protocol(protocol).resolution if protocol else resolution
        self.section = self.profile.section(self.section_name)
        self.pred_chain = resolve_chain(self.profile.prediction_chain_for(self.section_name), self.resolution)
        self.gt_chain = resolve_chain(self.profile.chain(self.section_name), self.resolution)

    def _prepared(self, pairs: ImagePairs) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) float64 generated and ground-truth images on the 0..255 scale, through the chains, on the
        metric's device (`.to("cuda")` moves the float64 SSIM / PSNR arithmetic to the GPU)."""
        p = pairs.preds_at(self.pred_chain, resize=self.profile.resize_predictions, profile=self.profile.name)
        g = pairs.targets_at(self.gt_chain)
        if p.shape != g.shape:
            raise ValueError(f"prepared images differ in size: generated {p.shape[1:3]}, ground truth {g.shape[1:3]}")
        return tuple(torch.from_numpy(x).to(self.device).permute(0, 3, 1, 2).double() for x in (p, g))


class PerImageMetric(ProfileMetric):
    """A metric that is the mean of per-image values (SSIM, PSNR, LPIPS), with the profile's drop-last.

    `update(preds, target, index=...)`: `preds` is an `ImagePairs` (target None) or tensors/arrays (see
    `ImagePairs.of`); `index` gives each image's position in the global order (default: the order of updates
    on this process).
    """

    higher_is_better: bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_state("values", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")
        self.add_state("seen", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def score(self, pairs: ImagePairs) -> torch.Tensor:
        """(B,) float64 values of one batch."""
        raise NotImplementedError

    def update(self, preds: Any, target: Any = None, *, index: Any = None) -> None:
        pairs = ImagePairs.of(preds, target)
        vals = self.score(pairs).detach().to("cpu", torch.float64).reshape(-1)
        n = vals.shape[0]
        idx = (torch.arange(n, dtype=torch.long) + int(self.seen)) if index is None else \
            torch.as_tensor(index, dtype=torch.long).reshape(-1)
        if idx.shape[0] != n:
            raise ValueError(f"index has {idx.shape[0]} positions for {n} images")
        self.values.append(vals.to(self.device))
        self.index.append(idx.to(self.device))
        self.seen += n

    def per_image(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, values) of every image seen (this process's, or all after a sync), in position order."""
        if isinstance(self.values, list) and not self.values:  # nothing seen (a synced state is a tensor)
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        idx = dim_zero_cat(self.index).cpu().numpy()
        vals = dim_zero_cat(self.values).cpu().numpy()
        order = np.argsort(idx, kind="stable")
        return idx[order], vals[order]

    def kept(self, n: int) -> int:
        return kept_by_drop_last(n, self.section)

    def compute(self) -> torch.Tensor:
        _, vals = self.per_image()
        used = vals[: self.kept(len(vals))]
        if len(used) == 0:
            return torch.tensor(math.nan, dtype=torch.float64)
        return torch.tensor(float(np.mean(used)), dtype=torch.float64)

    def summary(self) -> dict[str, Any]:
        """{value, stderr, n, details: {dropped}} of the images seen, in position order (no sync: the caller
        syncs first in a distributed run)."""
        _, vals = self.per_image()
        n_used = self.kept(len(vals))
        used = vals[:n_used]
        finite = used[np.isfinite(used)]
        if n_used == 0:
            value, se = math.nan, None
        elif len(finite) < n_used:  # PSNR of identical images is +inf: the mean is inf too, reported as such
            value, se = float(np.mean(used)), None
        else:
            value = float(np.mean(used))
            se = float(np.std(used, ddof=1) / math.sqrt(n_used)) if n_used > 1 else None
        return {"value": value, "stderr": se, "n": int(n_used), "details": {"dropped": len(vals) - n_used}}
