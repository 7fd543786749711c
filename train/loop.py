"""The training loop: steps, the per-step non-finite check, logging, checkpoints.

Each step ends at one synchronised point (the non-finite check reads one flag from the device);
step times are taken there, so they measure finished work. Everything else the log needs stays on
the device until a record is written.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
import zlib
from pathlib import Path

import torch
from tqdm import tqdm

from train.augment import augment_pair
from shards.errors import CstpError, RunFailed, one_line

from . import ddp as D
from .accel import to_format
from .checkpoint import build_payload, checkpoint_name, prune, save_backbone, save_checkpoint
from .config import to_dict
from .guard import BadStepGuard, nonfinite_terms
from .runlog import RunLog

def seed_for(*parts) -> int:
    return zlib.crc32(json.dumps(parts).encode())


def grad_norm(params, clip: float) -> torch.Tensor:
    """The total gradient norm (before clipping), clipping to ``clip`` when it is set."""
    params = [p for p in params if p.grad is not None]
    if clip:
        return torch.nn.utils.clip_grad_norm_(params, clip)
    return torch.nn.utils.get_total_norm([p.grad for p in params])


@dataclasses.dataclass
class Trainer:
    cfg: object                     # train.config's Config
    model: torch.nn.Module          # the plain model: checkpoints and state come from it
    net: object                     # what runs the step: the model, DDP-wrapped and/or compiled
    opt: torch.optim.Optimizer
    sched: object
    loader: object
    device: torch.device
    fmt: torch.memory_format
    rank: int
    out: Path
    log: RunLog
    total: int
    step: int = 0
    preempt: object = None          # train.preemption.Preemption: checked at each step's end
    stopped_by: str | None = None   # the signal that preempted the run, once it has

    def __post_init__(self):
        self.tcfg = self.cfg.train
        self.guard = BadStepGuard(self.model, self.tcfg.max_bad_steps)
        self.bf16 = self.device.type == "cuda" and bool(self.tcfg.bf16)

    def train_step(self, batch: dict) -> tuple[dict[str, torch.Tensor], bool]:
        """One step; returns its metrics (device tensors) and whether it was applied."""
        dev = self.device
        # the clips and the pair geometry every pretext task draws its labels from (train.pretext)
        on_dev = {k: v.to(dev, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        gen = torch.Generator(device=dev).manual_seed(seed_for(self.tcfg.seed, self.step, self.rank))
        x1, x2 = augment_pair(on_dev, self.cfg.augment, gen, rotations=self.cfg.data.pair.rotations)
        x1, x2 = to_format(x1, self.fmt), to_format(x2, self.fmt)
        self.guard.snapshot()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss, parts, accs = self.net(x1, x2, on_dev)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = grad_norm(self.model.parameters(), self.cfg.optim.clip_grad)
        terms = {"loss": loss, **{f"loss_{k}": v for k, v in parts.items()}, "grad_norm": norm}
        applied = self.guard.check(self.step + 1, terms)
        if applied:
            self.opt.step()
        self.sched.step()
        self.step += 1
        if applied:
            self.model.method.on_step(self.step / self.total)
        return {**terms, **{f"acc_{k}": v for k, v in accs.items()}}, applied

    def save(self, final: bool) -> None:
        """Rank 0 writes; every rank learns whether it could, so all of them stop together if not."""
        err = None
        if self.rank == 0:
            try:
                payload = build_payload(step=self.step, model=self.model, optimizer=self.opt, scheduler=self.sched,
                                        loader=self.loader, config=to_dict(self.cfg), world_size=D.world_size())
                save_checkpoint(self.out / checkpoint_name(self.step), payload)
                prune(self.out, self.tcfg.keep_ckpts)
                if final:
                    save_backbone(self.out / "backbone.pt", payload["backbone"], self.step)
            except RunFailed as exc:
                err = exc
        if not D.all_ranks_true(torch.tensor(err is None, device=self.device)):
            raise D.agreed(err or RunFailed(f"step {self.step}: rank 0 could not write its checkpoint"))

    def run(self) -> dict | None:
        """Train to ``total`` steps; returns the end-of-run record on rank 0."""
        bar = tqdm(total=self.total, initial=self.step, unit="step", disable=self.rank != 0, file=sys.stderr)
        self.model.train()
        try:
            start = time.perf_counter()
            while self.step < self.total:
                epoch, ran = self.loader.epoch, False
                for batch in self.loader:
                    got, ran = time.perf_counter(), True
                    metrics, applied = self.train_step(batch)
                    synced = time.perf_counter()       # train_step ended with the non-finite check's sync
                    last = self.step == self.total
                    if applied:
                        rec = self.log.add_step(self.step, self.loader.epoch, metrics, self.sched.get_last_lr()[0],
                                                synced - start, got - start, last=last)
                        if rec:
                            bar.set_postfix(loss=f"{rec['loss']:.3f}")
                    else:
                        terms = {k: float(v.detach().float()) for k, v in metrics.items() if not k.startswith("acc_")}
                        self.log.event("bad_step", self.step, skipped=self.guard.bad, nonfinite=nonfinite_terms(terms))
                    bar.update(1)
                    stop = self.preempt is not None and self.preempt.agreed(self.device)
                    if self.step % self.tcfg.ckpt_every == 0 or last or stop:
                        self.save(final=last)
                    start = time.perf_counter()        # logging and saving are not the step's time
                    if stop and not last:
                        self.stopped_by = self.preempt.signal or "a signal to another rank"
                        return None
                    if self.step >= self.total:
                        break
                if ran and (self.loader.epoch != epoch or self.loader.delivered >= len(self.loader)):
                    summary = self.loader.epoch_summary()    # this rank's videos; the split's total
                    summary.update(D.sum_over_ranks({k: summary[k] for k in ("videos_delivered", "samples_skipped")},
                                                    self.device))
                    self.log.event("epoch", self.step, epoch=epoch, **summary)
        except CstpError as exc:
            if D.world_size() > 1 and not getattr(exc, "all_ranks", False):
                # a failure this rank met alone (its shards, say): it reports it, naming itself
                exc.args = (f"rank {self.rank}: {one_line(exc)}",)
                exc.rank_only = True
            raise
        finally:
            bar.close()        # an error's one line must not land on the bar's line
        return self.log.summary(self.step) if self.rank == 0 else None
