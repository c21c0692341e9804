"""A `--device` option's value checked before any work: a typo or a CUDA device torch cannot see is a clear error
(exit 2) instead of a torch traceback minutes into a run."""

from __future__ import annotations

import torch

from posebench.errors import PosebenchError

__all__ = ["checked_device"]


def checked_device(name: str | torch.device, option: str = "--device") -> torch.device:
    """The torch device `name` names, when this process can use it."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise PosebenchError(f"{option} {name!r} is not a device: use cpu, cuda or cuda:N (mps on Apple "
                             "silicon)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"torch {torch.__version__} is a CUDA {torch.version.cuda} build but finds no usable GPU (none "
                   "visible to this process: CUDA_VISIBLE_DEVICES, the driver, or no GPU in this machine)"
                   if torch.version.cuda else f"torch {torch.__version__} is a CPU-only build (install a CUDA build "
                   "of torch to use a GPU)")
            raise PosebenchError(f"{option} {name}: {why}; use {option} cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PosebenchError(f"{option} {name}: torch sees {torch.cuda.device_count()} CUDA device(s), "
                                 f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise PosebenchError(f"{option} {name}: this torch has no usable MPS device; use {option} cpu")
    elif device.type != "cpu":
        raise PosebenchError(f"{option} {name}: posebench runs on cpu, cuda or mps, not {device.type}")
    return device
