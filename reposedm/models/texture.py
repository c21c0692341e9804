"""Encoders of the conditions: the B1 texture encoder (PIDM-like) and the target-pose encoder."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class TextureEncoder(nn.Module):
    """B1: a CNN over the source (in model space) whose feature map becomes cross-attention tokens.

    This is the PIDM-like baseline's texture path: no alignment to the target pose, the U-Net's
    cross-attention alone has to find where each texture goes.
    """

    def __init__(self, in_channels: int, dim: int, downsample: int = 1) -> None:
        super().__init__()
        if downsample not in (1, 2, 4, 8):
            raise ValueError(f"downsample must be 1, 2, 4 or 8, got {downsample}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, dim, 3, padding=1), _norm(dim), nn.SiLU()]
        for _ in range(int(math.log2(downsample))):
            layers += [nn.Conv2d(dim, dim, 3, stride=2, padding=1), _norm(dim), nn.SiLU()]
        layers += [nn.Conv2d(dim, dim, 3, padding=1), _norm(dim), nn.SiLU(), nn.Conv2d(dim, dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) source -> (B, dim, H / downsample, W / downsample) features."""
        return self.net(source)


class PoseEncoder(nn.Module):
    """Target pose map (rendered at image resolution) -> the channels concatenated with the noisy latent.

    `factor` is the autoencoder's downsampling (8 for the SD VAE, 1 in pixel space): stride-2 convs bring
    the pose map to the latent grid.
    """

    def __init__(self, pose_channels: int, out_channels: int, factor: int = 1, hidden: int = 32) -> None:
        super().__init__()
        if factor not in (1, 2, 4, 8):
            raise ValueError(f"factor must be 1, 2, 4 or 8, got {factor}")
        layers: list[nn.Module] = [nn.Conv2d(pose_channels, hidden, 3, padding=1), nn.SiLU()]
        for _ in range(int(math.log2(factor))):
            layers += [nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.SiLU()]
        layers += [nn.Conv2d(hidden, out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, pose_map: torch.Tensor) -> torch.Tensor:
        return self.net(pose_map)
