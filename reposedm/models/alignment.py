"""Recurrent Pose Alignment (RPA) of RePoseDM (arXiv 2310.16074).

The source image is warped towards the target pose by a flow that is refined over N iterations; the features
of the final warped source are what the denoising U-Net cross-attends to.

Paper symbol -> name in this module:
    I_S                   -> ``source``            (B, Cs, H, W)
    P                     -> ``target_pose``       (B, Cp, H, W)
    F_S, F_S'             -> ``source_feats``      (B, dim, h, w), h = H / downsample
    F_T, F_T'             -> ``pose_feats``        (B, dim, h, w)
    Encoder               -> ``ConvEncoder`` (``RecurrentPoseAlignment.source_encoder``)
    MapFormer             -> ``MapFormer``
    pose aggregator       -> ``PoseAggregator``
    C(x, r)               -> ``local_correlation``
    R                     -> ``radius``
    ΔF^n                  -> ``delta_flow``        (B, 2, H, W), pixels, channel 0 = dx, channel 1 = dy
    F^n                   -> ``flow``              (B, 2, H, W), pixels
    W(I_S; F^n)           -> ``warp(source, flow)``
    F^{n+1} = F^n ∘ ΔF^{n+1} -> ``compose_flows(flow, delta_flow)``
    N                     -> ``num_iterations``

Recurrence (F^0 = 0):
    F_S^n       = Encoder(W(I_S; F^n))
    F_S', F_T'  = MapFormer(F_S^n, F_T)
    ΔF^{n+1}    = PoseAggregator(C(F_T', F_S'))
    F^{n+1}     = F^n ∘ ΔF^{n+1}
and the output features are F_S^N = Encoder(W(I_S; F^N)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AlignmentOutput",
    "ConvEncoder",
    "MapFormer",
    "PoseAggregator",
    "RecurrentPoseAlignment",
    "compose_flows",
    "local_correlation",
    "warp",
]

REGION_TYPES: tuple[str, ...] = ("global", "non-local", "local")


# ----------------------------------------------------------------------------------------------------------------
# Flow utilities
# ----------------------------------------------------------------------------------------------------------------


def _normalize(coord: Tensor, size: int) -> Tensor:
    """Pixel coordinate -> grid_sample's [-1, 1] coordinate for align_corners=True (0 when the axis has one pixel)."""
    if size == 1:
        return torch.zeros_like(coord)
    return 2.0 * coord / (size - 1) - 1.0


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Backward-warp ``image`` by a pixel flow: ``out(x) = image(x + flow(x))`` (W(I_S; F) in the paper).

    Bilinear ``F.grid_sample`` with ``padding_mode="border"`` and ``align_corners=True``; the normalized grid is
    ``2 * (x + dx) / (W - 1) - 1`` (and likewise for y). Differentiable with respect to ``image`` and ``flow``.

    The sampling grid is built, and the sampling done, in float64 for lower-precision inputs (the result is cast
    back): a float32 grid carries a rounding error of about ``W * 6e-8`` pixels, which on images of a few hundred
    pixels is visible as a ~1e-5 deviation from the identity at zero flow. In float64 a zero flow returns the
    image to float32 rounding.

    Args:
        image: (B, C, H, W) image or feature map.
        flow: (B, 2, H, W) displacement in pixels; channel 0 is dx (columns), channel 1 is dy (rows).

    Returns:
        (B, C, H, W) warped image, same dtype as ``image``.

    Raises:
        ValueError: if the tensors are not 4-D, ``flow`` does not have 2 channels, or the batch or spatial sizes
            of ``flow`` and ``image`` differ.
    """
    if image.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"warp expects image (B, C, H, W) and flow (B, 2, H, W); got image {tuple(image.shape)} "
            f"and flow {tuple(flow.shape)}"
        )
    if flow.shape[0] != image.shape[0] or flow.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"warp needs flow with the batch and spatial size of the image; got image {tuple(image.shape)} "
            f"and flow {tuple(flow.shape)}"
        )
    _, _, height, width = image.shape
    work_dtype = torch.float64 if image.is_floating_point() else image.dtype
    flow = flow.to(work_dtype)
    xs = torch.arange(width, dtype=work_dtype, device=flow.device).view(1, 1, width)
    ys = torch.arange(height, dtype=work_dtype, device=flow.device).view(1, height, 1)
    grid = torch.stack((_normalize(xs + flow[:, 0], width), _normalize(ys + flow[:, 1], height)), dim=-1)
    out = F.grid_sample(image.to(work_dtype), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(image.dtype)


def upsample_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """A flow on a coarse grid (latent pixels) as a flow on the image grid (image pixels): bilinear, scaled."""
    h, w = flow.shape[-2:]
    up = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    return torch.cat([up[:, :1] * (size[1] / w), up[:, 1:] * (size[0] / h)], dim=1)


def compose_flows(flow: Tensor, delta_flow: Tensor) -> Tensor:
    """Compose the accumulated flow with a new increment: F^{n+1} = F^n ∘ ΔF^{n+1}.

    Defined so that warping by the composition equals warping twice,
    ``warp(warp(src, flow), delta_flow) ≈ warp(src, compose_flows(flow, delta_flow))``:
    the twice-warped image at x is ``src(y + F^n(y))`` with ``y = x + ΔF(x)``, hence

        F^{n+1}(x) = ΔF(x) + F^n(x + ΔF(x)) = delta_flow + warp(flow, delta_flow).

    The identity is exact up to the bilinear resampling of ``flow`` (exact for constant flows, away from the
    border where the clamping of ``padding_mode="border"`` differs).

    Args:
        flow: (B, 2, H, W) accumulated flow F^n in pixels.
        delta_flow: (B, 2, H, W) increment ΔF^{n+1} in pixels.

    Returns:
        (B, 2, H, W) composed flow F^{n+1}.

    Raises:
        ValueError: if the shapes differ or are not (B, 2, H, W).
    """
    if flow.shape != delta_flow.shape or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"compose_flows expects two (B, 2, H, W) flows of one shape; got flow {tuple(flow.shape)} "
            f"and delta_flow {tuple(delta_flow.shape)}"
        )
    return delta_flow + warp(flow, delta_flow)


def local_correlation(pose_feats: Tensor, source_feats: Tensor, radius: int) -> Tensor:
    """Local correlation volume C(x, r) = ReLU(F_T'(x)^T F_S'(x + r) / sqrt(C)) for all ``|r|_inf <= radius``.

    Neighbours outside the image count as zero features (so their correlation is 0). Offsets are ordered
    row-major: dy is the outer index running -R..R, dx the inner one running -R..R, i.e. channel
    ``(dy + R) * (2R + 1) + (dx + R)`` holds offset ``r = (dx, dy)``.

    Args:
        pose_feats: (B, C, H, W) target-pose features F_T'.
        source_feats: (B, C, H, W) source features F_S'.
        radius: R >= 0.

    Returns:
        (B, (2R + 1)^2, H, W) non-negative correlation volume.

    Raises:
        ValueError: if the shapes differ or are not 4-D, or ``radius`` is negative.
    """
    if pose_feats.dim() != 4 or pose_feats.shape != source_feats.shape:
        raise ValueError(
            f"local_correlation expects two (B, C, H, W) feature maps of one shape; got pose_feats "
            f"{tuple(pose_feats.shape)} and source_feats {tuple(source_feats.shape)}"
        )
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    _, channels, height, width = pose_feats.shape
    padded = F.pad(source_feats, (radius, radius, radius, radius))
    scale = 1.0 / math.sqrt(channels)
    volumes = []
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = padded[:, :, radius + dy : radius + dy + height, radius + dx : radius + dx + width]
            volumes.append((pose_feats * shifted).sum(dim=1))
    return F.relu(torch.stack(volumes, dim=1) * scale)


# ----------------------------------------------------------------------------------------------------------------
# MapFormer
# ----------------------------------------------------------------------------------------------------------------


def _partition(x: Tensor, kind: str, k: int) -> tuple[Tensor, Tensor | None]:
    """Split (B, C, H, W) into region token sets (B * regions, L, C) plus a validity mask (None: all valid).

    ``local``: non-overlapping k x k windows; ``non-local``: tokens sharing (y % k, x % k) after padding to
    multiples of k; ``global``: one region of all H * W tokens. Regions made only of padding get an all-true
    mask (their queries are padding and discarded; no real token can attend to them).
    """
    batch, channels, height, width = x.shape
    if kind == "global":
        return x.flatten(2).transpose(1, 2), None
    pad_h, pad_w = (-height) % k, (-width) % k
    xp = F.pad(x, (0, pad_w, 0, pad_h))
    nh, nw = (height + pad_h) // k, (width + pad_w) // k
    grid = xp.view(batch, channels, nh, k, nw, k)
    if kind == "local":
        tokens = grid.permute(0, 2, 4, 3, 5, 1).reshape(batch * nh * nw, k * k, channels)
    else:
        tokens = grid.permute(0, 3, 5, 2, 4, 1).reshape(batch * k * k, nh * nw, channels)
    if pad_h == 0 and pad_w == 0:
        return tokens, None
    valid = torch.zeros(nh * k, nw * k, dtype=torch.bool, device=x.device)
    valid[:height, :width] = True
    valid = valid.view(nh, k, nw, k)
    if kind == "local":
        valid = valid.permute(0, 2, 1, 3).reshape(nh * nw, k * k)
    else:
        valid = valid.permute(1, 3, 0, 2).reshape(k * k, nh * nw)
    valid = valid | ~valid.any(dim=-1, keepdim=True)
    return tokens, valid.repeat(batch, 1)


def _merge(tokens: Tensor, kind: str, k: int, shape: torch.Size) -> Tensor:
    """Inverse of ``_partition``: (B * regions, L, C) -> (B, C, H, W), dropping padded tokens."""
    batch, channels, height, width = shape
    if kind == "global":
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)
    nh, nw = -(-height // k), -(-width // k)
    if kind == "local":
        grid = tokens.view(batch, nh, nw, k, k, channels).permute(0, 5, 1, 3, 2, 4)
    else:
        grid = tokens.view(batch, k, k, nh, nw, channels).permute(0, 5, 3, 1, 4, 2)
    return grid.reshape(batch, channels, nh * k, nw * k)[:, :, :height, :width]


class _Attention(nn.Module):
    """Multi-head attention with a key-validity mask (``F.scaled_dot_product_attention``)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, valid: Tensor | None) -> Tensor:
        n, lq, dim = x.shape
        lk = context.shape[1]
        head_dim = dim // self.heads
        q = self.to_q(x).view(n, lq, self.heads, head_dim).transpose(1, 2)
        k = self.to_k(context).view(n, lk, self.heads, head_dim).transpose(1, 2)
        v = self.to_v(context).view(n, lk, self.heads, head_dim).transpose(1, 2)
        mask = None if valid is None else valid[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(out.transpose(1, 2).reshape(n, lq, dim))


class _RegionLayer(nn.Module):
    """One MapFormer layer on one region type: self-attention, cross-attention to pose tokens, FFN (pre-norm)."""

    def __init__(self, dim: int, heads: int, ffn_mult: int, kind: str, kernel_size: int) -> None:
        super().__init__()
        self.kind = kind
        self.kernel_size = kernel_size
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = _Attention(dim, heads)
        self.norm_cross = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.cross_attn = _Attention(dim, heads)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim * ffn_mult), nn.GELU(), nn.Linear(dim * ffn_mult, dim))

    def forward(self, source_feats: Tensor, pose_feats: Tensor) -> Tensor:
        x, valid = _partition(source_feats, self.kind, self.kernel_size)
        context, _ = _partition(pose_feats, self.kind, self.kernel_size)
        h = self.norm_self(x)
        x = x + self.self_attn(h, h, valid)
        x = x + self.cross_attn(self.norm_cross(x), self.norm_context(context), valid)
        x = x + self.ffn(self.norm_ffn(x))
        return _merge(x, self.kind, self.kernel_size, source_feats.shape)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, kernel_size={self.kernel_size}"


