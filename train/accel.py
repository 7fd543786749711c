"""The GPU path: channels_last_3d memory format, torch.compile with an eager fallback, cuDNN autotuning.

``train.channels_last`` and ``train.compile`` are true, false or None (on where CUDA is used).
"""
from __future__ import annotations

from typing import Callable

import torch

from shards.errors import one_line


def wanted(flag: bool | None, device: torch.device) -> bool:
    return device.type == "cuda" if flag is None else bool(flag)


def setup_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True      # clip sizes are fixed, so the autotuned choice holds


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last_3d if channels_last else torch.contiguous_format


def to_format(x: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    return x.contiguous(memory_format=fmt) if x.dim() == 5 else x


class CompiledOrEager:
    """``torch.compile(module)``; compilation happens at the first call, so a failure there is reported
    in one line through ``say`` and the module runs eager from then on."""

    def __init__(self, module: torch.nn.Module, say: Callable[[str], None], **compile_kw):
        self.eager, self.say = module, say
        self.fn = torch.compile(module, **compile_kw)
        self.first = True

    def __call__(self, *args, **kw):
        if not self.first:
            return self.fn(*args, **kw)
        self.first = False
        try:
            return self.fn(*args, **kw)
        except Exception as exc:  # noqa: BLE001 - any compiler failure; a real model error recurs eager
            root = exc
            while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None:
                root = inner                       # dynamo wraps the compiler's own error
            self.say(f"torch.compile failed ({type(root).__name__}: {one_line(root)[:200]}); training eager")
            self.fn = self.eager
            return self.fn(*args, **kw)


def maybe_compile(module: torch.nn.Module, on: bool, say: Callable[[str], None], **compile_kw):
    return CompiledOrEager(module, say, **compile_kw) if on else module
