"""train/checkpoint.py: what it writes (every key, finite weights, atomically), what it refuses to
load (one line naming the file), what a resume picks, and the exported backbone."""
from __future__ import annotations

import pytest
import torch
import torchvision

from shards.errors import RunFailed
from tests.conftest import ROOT
from train.checkpoint import (KEYS, CheckpointError, build_payload, checkpoint_name, export_backbone, find_resume,
                              list_checkpoints, load_checkpoint, remove_temporaries, save_backbone, save_checkpoint)
from train.config import load_config, to_dict
from train.model import CSTPModel
from train.optim import build_optimizer

TINY = str(ROOT / "configs" / "tiny_cpu.yaml")


class _Loader:
    epoch = 1

    def state_dict(self):
        return {"epoch": 1, "delivered": 2, "seed": 0}


def payload(step=3):
    cfg = load_config(TINY, ["data.shards=x"])
    torch.manual_seed(0)
    model = CSTPModel(cfg)
    opt, sched = build_optimizer(model, cfg.optim, 8, 1, 10)
    return model, build_payload(step=step, model=model, optimizer=opt, scheduler=sched, loader=_Loader(), config=to_dict(cfg))


def test_payload_holds_the_contract_and_round_trips(tmp_path):
    model, p = payload()
    assert tuple(p) == KEYS and "scaler" not in p
    save_checkpoint(tmp_path / checkpoint_name(3), p)
    ck = load_checkpoint(tmp_path / "ckpt-00000003.pt")
    assert ck["step"] == 3 and ck["loader"]["delivered"] == 2 and ck["config"]["model"]["width"] == 0.125
    for k, v in model.state_dict().items():
        assert torch.equal(ck["model"][k], v), k
    assert not list(tmp_path.glob(".*"))


def test_non_finite_weights_are_never_written(tmp_path):
    model, p = payload(step=7)
    name = next(k for k, v in p["model"].items() if v.is_floating_point())
    p["model"][name] = p["model"][name].clone().fill_(float("nan"))
    with pytest.raises(RunFailed, match=rf"step 7: 1 model tensors are not finite \({name}\)"):
        save_checkpoint(tmp_path / "ckpt-00000007.pt", p)
    bb = dict(p["backbone"])
    key = next(iter(bb))
    bb[key] = torch.full_like(bb[key], float("inf"))
    with pytest.raises(RunFailed, match="backbone tensors are not finite"):
        save_backbone(tmp_path / "backbone.pt", bb, 7)
    assert list(tmp_path.iterdir()) == []


def test_loading_refuses_what_is_not_a_checkpoint_in_one_line_naming_it(tmp_path):
    _, p = payload()
    good = save_checkpoint(tmp_path / "good.pt", p)
    data = good.read_bytes()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format_version": 1, "config": {}, "backbone": Evil()}, tmp_path / "evil.pt")
    cases = {"empty.pt": "empty file", "cut.pt": "truncated", "text.pt": "not a readable checkpoint",
             "foreign.pt": "no format_version", "evil.pt": "not a readable checkpoint", "missing.pt": "no such"}
    for name, what in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / name)
        msg = str(info.value)
        assert what in msg and str(tmp_path / name) in msg and "\n" not in msg, msg


def test_resume_takes_the_newest_valid_checkpoint_and_names_each_one_skipped(tmp_path):
    _, p = payload()
    for step in (2, 4, 6):
        save_checkpoint(tmp_path / checkpoint_name(step), {**p, "step": step})
    (tmp_path / "ckpt-00000006.pt").write_bytes(b"")
    data = (tmp_path / "ckpt-00000004.pt").read_bytes()
    (tmp_path / "ckpt-00000004.pt").write_bytes(data[:1000])
    skipped = []
    path, ck = find_resume(tmp_path, on_skip=skipped.append)
    assert path.name == "ckpt-00000002.pt" and ck["step"] == 2
    assert len(skipped) == 2 and "ckpt-00000006.pt" in skipped[0] and "ckpt-00000004.pt" in skipped[1]
    with pytest.warns(UserWarning) as warned:
        find_resume(tmp_path)
    assert ["ckpt-00000006.pt" in str(w.message) for w in warned] == [True, False]


def test_temporaries_of_a_killed_save_are_removed(tmp_path):
    _, p = payload()
    save_checkpoint(tmp_path / "ckpt-00000002.pt", p)
    left = tmp_path / ".ckpt-00000004.pt.tmp-0123abcd"
    left.write_bytes(b"half a checkpoint")
    assert remove_temporaries(tmp_path) == [left]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["ckpt-00000002.pt"]


def test_exported_torchvision_backbone_loads_into_torchvision():
    cfg = load_config(TINY, ["data.shards=x", "model.backbone=r2plus1d_18", "model.width=1.0"])
    torchvision.models.video.r2plus1d_18().load_state_dict(export_backbone(CSTPModel(cfg)))


class _FullDisk:
    """``open`` for train.checkpoint: the first ``room`` files write; later ones take a few kB and then
    fail as a full disk does (ENOSPC), after the temporary file exists."""

    def __init__(self, room: int):
        self.room, self.opened = room, []

    def __call__(self, path, mode="r", *a, **kw):
        import errno
        import io

        self.opened.append(path)
        if len(self.opened) <= self.room:
            return open(path, mode, *a, **kw)

        class Full(io.FileIO):
            written = 0

            def write(self, b):
                if self.written > 4096:
                    raise OSError(errno.ENOSPC, "No space left on device")
                self.written += len(b)
                return super().write(b)

        return Full(path, mode)


def test_a_full_disk_while_saving_names_the_file_and_keeps_the_earlier_checkpoints(tmp_path, monkeypatch):
    import train.checkpoint as ckpt_mod

    full = _FullDisk(room=1)
    monkeypatch.setattr(ckpt_mod, "open", full, raising=False)
    _, p = payload(step=1)
    save_checkpoint(tmp_path / checkpoint_name(1), p)
    p["step"] = 2
    with pytest.raises(RunFailed, match=rf"^cannot write {tmp_path / checkpoint_name(2)}: No space left on device "
                                        rf"\(errno 28\); the checkpoints written before it are kept$") as err:
        save_checkpoint(tmp_path / checkpoint_name(2), p)
    assert err.value.exit_code == 1
    assert full.opened[-1].name.startswith(".ckpt-00000002.pt.tmp-")          # it did fail mid-write
    assert sorted(f.name for f in tmp_path.iterdir()) == ["ckpt-00000001.pt"]   # no partial file, no temporary
    assert load_checkpoint(tmp_path / checkpoint_name(1))["step"] == 1
    with pytest.raises(RunFailed, match=rf"^cannot write {tmp_path / 'backbone.pt'}: No space left on device"):
        save_backbone(tmp_path / "backbone.pt", p["backbone"], 2)


def test_a_full_disk_stops_pretraining_with_one_line_and_exit_1(real_ucf_shards, tmp_path, monkeypatch, capsys):
    import train.checkpoint as ckpt_mod
    from tests.train.test_pretrain import losses, run

    monkeypatch.setattr(ckpt_mod, "open", _FullDisk(room=2), raising=False)
    out = tmp_path / "run"
    assert run(real_ucf_shards, out, "train.max_steps=5", "train.ckpt_every=1") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"pretrain: cannot write {out / checkpoint_name(3)}: No space left on device (errno 28); "
                       f"the checkpoints written before it are kept"), err[-3:]
    assert [p.name for p in list_checkpoints(out)] == [checkpoint_name(1), checkpoint_name(2)]
    assert not list(out.glob(".*tmp*")) and max(losses(out)) == 3