class MapFormer(nn.Module):
    """Region-wise attention over source features with cross-attention to target-pose features.

    Each of ``depth`` blocks applies, in order, one layer per region type: ``global`` (all H * W tokens),
    ``non-local`` for each k in ``kernel_sizes`` (token (y, x) belongs to group (y % k, x % k): the tokens at the
    same position inside the k x k windows), and ``local`` for each k (non-overlapping k x k windows). A layer is
    self-attention among the region's source tokens, cross-attention from them to the pose tokens of the same
    region, and an FFN, each pre-norm with a residual. H and W are zero-padded to multiples of k and padded tokens
    are masked out of attention. The pose features are returned through ``pose_proj`` (LayerNorm + 1x1 projection).

    Args:
        dim: channel count C of both feature maps; divisible by ``heads``.
        heads: attention heads.
        kernel_sizes: window sizes k of the non-local and local regions.
        depth: number of blocks.
        ffn_mult: hidden width of the FFN as a multiple of ``dim``.
        regions: which region types to use, a subset of ("global", "non-local", "local"); the order of
            application is always global, non-local, local.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 4,
        kernel_sizes: Sequence[int] = (4, 2),
        depth: int = 1,
        ffn_mult: int = 2,
        regions: Sequence[str] = REGION_TYPES,
    ) -> None:
        super().__init__()
        if dim <= 0 or heads <= 0 or dim % heads != 0:
            raise ValueError(f"MapFormer needs dim divisible by heads; got dim={dim}, heads={heads}")
        if any(k < 1 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be >= 1, got {tuple(kernel_sizes)}")
        unknown = sorted(set(regions) - set(REGION_TYPES))
        if unknown:
            raise ValueError(f"unknown MapFormer region types {unknown}; expected a subset of {REGION_TYPES}")
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.dim = dim
        plan: list[tuple[str, int]] = []
        if "global" in regions:
            plan.append(("global", 1))
        if "non-local" in regions:
            plan.extend(("non-local", int(k)) for k in kernel_sizes)
        if "local" in regions:
            plan.extend(("local", int(k)) for k in kernel_sizes)
        self.layers = nn.ModuleList(
            _RegionLayer(dim, heads, ffn_mult, kind, k) for _ in range(depth) for kind, k in plan
        )
        self.pose_norm = nn.LayerNorm(dim)
        self.pose_proj = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, source_feats: Tensor, pose_feats: Tensor) -> tuple[Tensor, Tensor]:
        """Refine the source features.

        Args:
            source_feats: (B, dim, H, W) source features F_S.
            pose_feats: (B, dim, H, W) target-pose features F_T.

        Returns:
            (F_S', F_T'), both (B, dim, H, W).

        Raises:
            ValueError: if the shapes differ, are not 4-D, or the channel count is not ``dim``.
        """
        if source_feats.dim() != 4 or source_feats.shape != pose_feats.shape or source_feats.shape[1] != self.dim:
            raise ValueError(
                f"MapFormer expects source_feats and pose_feats of one shape (B, {self.dim}, H, W); got "
                f"{tuple(source_feats.shape)} and {tuple(pose_feats.shape)}"
            )
        x = source_feats
        for layer in self.layers:
            x = layer(x, pose_feats)
        pose = self.pose_norm(pose_feats.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x, self.pose_proj(pose)


# ----------------------------------------------------------------------------------------------------------------
# Pose aggregator, encoders, RPA
# ----------------------------------------------------------------------------------------------------------------


class PoseAggregator(nn.Module):
    """Flow increment from the local correlation of pose and source features.

    ``C(F_T', F_S') -> Conv3x3(hidden) -> ReLU -> MaxPool(3, stride 1) -> Conv3x3(2)``. The last convolution is
    zero-initialized, so a fresh aggregator predicts ΔF = 0 and alignment starts as the identity warp.

    Args:
        radius: correlation radius R.
        hidden: channels of the hidden convolution.
    """

    def __init__(self, radius: int = 3, hidden: int = 64) -> None:
        super().__init__()
        if radius < 0 or hidden < 1:
            raise ValueError(f"PoseAggregator needs radius >= 0 and hidden >= 1; got radius={radius}, hidden={hidden}")
        self.radius = radius
        self.conv_in = nn.Conv2d((2 * radius + 1) ** 2, hidden, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.conv_out = nn.Conv2d(hidden, 2, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, pose_feats: Tensor, source_feats: Tensor) -> Tensor:
        """Predict ΔF at feature resolution.

        Args:
            pose_feats: (B, C, h, w) F_T'.
            source_feats: (B, C, h, w) F_S'.

        Returns:
            (B, 2, h, w) flow increment in feature pixels (channel 0 = dx, channel 1 = dy).
        """
        corr = local_correlation(pose_feats, source_feats, self.radius)
        return self.conv_out(self.pool(F.relu(self.conv_in(corr))))


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


class ConvEncoder(nn.Module):
    """Convolutional encoder to ``dim`` channels at 1 / ``downsample`` resolution (``Encoder`` in the paper).

    Conv3x3 -> GroupNorm -> SiLU, then log2(downsample) times a stride-2 Conv3x3 -> GroupNorm -> SiLU, then a
    final Conv3x3.

    Args:
        in_channels: input channels.
        dim: output channels.
        downsample: 1, 2, 4 or 8.
    """

    def __init__(self, in_channels: int, dim: int, downsample: int = 1) -> None:
        super().__init__()
        if downsample not in (1, 2, 4, 8):
            raise ValueError(f"downsample must be one of 1, 2, 4, 8; got {downsample}")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, dim, kernel_size=3, padding=1),
            nn.GroupNorm(_groups(dim), dim),
            nn.SiLU(),
        ]
        for _ in range(int(math.log2(downsample))):
            layers += [
                nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1),
                nn.GroupNorm(_groups(dim), dim),
                nn.SiLU(),
            ]
        layers.append(nn.Conv2d(dim, dim, kernel_size=3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, dim, H / downsample, W / downsample)."""
        return self.net(x)


