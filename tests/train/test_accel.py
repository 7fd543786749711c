"""train/accel.py: the memory-format and compile switches, and the eager fallback when compiling fails."""
from __future__ import annotations

import torch

from train.accel import maybe_compile, memory_format, to_format, wanted


def test_none_means_on_where_cuda_is_used():
    assert wanted(None, torch.device("cuda", 0)) and not wanted(None, torch.device("cpu"))
    assert wanted(True, torch.device("cpu")) and not wanted(False, torch.device("cuda", 0))


def test_channels_last_3d_applies_to_clips_only():
    fmt = memory_format(True)
    x = to_format(torch.zeros(2, 3, 4, 5, 6), fmt)
    assert x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()
    assert to_format(torch.zeros(2, 3), fmt).is_contiguous()
    assert to_format(torch.zeros(2, 3, 4, 5, 6), memory_format(False)).is_contiguous()


def test_a_failing_compile_falls_back_to_eager_with_one_line():
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here\nsecond line")

    said = []
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    fn = maybe_compile(lin, True, said.append, backend=broken_backend)
    x = torch.randn(4, 3)
    assert torch.equal(fn(x), lin(x)) and torch.equal(fn(x), lin(x))
    assert len(said) == 1 and said[0].startswith("torch.compile failed (") and said[0].endswith("training eager")
    assert "\n" not in said[0] and "no compiler here" in said[0]
    assert maybe_compile(lin, False, said.append) is lin
