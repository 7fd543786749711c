"""A resume continues the run it resumes: its config is the checkpoint's.

What the command line (the ``--config`` file's keys and the overrides) says differently is refused in
one line naming each key with the run's value and the asked one, unless the key is one that may
change on resume (:data:`ALLOWED_ON_RESUME`: how long to train and how to log) or the user names it
with ``--allow-change KEY``. Some keys never change (:data:`FIXED`): the weights, the optimizer state,
the step count or the epoch plan are built on them. A resume at another world size keeps the global
batch (data.batch_size per rank becomes global batch / world size) and so the learning rate, and says
so; a global batch that does not divide over the new ranks is refused naming the numbers.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from shards.errors import InputError

from .checkpoint import CheckpointError
from .config import config_from_dict
from .resume_keys import ALLOWED_ON_RESUME, FIXED

_UNSET = object()


class ResumeRefused(InputError):
    pass


@dataclass
class Resumed:
    """The resumed run's config, and what differs from the checkpoint's (key: (old, new))."""
    config: dict
    changes: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)      # one line each, printed at start


def leaves(tree, prefix: str = "") -> dict:
    """{dotted key: value} of the leaves of a nested dict (a list or an empty dict is a leaf)."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree} if prefix else {}
    out = {}
    for k, v in tree.items():
        out.update(leaves(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def lookup(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _UNSET
        node = node[part]
    return node


def assign(cfg: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def explicit_keys(config_path: str | None, overrides: list[str]) -> list[str]:
    """The leaf keys the command line sets: those of the --config file and of each override."""
    keys = list(leaves(OmegaConf.to_container(OmegaConf.load(config_path)))) if config_path else []
    for o in overrides:
        keys += list(leaves(OmegaConf.to_container(OmegaConf.from_dotlist([o]))))
    return list(dict.fromkeys(keys))


def _fmt(v) -> str:
    return "unset" if v is _UNSET else repr(v)


def describe(changes: dict) -> str:
    return ", ".join(f"{k} {_fmt(a)} -> {_fmt(b)}" for k, (a, b) in changes.items())


def _allowed(key: str, allow: list[str]) -> bool:
    return key in ALLOWED_ON_RESUME or any(key == a or key.startswith(a + ".") for a in allow)


def _fixed(key: str) -> bool:
    return any(key == f or key.startswith(f + ".") for f in FIXED)


def per_rank_batch(ck_cfg: dict, ck_world: int, world: int, where: str) -> tuple[int, str | None]:
    """data.batch_size per rank at ``world`` ranks that keeps the run's global batch, and the line
    that says so (None when the world size is the same)."""
    batch = int(ck_cfg["data"]["batch_size"])
    if world == ck_world:
        return batch, None
    glob = batch * ck_world
    if glob % world:
        fits = [w for w in range(1, glob + 1) if glob % w == 0]
        raise ResumeRefused(f"{where} was trained at world size {ck_world} with a global batch of {glob} "
                            f"(data.batch_size {batch} x {ck_world}), which does not divide over {world} ranks; "
                            f"resume on a world size in {fits}")
    return glob // world, (f"world size {ck_world} -> {world}: data.batch_size {batch} -> {glob // world} per rank "
                           f"keeps the global batch {glob} and the learning rate; the rest of this epoch is dealt to "
                           f"{world} rank{'s' if world > 1 else ''}, so its batches differ from those of the "
                           f"{ck_world}-rank run")


def resumed_config(ck: dict, where: str, requested: dict, config_path: str | None, overrides: list[str],
                   allow: list[str], world: int) -> Resumed:
    """The config a resume from checkpoint ``ck`` (named ``where``) runs with, or ResumeRefused."""
    base = copy.deepcopy(ck["config"])
    ck_world = ck["loader"].get("world_size")
    notes = []
    if ck_world is None:
        notes.append(f"{where} does not record its world size (written before it was recorded); assuming {world}")
        ck_world = world
    batch, note = per_rank_batch(base, int(ck_world), world, where)
    changes = {}
    if note:
        notes.append(note)
        changes["data.batch_size"] = (base["data"]["batch_size"], batch)
        base["data"]["batch_size"] = batch
    # against the checkpoint's own values: the command line a run started with (a torchrun restart
    # repeats it) is no change, even where a new world size changed the per-rank batch above
    asked = {k: (lookup(ck["config"], k), lookup(requested, k)) for k in explicit_keys(config_path, overrides)}
    asked = {k: v for k, v in sorted(asked.items()) if v[0] != v[1]}
    refused = {k: v for k, v in asked.items() if not _allowed(k, allow)}
    if refused:
        raise ResumeRefused(f"a resume keeps the run's config ({where}); the command line changes {describe(refused)}: "
                            "drop these overrides, name each change you mean with --allow-change KEY "
                            "(may change without it: " + ", ".join(ALLOWED_ON_RESUME) + "), or start a new run "
                            "with another --out")
    fixed = {k: v for k, v in asked.items() if _fixed(k)}
    if fixed:
        raise ResumeRefused(f"{describe(fixed)} cannot change on resume ({where}'s weights, optimizer state or epoch "
                            "plan are built on it): start a new run with another --out")
    for k, (_, new) in asked.items():
        assign(base, k, new)
    changes.update(asked)
    config_from_dict(base, f"{where}: ")      # the resumed config is checked as any config is
    return Resumed(base, changes, notes)


def restore(ck: dict, where: str, changes: dict, model, opt, sched, loader) -> None:
    """Load the run's state; the config's optimizer settings and schedule then apply from this step
    (identical to the saved ones unless a change was allowed, which thereby takes effect at once)."""
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as exc:
        what = f"the changed config ({describe(changes)})" if changes else "this config"
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]   # [1]: torch's first mismatch
        raise CheckpointError(f"{where}: its model does not fit {what}: {(lines[1:] or lines)[0][:200]}") from None
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    sched.base_lrs = [f["initial_lr"] for f in fresh]
    for g, f, lam in zip(opt.param_groups, fresh, sched.lr_lambdas):
        g.update(f)
        g["lr"] = f["initial_lr"] * lam(sched.last_epoch)      # LambdaLR's own formula
    loader.load_state_dict(ck["loader"])


def record_line(step: int, where: Path | str, resumed: Resumed, when: str) -> str:
    """The comment config.yaml gets for a resume (YAML readers skip it; people read it)."""
    what = describe(resumed.changes) if resumed.changes else "no change"
    return f"# resumed {when} at step {step} from {Path(where).name}: {what}\n"
