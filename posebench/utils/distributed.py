"""This process's place in a multi-process run (accelerate launch / torchrun); world 1 otherwise."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class Shard:
    rank: int
    world: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls, device: str = "cpu") -> Shard:
        """Rank and world size from the launcher's environment (accelerate launch and torchrun both set
        WORLD_SIZE/RANK/MASTER_ADDR); the process group is created here if the launcher did not."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls(0, 1)  # no launcher: never touch torch.distributed
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
            # A group left alive at interpreter exit can abort it (gloo: SIGABRT, "terminate called without an
            # active exception", seen once in CI after the results were written): tear it down first.
            atexit.register(_destroy_process_group)
        return cls(dist.get_rank(), dist.get_world_size())

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def local_device(self, device: str) -> str:
        """`cuda` becomes this process's GPU (LOCAL_RANK) under a launcher; other devices are kept."""
        if device == "cuda" and self.world > 1:
            return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        return device
