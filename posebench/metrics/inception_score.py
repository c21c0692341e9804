"""Inception Score (IS) as the PATN / Def-GAN / GFLA tables print it: softmax class probabilities of an ImageNet
Inception-v3 on the generated images, 10 splits in image order, exp(E_x KL(p(y|x) || p(y))) per split, reported as
the mean over splits with their standard deviation (`get_inception_score` of PATN `tool/inception_score.py`).

Deviation, stated: those papers ran TensorFlow's 2015 Inception graph (1008 classes, its own resize). posebench
uses torchvision's ImageNet Inception-v3 (`inception-tv-imagenet`, 1000 classes): images / 255, stretched to 299x299
(bilinear, align_corners=False), 2x - 1 (torchvision's ImageNet normalisation followed by its `transform_input`
on these weights is exactly 2x - 1), the trunk, then the classifier `fc`. Its IS is not comparable with the printed
ones, only with itself. `masked=True` is PATN's mask-IS (Market): the generated image times the target-pose mask.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.utilities import dim_zero_cat

from posebench.metrics.base import ProfileMetric
from posebench.metrics.inputs import ImagePairs


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Mean and std over `splits` consecutive parts of exp(mean_x sum_y p(y|x) (log p(y|x) - log p(y))).

    Notation: probs (N, C) = p(y|x) per image; p(y) = the part's mean of p(y|x). As PATN's `get_inception_score`
    (parts `[i * N // splits, (i + 1) * N // splits)`; 0 log 0 counts as 0, where PATN's float32 would give NaN).
    """
    from posebench.errors import PosebenchError

    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) < splits:
        raise PosebenchError(f"the Inception Score needs at least {splits} generated images (one per split), got "
                             f"{len(p)}")
    scores = []
    for i in range(splits):
        part = p[i * len(p) // splits:(i + 1) * len(p) // splits]
        py = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(py)), 0.0)
        scores.append(float(np.exp(kl.sum(axis=1).mean())))
    return float(np.mean(scores)), float(np.std(scores))


class _Classifier(nn.Module):
    """torchvision Inception-v3: trunk to the 2048-d pool, then `fc` (eval mode: no dropout)."""

    def __init__(self, trunk: nn.Module, fc: nn.Linear) -> None:
        super().__init__()
        self.trunk, self.fc = trunk, fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x / 255.0, size=(299, 299), mode="bilinear", align_corners=False)
        return self.fc(self.trunk(2 * x - 1))


def build_classifier(weights: str | os.PathLike[str] | None, device: str = "cpu") -> tuple[nn.Module, Any]:
    """The classifier and its resolved weights file (`inception-tv-imagenet` by default)."""
    from posebench import weights as _weights
    from posebench.errors import WeightsError
    from posebench.metrics import features

    resolved = features.resolve_weights(weights, default="inception-tv-imagenet",
                                        accepted=("inception-tv-imagenet", "inception-tv-imagenet-2019"),
                                        role="the Inception Score")
    trunk = features.trunk_from_file(features.tv_inception_v3_skeleton, resolved.path)
    state = _weights.load_state_dict(resolved.path)
    if "fc.weight" not in state:
        raise WeightsError(f"{resolved.path} has no classifier (fc.weight): the Inception Score needs the ImageNet "
                           "logits of the full torchvision checkpoint")
    fc = nn.Linear(state["fc.weight"].shape[1], state["fc.weight"].shape[0])
    fc.load_state_dict({"weight": state["fc.weight"].float(), "bias": state["fc.bias"].float()})
    return _Classifier(trunk, fc).eval().requires_grad_(False).to(device), resolved


class IS(ProfileMetric):
    """Inception Score of the generated images (no ground truth): value = mean over splits, stderr = their std.

    Args:
        profile, protocol, resolution: see `ProfileMetric` (section `is`: weights, splits, batch_size).
        weights: the Inception file instead of the section's.
        device: where the network runs.
        masked: PATN's mask-IS (needs `ImagePairs.keypoints`).
    """

    section_name = "is"
    higher_is_better = True

    def __init__(self, profile: Any = "clean", *, weights: str | os.PathLike[str] | None = None, device: str = "cpu",
                 masked: bool = False, classifier: Any = None, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        if classifier is None:
            classifier, resolved = build_classifier(weights or self.section.weights, device)
            self.weights_sha256 = resolved.sha256
            self.weights_registry_name = resolved.registry_name
        self.classifier = classifier
        self.masked = masked
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")
        self.add_state("seen", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Any, target: Any = None, *, index: Any = None) -> None:
        pairs = ImagePairs.of(preds, target)
        p = pairs.preds_at(self.pred_chain, resize=self.profile.resize_predictions, profile=self.profile.name)
        x = torch.from_numpy(p).permute(0, 3, 1, 2).float()
        if self.masked:
            x = x * torch.from_numpy(pairs.masks_at(tuple(x.shape[-2:])))[:, None].float()
        dev = next(self.classifier.parameters()).device
        with torch.inference_mode():
            probs = torch.softmax(self.classifier(x.to(dev)).double(), dim=1).cpu()
        n = probs.shape[0]
        idx = (torch.arange(n) + int(self.seen)) if index is None else torch.as_tensor(index).reshape(-1)
        self.probs.append(probs.to(self.device))
        self.index.append(idx.long().to(self.device))
        self.seen += n

    def _ordered(self) -> np.ndarray:
        if isinstance(self.probs, list) and not self.probs:
            return np.zeros((0, 1))
        idx = dim_zero_cat(self.index).cpu().numpy()
        return dim_zero_cat(self.probs).cpu().numpy()[np.argsort(idx, kind="stable")]

    def compute(self) -> torch.Tensor:
        return torch.tensor(self.summary()["value"], dtype=torch.float64)

    def summary(self) -> dict[str, Any]:
        probs = self._ordered()
        mean, std = inception_score(probs, self.section.splits)
        return {"value": mean, "stderr": std, "n": len(probs),
                "details": {"splits": self.section.splits, "std": std, "masked": self.masked}}
