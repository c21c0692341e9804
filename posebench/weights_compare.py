"""Compare two weight files tensor by tensor (`posebench weights compare`), e.g. to check a packager's claim that
its copy of a network holds the original's numbers.

Each file is read without running code from it (a state dict through `weights.load_state_dict`; a TorchScript
archive through `utils.torchscript_tensors`) and brought to one layout: NVIDIA's TorchScript FID Inception names
become the torchvision Inception3 names pytorch-fid uses, so `inception-fid-helper`, `inception-fid-clean` and
`inception-fid-pytorch` compare with each other. Tensors that only make sense in one file (a classifier,
BatchNorm step counters) are left out and listed.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from posebench import weights
from posebench.errors import WeightsError

_IGNORED = ("num_batches_tracked",)


def comparable_tensors(name_or_path: str) -> tuple[Path, dict[str, torch.Tensor]]:
    """The file (a registry name, fetched if needed, or a path) and its tensors in the common layout."""
    from posebench.metrics.tf_inception_keys import nvidia_to_inception3
    from posebench.utils.torchscript_tensors import read_torchscript_tensors

    path = Path(name_or_path)
    if not path.is_file():
        if name_or_path not in weights.REGISTRY:
            raise WeightsError(f"{name_or_path} is neither a file nor a registry name (posebench weights list)")
        path = weights.ensure(name_or_path, allow_download=not weights.is_offline())
    if _is_torchscript(path):
        tensors = dict(read_torchscript_tensors(path))
        if any("layers.mixed" in k for k in tensors):
            tensors = dict(nvidia_to_inception3(tensors, path))
    else:
        tensors = weights.load_state_dict(path)
    return path, {k: v for k, v in tensors.items() if isinstance(v, torch.Tensor) and not k.endswith(_IGNORED)}


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive holds compiled code under `<root>/code/`; torch.save's zip files do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any("/code/" in name for name in zf.namelist())


@dataclass
class Comparison:
    compared: int = 0
    differing: list[tuple[str, float]] = field(default_factory=list)  # (name, largest |a - b|), largest first
    shape_mismatch: list[str] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.compared > 0 and not (self.differing or self.shape_mismatch)


def compare(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> Comparison:
    out = Comparison(only_a=sorted(set(a) - set(b)), only_b=sorted(set(b) - set(a)))
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        if x.shape != y.shape:
            out.shape_mismatch.append(f"{key} {tuple(x.shape)} vs {tuple(y.shape)}")
            continue
        out.compared += 1
        diff = float((x.double() - y.double()).abs().max()) if x.numel() else 0.0
        if diff > atol:
            out.differing.append((key, diff))
    out.differing.sort(key=lambda kv: -kv[1])
    return out
