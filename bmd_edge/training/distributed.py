"""Multi-process training glue over `torch.distributed`: detect torchrun, init, reduce, tear down.

Why a module of its own: the trainer stays one flat loop that asks three questions — "am I
distributed?", "am I rank 0?", "what do the other ranks have?" — and this module answers them
with PyTorch's own engine (process groups, DistributedSampler, DistributedDataParallel). Nothing
here is home-made communication: gathers and broadcasts are `torch.distributed` collectives.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT; a plain
`python`/`bmd-edge` run has none of them and gets the single-process context (world size 1).
Backend: `nccl` when CUDA is available (one GPU per local rank), else `gloo` on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from bmd_edge.errors import InputError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job (world size 1 = ordinary single-process run)."""

    rank: int = 0  # global rank: 0 writes checkpoints, history, logs and progress bars
    world_size: int = 1  # processes in the job (all nodes); the global batch is split over them
    local_rank: int = 0  # rank on this node: picks the GPU (cuda:LOCAL_RANK)
    local_world_size: int = 1  # processes on this node: share the node's CPU cores
    backend: str = ""  # "gloo" (CPU) | "nccl" (GPU) | "" when not distributed
    device: str = "cpu"  # torch device for the model and batches

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"environment variable {name}={raw!r} is not an integer (set by torchrun)") from None


def detect() -> DistContext:
    """The torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK), or the single-process context."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"torchrun environment is inconsistent: RANK={rank}, WORLD_SIZE={world}")
    cuda = torch.cuda.is_available()
    device = f"cuda:{local_rank % max(1, torch.cuda.device_count())}" if cuda else "cpu"
    backend = ("nccl" if cuda else "gloo") if world > 1 else ""
    return DistContext(rank, world, local_rank, max(1, local_world), backend, device)


def init(ctx: DistContext | None = None) -> DistContext:
    """Join the process group once (idempotent); a no-op for single-process runs."""
    ctx = ctx or detect()
    if ctx.device.startswith("cuda"):
        torch.cuda.set_device(torch.device(ctx.device))
    if ctx.distributed and not dist.is_initialized():
        dist.init_process_group(backend=ctx.backend, rank=ctx.rank, world_size=ctx.world_size)
    return ctx


def teardown() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def default_threads(ctx: DistContext, requested: int) -> int:
    """Intra-op threads: the request, else the node's cores split over its local processes.

    0 in a single-process run keeps torch's own default (returned as 0: leave it alone).
    """
    if requested > 0:
        return requested
    if not ctx.distributed:
        return 0
    return max(1, (os.cpu_count() or 1) // ctx.local_world_size)


def per_rank_batch(global_batch: int, ctx: DistContext) -> int:
    """Global batch / world size; the global batch must split evenly so steps match 1 process."""
    if global_batch % ctx.world_size:
        raise InputError(
            f"batch-size {global_batch} is not divisible by the world size {ctx.world_size}; "
            f"use a multiple of {ctx.world_size} (the batch size is global, split over processes)"
        )
    return global_batch // ctx.world_size


class ShardedEpochSampler(DistributedSampler):
    """PyTorch's DistributedSampler, yielding (index, epoch) keys for `BmdDataset`.

    The epoch travels with each index so per-sample augmentation (seeded by seed, epoch, index)
    is the same whichever rank or worker draws the case. Also used with one replica, so a
    single-process run shuffles exactly like the union of the ranks of a multi-process run.
    """

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        return iter([(int(i), self.epoch) for i in super().__iter__()])


def make_sampler(n: int, ctx: DistContext, *, seed: int, shuffle: bool, drop_last: bool) -> ShardedEpochSampler:
    """Shard `n` cases over the ranks (drop_last: equal disjoint shards, tail re-drawn per epoch)."""
    return ShardedEpochSampler(
        range(n), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed,
        drop_last=drop_last,
    )


def gather_arrays(ctx: DistContext, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Concatenate each array over all ranks (rank order); identity when not distributed.

    Gathered (not summed) because ranking metrics such as AUC need every prediction.
    """
    if not ctx.distributed:
        return arrays
    parts: list[tuple[np.ndarray, ...] | None] = [None] * ctx.world_size
    dist.all_gather_object(parts, tuple(np.asarray(a) for a in arrays))
    return tuple(np.concatenate([p[k] for p in parts if p is not None]) for k in range(len(arrays)))


def broadcast_flag(ctx: DistContext, flag: bool) -> bool:
    """Rank 0's decision on every rank (early stopping must end all ranks on the same epoch)."""
    if not ctx.distributed:
        return flag
    box = [bool(flag)]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (e.g. until rank 0 has written a file the others read)."""
    if ctx.distributed:
        dist.barrier()


def sum_values(ctx: DistContext, *values: float) -> tuple[float, ...]:
    """Sum scalars over all ranks with one all_reduce (epoch-level training loss, sample counts)."""
    if not ctx.distributed:
        return tuple(float(v) for v in values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return tuple(float(v) for v in t.cpu())