@dataclass
class AlignmentOutput:
    """Result of ``RecurrentPoseAlignment``.

    Attributes:
        source_feats: (B, dim, h, w) F_S^N = Encoder(W(I_S; F^N)).
        tokens: (B, h * w, dim) F_S^N flattened, for the U-Net's cross-attention.
        flow: (B, 2, H, W) accumulated flow F^N at input resolution, in input pixels.
        warped: W(I_S; F^n) for n = 1..N at input resolution; empty unless intermediates were requested.
    """

    source_feats: Tensor
    tokens: Tensor
    flow: Tensor
    warped: list[Tensor] = field(default_factory=list)


class RecurrentPoseAlignment(nn.Module):
    """Recurrent Pose Alignment: iteratively warp the source image towards the target pose.

    Args:
        source_channels: channels Cs of the source image I_S.
        pose_channels: channels Cp of the target pose P.
        dim: feature channels.
        num_iterations: N >= 1.
        radius: correlation radius R.
        kernel_sizes: MapFormer window sizes.
        depth: MapFormer depth.
        heads: MapFormer attention heads.
        downsample: feature stride of the encoders (1, 2, 4 or 8).
    """

    def __init__(
        self,
        source_channels: int,
        pose_channels: int,
        dim: int,
        *,
        num_iterations: int = 5,
        radius: int = 3,
        kernel_sizes: Sequence[int] = (4, 2),
        depth: int = 1,
        heads: int = 4,
        downsample: int = 1,
    ) -> None:
        super().__init__()
        if num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
        self.source_channels = source_channels
        self.pose_channels = pose_channels
        self.dim = dim
        self.num_iterations = num_iterations
        self.downsample = downsample
        self.source_encoder = ConvEncoder(source_channels, dim, downsample)
        self.pose_encoder = ConvEncoder(pose_channels, dim, downsample)
        self.mapformer = MapFormer(dim, heads, kernel_sizes, depth)
        self.aggregator = PoseAggregator(radius)

    def _check_inputs(self, source: Tensor, target_pose: Tensor) -> None:
        if source.dim() != 4 or target_pose.dim() != 4:
            raise ValueError(
                f"expected source (B, {self.source_channels}, H, W) and target_pose (B, {self.pose_channels}, H, W); "
                f"got {tuple(source.shape)} and {tuple(target_pose.shape)}"
            )
        if source.shape[1] != self.source_channels:
            raise ValueError(f"source must have {self.source_channels} channels, got {source.shape[1]}")
        if target_pose.shape[1] != self.pose_channels:
            raise ValueError(f"target_pose must have {self.pose_channels} channels, got {target_pose.shape[1]}")
        if source.shape[0] != target_pose.shape[0] or source.shape[-2:] != target_pose.shape[-2:]:
            raise ValueError(
                f"source and target_pose must share batch and spatial size; got {tuple(source.shape)} "
                f"and {tuple(target_pose.shape)}"
            )
        height, width = source.shape[-2:]
        if height % self.downsample or width % self.downsample:
            raise ValueError(f"H={height} and W={width} must be divisible by downsample={self.downsample}")

    def forward(self, source: Tensor, target_pose: Tensor, *, return_intermediates: bool = False,
                source_image: Tensor | None = None, encode_image: Callable[[Tensor], Tensor] | None = None,
                ) -> AlignmentOutput:
        """Align the source to the target pose.

        Args:
            source: (B, Cs, H, W) source image I_S (in a latent model: its VAE latent).
            target_pose: (B, Cp, H, W) target pose P.
            return_intermediates: also return W(I_S; F^n) for n = 1..N.
            source_image, encode_image: eq. 9 as the paper writes it (`rpa_warp: image`): warp the source *image*
                (B, 3, H*f, W*f) by the flow upsampled f times, and re-encode it with `encode_image` (the frozen,
                differentiable VAE encoder: image -> latent) before the Encoder; the intermediates are then images.

        Returns:
            ``AlignmentOutput`` with F_S^N, its tokens, F^N and (optionally) the intermediate warps.

        Raises:
            ValueError: on wrong dimensionality or channel counts, mismatched sizes, or H, W not divisible by
                ``downsample``.
        """
        self._check_inputs(source, target_pose)
        if (source_image is None) != (encode_image is None):
            raise ValueError("the image warp of eq. 9 needs both source_image and encode_image")
        batch, _, height, width = source.shape
        flow = source.new_zeros(batch, 2, height, width)  # F^0 = 0
        pose_feats = self.pose_encoder(target_pose)  # F_T
        warped = source  # W(I_S; F^0) is the identity
        intermediates: list[Tensor] = []
        for _ in range(self.num_iterations):
            source_feats = self.source_encoder(warped)  # F_S^n
            refined_source, refined_pose = self.mapformer(source_feats, pose_feats)  # F_S', F_T'
            delta_flow = self.aggregator(refined_pose, refined_source)  # ΔF^{n+1}, feature pixels
            if self.downsample > 1:
                delta_flow = F.interpolate(delta_flow, size=(height, width), mode="bilinear", align_corners=True)
                delta_flow = delta_flow * self.downsample
            flow = compose_flows(flow, delta_flow)  # F^{n+1} = F^n ∘ ΔF^{n+1}
            if encode_image is None:
                warped = warp(source, flow)  # the latent warped (the cheaper reading)
                shown = warped
            else:  # eq. 9: the image warped by the flow in image pixels, then through the VAE encoder
                shown = warp(source_image, upsample_flow(flow, tuple(source_image.shape[-2:])))
                warped = encode_image(shown)
            if return_intermediates:
                intermediates.append(shown)
        source_feats = self.source_encoder(warped)  # F_S^N
        return AlignmentOutput(
            source_feats=source_feats,
            tokens=source_feats.flatten(2).transpose(1, 2),
            flow=flow,
            warped=intermediates,
        )
