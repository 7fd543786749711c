"""Process-group set-up and the collectives the methods need (gloo on CPU, NCCL on GPU)."""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


def init_from_env() -> tuple[int, int, int, torch.device]:
    """(rank, world size, local rank, device). Initialises the group under torchrun; a plain
    ``python`` run is rank 0 of 1 with no group."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=10))
    return rank, world, local, device


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


class _AllGather(torch.autograd.Function):
    """All ranks' x stacked in rank order; backward sums every rank's gradient of this rank's part
    (torch.distributed.nn's semantics, written out because that module is deprecated and warns)."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' x concatenated in rank order, gradients flowing back to each rank's part."""
    if not is_dist():
        return x
    return _AllGather.apply(x).flatten(0, 1)


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    """The sum of x over ranks, differentiable (each rank's gradient is the sum of all ranks')."""
    return _AllReduceSum.apply(x) if is_dist() else x


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    if not is_dist():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def all_ranks_true(flag: torch.Tensor) -> bool:
    """A boolean tensor's value, AND-ed over ranks, so every rank takes the same decision."""
    if is_dist():
        flag = flag.to(torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def sum_over_ranks(values: dict[str, int], device: torch.device) -> dict[str, int]:
    """Integer counts summed over every rank (each rank knows only its own share)."""
    if not is_dist() or not values:
        return dict(values)
    t = torch.tensor(list(values.values()), dtype=torch.int64, device=device)
    dist.all_reduce(t)
    return dict(zip(values, t.tolist()))


def agreed(exc: Exception) -> Exception:
    """Mark a failure every rank reached together (after an agreement), so only rank 0 reports it."""
    exc.all_ranks = True
    return exc


def barrier() -> None:
    if is_dist():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
