"""What a pretext task is: everything the model, the loop, the config, the logs and the plots need to
know about one, declared in one class (one module a task, beside this one).

The loader's batch carries the pair's whole geometry as the sampler drew it (shards.pairs: every
field of ``shards.sampling.PairSample``: candidate indices, frame indices, crop boxes); a task turns
that geometry into its labels (:meth:`PretextTask.targets`), so a task whose label follows from the
geometry touches no other file. A task that needs a new random draw adds it to the sampler too.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..heads import PAIR_INPUTS, mlp_head
from ..losses import accuracy


class PretextTask:
    name: str = ""             # the term everywhere: weight key loss.<name>, log loss_<name> / acc_<name>, plots
    help: str = ""             # the weight key's meaning (the README's key reference)
    weight: float = 1.0        # default weight in eq. 5 (the authors: 1 for every pretext term)
    per_clip: bool = True      # a head on one clip's features (both clips, terms summed) or on the pair's
    classes_from: str = ""     # the config key that sets the number of classes (a count, or a list of choices)
    old_names: tuple[str, ...] = ()   # the term's names in logs of earlier versions (plots read them)

    def n_classes(self, cfg) -> int:
        """The value of config key ``classes_from``: a count, or the length of a list of choices."""
        value = cfg
        for part in self.classes_from.split("."):
            value = getattr(value, part)
        return value if isinstance(value, int) else len(value)

    def targets(self, batch: dict) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Labels from the batch's pair geometry: (clip 1's, clip 2's) when ``per_clip``, else the pair's."""
        raise NotImplementedError

    def chance(self, cfg) -> float:
        # the sampler draws every candidate uniformly, so chance is one over the classes
        return 1.0 / self.n_classes(cfg)

    def check(self, cfg) -> str | None:
        """Why ``cfg`` cannot train this task (it is on), or None."""
        n = self.n_classes(cfg)
        if n < 2:
            w = getattr(cfg.loss, self.name)
            return (f"config key loss.{self.name}={w} needs at least two classes to predict, got {n} from "
                    f"{self.classes_from}; set loss.{self.name}=0 or give more")
        return None

    def build_head(self, backbone: nn.Module, feature_dim: int, cfg) -> nn.Module:
        """The backbone's own pretext head where it has one (``make_head``), else the MLP head."""
        in_dim = feature_dim if self.per_clip else PAIR_INPUTS[cfg.model.pair_input][0] * feature_dim
        make = getattr(backbone, "make_head", None)
        head = (make or mlp_head)(in_dim, self.n_classes(cfg))
        head.pair_input = cfg.model.pair_input      # a plain attribute: the state dict is unchanged
        return head

    def loss(self, head: nn.Module, h1: torch.Tensor, h2: torch.Tensor, batch: dict):
        """(loss, accuracy) of this term on features h1, h2 [B, D] of the two clips."""
        if self.per_clip:
            t1, t2 = self.targets(batch)
            b = h1.shape[0]
            logits = head(torch.cat([h1, h2]))
            # summed over the two clips, as the authors sum pb_1 + pb_2 and rot_1 + rot_2
            return (F.cross_entropy(logits[:b], t1) + F.cross_entropy(logits[b:], t2),
                    accuracy(logits, torch.cat([t1, t2])))
        t = self.targets(batch)
        logits = head(PAIR_INPUTS[getattr(head, "pair_input", "cat")][1](h1, h2))
        return F.cross_entropy(logits, t), accuracy(logits, t)


TASKS: dict[str, PretextTask] = {}


def register(task: PretextTask) -> PretextTask:
    """Add ``task`` under its name (logs, weight key); names are unique and the contrastive term's is taken."""
    if not task.name.isidentifier() or task.name == "contrastive":
        raise ValueError(f"pretext task name {task.name!r} must be an identifier other than 'contrastive'")
    if task.name in TASKS and type(TASKS[task.name]) is not type(task):
        raise ValueError(f"pretext task {task.name!r} is registered already")
    TASKS[task.name] = task
    return task


def unregister(name: str) -> None:
    TASKS.pop(name, None)


def enabled(cfg) -> list[PretextTask]:
    """The tasks ``cfg`` trains (a weight above 0), in registry order."""
    return [t for t in TASKS.values() if getattr(cfg.loss, t.name) > 0]
