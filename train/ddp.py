"""Process-group set-up and the collectives the methods need (gloo on CPU, NCCL on GPU), and what a
rank says when a collective fails because another rank is gone (a lost node) or silent past
``train.collective_timeout``: one line, then an exit torchrun's ``--max-restarts`` acts on."""
from __future__ import annotations

import datetime
import os
import re

import torch
import torch.distributed as dist

from shards.errors import RunFailed, one_line


TIMEOUT_KEY = "train.collective_timeout"
# what gloo and NCCL errors say when a peer's connection closed or a collective timed out
_COLLECTIVE = re.compile(r"gloo|nccl|ProcessGroup|connection (closed|reset) by peer", re.I)


class PeerLost(RunFailed):
    """A collective failed: a rank of the group is gone or did not answer in time."""

    rank_only = True        # rank 0 may be the one that is gone: every surviving rank says it


def init_from_env(timeout_s: float = 600.0) -> tuple[int, int, int, torch.device]:
    """(rank, world size, local rank, device). Initialises the group under torchrun; a plain
    ``python`` run is rank 0 of 1 with no group. ``timeout_s`` bounds every collective (gloo's and
    NCCL's own default is 30 minutes of a hung job)."""
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
                                timeout=datetime.timedelta(seconds=timeout_s))
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


def restart_count() -> int:
    """How often torchrun has restarted this worker group (0: its first start, or no torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0) or 0)


def any_rank_restarted(device: torch.device) -> bool:
    """Whether torchrun restarted the group on any rank: an agent started again after its node was
    lost counts 0 while the surviving agent counts its restarts, and all ranks must take one decision."""
    return not all_ranks_true(torch.tensor(restart_count() == 0, device=device))


def peer_lost(exc: BaseException, timeout_s: float) -> PeerLost | None:
    """A collective's failure said as one line (which rank, what gloo/NCCL said, the key that bounds
    the wait); None for any other exception."""
    text = one_line(exc)
    if not isinstance(exc, dist.DistError) and not (isinstance(exc, RuntimeError) and _COLLECTIVE.search(text)):
        return None
    timed_out = "timed out" in text.lower() or "timeout" in text.lower()
    what = f"no answer within {TIMEOUT_KEY}={timeout_s:g} s" if timed_out else "another rank is gone"
    # gloo's message without its source path and advice: "Read error [127.0.0.1]:13715: Connection reset by peer."
    cause = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\] ", "", text).split(" This is typically")[0]
    cause = cause.split(" Exception raised from ")[0][:160]
    return PeerLost(f"rank {int(os.environ.get('RANK', 0))}: a collective failed: {what} ({cause}); a lost node "
                    f"is waited for at most {TIMEOUT_KEY} seconds; with torchrun --max-restarts the group re-forms "
                    "and continues from the last checkpoint, else run again with --resume auto")
