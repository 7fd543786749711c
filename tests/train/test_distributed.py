"""Two real gloo ranks on 127.0.0.1 (torch.multiprocessing): gathered negatives, the MoCo queue and
global batch norm behave like one process on the concatenated batch."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.servers import free_port


def _run(rank, world, port, fn, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out[rank] = fn(rank)
    finally:
        dist.destroy_process_group()


def on_two_ranks(fn):
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_run, args=(2, free_port(), fn, out), nprocs=2, join=True)
    return [out[0], out[1]]


def _data(seed=0, n=8, d=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


def simclr_rank(rank):
    from train import ddp as D
    from train.losses import nt_xent

    z1, z2 = _data()
    b = len(z1) // 2
    l1 = z1[rank * b:(rank + 1) * b].clone().requires_grad_(True)
    l2 = z2[rank * b:(rank + 1) * b].clone().requires_grad_(True)
    loss = nt_xent(l1, l2, 0.2, D.gather_with_grad(l1), D.gather_with_grad(l2), offset=D.rank() * b)
    # what DDP does with gradients: average them over ranks
    loss.backward()
    g1 = l1.grad.clone()
    return loss.item(), g1


def test_simclr_with_gathered_negatives_equals_one_process_on_the_whole_batch():
    from train.losses import nt_xent

    res = on_two_ranks(simclr_rank)
    z1, z2 = _data()
    z1.requires_grad_(True)
    full = nt_xent(z1, z2, 0.2)
    full.backward()
    assert abs((res[0][0] + res[1][0]) / 2 - full.item()) < 1e-5
    # each rank's gradient (through all ranks' terms, summed by autograd over the gather) equals the
    # single-process gradient times the world size, which DDP's averaging then undoes
    grads = torch.cat([res[0][1], res[1][1]]) / 2
    assert torch.allclose(grads, z1.grad, atol=1e-5)


def moco_rank(rank):
    import torch.nn.functional as F

    from train.backbones import build_backbone
    from train.methods import MoCo, MoCoParams

    m = MoCo(build_backbone("r21d_10", 0.125), MoCoParams(proj_dim=4, queue_size=8))
    keys = torch.full((2, 4), float(rank + 1)) + torch.arange(4.0)
    m.enqueue(keys)
    return m.queue[:4].clone(), F.normalize(keys, dim=1)


def test_moco_queue_holds_both_ranks_keys():
    (q0, k0), (q1, k1) = on_two_ranks(moco_rank)
    expect = torch.cat([k0, k1])           # rank 0's keys, then rank 1's
    assert torch.allclose(q0, expect) and torch.allclose(q1, expect)


def _bn_case():
    """A batch whose samples differ in scale, and an upstream gradient that is not constant per channel
    (a constant one would make the input gradient vanish and test nothing)."""
    x, _ = _data(3, n=8, d=5)
    x = x.view(8, 5, 1, 1, 1).repeat(1, 1, 2, 2, 2) * (torch.arange(8.0).view(8, 1, 1, 1, 1) + 1)
    x = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
    return x, g


def bn_rank(rank):
    from train.sync_bn import GlobalBatchNorm

    x, g = _bn_case()
    bn = GlobalBatchNorm(5)
    part = x[rank * 4:(rank + 1) * 4].clone().requires_grad_()
    y = bn(part)
    (y * g[rank * 4:(rank + 1) * 4]).sum().backward()
    return y.detach(), bn.weight.grad.clone(), bn.bias.grad.clone(), part.grad.clone(), bn.running_mean.clone(), bn.running_var.clone()


def test_global_batch_norm_spans_both_ranks():
    res = on_two_ranks(bn_rank)
    x, g = _bn_case()
    x.requires_grad_()
    bn = torch.nn.BatchNorm3d(5)
    y = bn(x)
    (y * g).sum().backward()
    assert torch.allclose(torch.cat([res[0][0], res[1][0]]), y, atol=1e-5)
    assert torch.allclose(res[0][1] + res[1][1], bn.weight.grad, atol=1e-4)
    assert torch.allclose(res[0][2] + res[1][2], bn.bias.grad, atol=1e-4)
    assert torch.allclose(torch.cat([res[0][3], res[1][3]]), x.grad, atol=1e-5)
    assert torch.allclose(res[0][4], bn.running_mean, atol=1e-5)
    assert torch.allclose(res[0][5], bn.running_var, atol=1e-4)
