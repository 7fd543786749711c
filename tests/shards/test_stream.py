"""shards.stream: the streaming clip-pair loader on shards of videos whose frames show their number."""
from __future__ import annotations

import io
import json
import shutil
import tarfile

import numpy as np
import pytest
import torch

from preprocess.build_shards import main as build
from shards.format import SPLIT_TRAIN
from shards.index import read_index
from shards.sampling import PairConfig, temporal_shift
from shards.stream import ClipPairStream, PairLoader, ShardDataError, StreamConfig
from tests.helpers import copied_video_tar
from tests.servers import plain_http_server
from tests.synthetic import flat_index, make_flat_video, write_ucf_layout

LENGTHS = {"Red": [40, 150, 90, 60], "Green": [120, 45, 75, 100], "Blue": [130, 55, 66, 12]}


def cfg(shards, **kw):
    kw.setdefault("batch_size", 2)
    kw.setdefault("shuffle_buffer", 4)
    kw.setdefault("out_size", (64, 64))
    return StreamConfig(str(shards), **kw)


def collect(ds):
    return list(iter(ds))


def test_batch_contract_and_true_frame_indices(flat_shards):
    ds = ClipPairStream(cfg(flat_shards))
    batches = collect(ds)
    assert len(batches) == ds.batches_per_epoch() == 5      # 11 usable videos, batches of 2
    assert ds.too_short == ["v_Blue_g04_c01"]                # 12 frames < 16 (one clip): left out, and said so
    pc = PairConfig()
    for b in batches:
        assert b["clip1"].dtype == torch.uint8 and b["clip1"].shape == (2, 3, 16, 64, 64)
        assert b["clip2"].shape == b["clip1"].shape
        for k in ("rate", "rot1", "rot2", "overlap_s", "overlap_t", "label"):
            assert b[k].shape == (2,) and b[k].dtype == torch.long
        for i in range(2):
            for clip, idx in (("clip1", "idx1"), ("clip2", "idx2")):
                frames = b[clip][i].permute(1, 2, 3, 0).numpy()          # T, H, W, C
                assert [flat_index(f) for f in frames] == b[idx][i].tolist()
            # both clips at the rate of the label, overlapping as labelled
            r = pc.rates[b["rate"][i]]
            assert set(np.diff(b["idx1"][i].numpy())) == {r}
            shift = abs(int(b["idx2"][i][0]) - int(b["idx1"][i][0]))
            assert shift == temporal_shift(pc.temporal_overlaps[b["overlap_t"][i]], 16, r)


def build_set(root, per_shard):
    """Shards of the flat videos under ``root`` (made on first use), ``per_shard`` videos each."""
    out = root / f"shards-{per_shard}"
    if not out.exists():
        classes = {c: [(f"v_{c}_g0{j + 1}_c01", n) for j, n in enumerate(ns)] for c, ns in LENGTHS.items()}
        videos, lists = write_ucf_layout(root, classes, test_every=4)
        for c, items in classes.items():
            for name, n in items:
                if not (videos / c / f"{name}.avi").exists():
                    make_flat_video(videos / c / f"{name}.avi", n)
        assert build(["--size", "128x171", "--dataset", "ucf101", "--videos", str(videos), "--annotations", str(lists), "--out", str(out),
                      "--videos-per-shard", str(per_shard), "--workers", "1", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def flat_shards(tmp_path_factory):
    """4 shards of 3 flat videos (self-contained: tests/shards/test_random_access.py imports it)."""
    return build_set(tmp_path_factory.mktemp("flat"), 3)


@pytest.fixture(scope="module")
def flat_videos(flat_shards):
    return flat_shards.parent


def epoch_of(c, world, workers, epoch):
    """{rank: batches} of one epoch, each rank its own PairLoader (as under torchrun)."""
    out = {}
    for rank in range(world):
        loader = PairLoader(c, num_workers=workers, rank=rank, world_size=world)
        loader.set_epoch(epoch)
        out[rank] = list(loader)
        assert len(out[rank]) == len(loader)
        assert loader.epoch_summary()["videos_delivered"] == len(out[rank]) * c.batch_size
    return out


@pytest.mark.parametrize("per_shard", [6, 1])          # 2 shards (fewer than workers) and 12 (more)
@pytest.mark.parametrize("world,workers", [(1, 1), (1, 4), (2, 2), (3, 2)])
def test_every_video_is_delivered_once_per_epoch(flat_videos, per_shard, world, workers):
    c = cfg(build_set(flat_videos, per_shard), batch_size=2)
    usable = 11                                  # 12 videos, one too short
    global_batch = 2 * world
    seen_over_epochs = set()
    for epoch in (0, 1):
        got = epoch_of(c, world, workers, epoch)
        assert len({len(b) for b in got.values()}) == 1          # every rank the same number of batches
        ids = [v for bs in got.values() for b in bs for v in b["video_id"]]
        assert len(ids) == len(set(ids))                         # no video twice in an epoch
        assert len(ids) == usable // global_batch * global_batch > usable - global_batch
        seen_over_epochs |= set(ids)
    assert len(seen_over_epochs) == usable        # what one epoch could not fit opens the next


def test_streamed_shards_are_dealt_by_video_too(flat_videos):
    with plain_http_server(build_set(flat_videos, 6)) as url:      # 2 shards, 4 workers in all
        got = epoch_of(cfg(url, batch_size=2), 2, 2, 0)
    ids = [v for bs in got.values() for b in bs for v in b["video_id"]]
    assert len(ids) == len(set(ids)) == 8 and {len(b) for b in got.values()} == {2}


def test_a_set_smaller_than_one_global_batch_names_the_numbers_and_keys(flat_shards):
    with pytest.raises(ValueError, match=r"11 usable videos are fewer than one global batch of 12 "
                                         r"\(data.batch_size 4 x world size 3\): lower data.batch_size"):
        ClipPairStream(cfg(flat_shards, batch_size=4), world_size=3)


def test_workers_persist_across_epochs_and_follow_the_epoch(flat_shards):
    c = cfg(flat_shards, batch_size=2)
    loader = PairLoader(c, num_workers=2)
    epochs = [list(loader) for _ in range(3)]
    pids = {w.pid for w in loader._loader._iterator._workers}
    assert len(pids) == 2
    loader.set_epoch(3)
    list(loader)
    assert {w.pid for w in loader._loader._iterator._workers} == pids
    fresh = PairLoader(c, num_workers=2)
    fresh.set_epoch(2)
    again = list(fresh)
    assert [b["video_id"] for b in again] == [b["video_id"] for b in epochs[2]] != [b["video_id"] for b in epochs[1]]
    assert all(torch.equal(x["clip1"], y["clip1"]) for x, y in zip(again, epochs[2]))


def test_deterministic_for_seed_and_epoch(flat_shards):
    a = collect(ClipPairStream(cfg(flat_shards)))
    b = collect(ClipPairStream(cfg(flat_shards)))
    assert [x["video_id"] for x in a] == [x["video_id"] for x in b]
    assert all(torch.equal(x["clip2"], y["clip2"]) for x, y in zip(a, b))
    ds = ClipPairStream(cfg(flat_shards))
    ds.set_epoch(1)
    c = collect(ds)
    assert [x["video_id"] for x in c] != [x["video_id"] for x in a]
    d = collect(ClipPairStream(cfg(flat_shards, seed=5)))
    assert [x["video_id"] for x in d] != [x["video_id"] for x in a]


@pytest.mark.parametrize("world,workers", [(1, 0), (1, 2), (2, 3)])
def test_resume_mid_epoch_gives_the_uninterrupted_batches(flat_shards, world, workers):
    c = cfg(flat_shards, batch_size=1)
    rank = world - 1
    full = PairLoader(c, num_workers=workers, rank=rank, world_size=world)
    whole = [b for b in full] + [b for b in full]          # epochs 0 and 1
    assert full.state_dict() == {"epoch": 2, "delivered": 0, "seed": 0}
    first = PairLoader(c, num_workers=workers, rank=rank, world_size=world)
    head = []
    for b in first:
        head.append(b)
        if len(head) == 3:
            break
    state = first.state_dict()
    assert state == {"epoch": 0, "delivered": 3, "seed": 0}
    resumed = PairLoader(c, num_workers=workers, rank=rank, world_size=world)
    resumed.load_state_dict(state)
    tail = [b for b in resumed] + [b for b in resumed]
    # the interrupted loader itself (its workers still up) carries on where it stopped, too
    carried_on = head + [b for b in first] + [b for b in first]
    for got in (head + tail, carried_on):
        assert [b["video_id"] for b in got] == [b["video_id"] for b in whole]
        assert all(torch.equal(x["clip1"], y["clip1"]) and torch.equal(x["idx2"], y["idx2"]) for x, y in zip(got, whole))


def test_split_filter(flat_shards):
    index = read_index(flat_shards)
    ds = ClipPairStream(cfg(flat_shards, split="1", role=SPLIT_TRAIN, batch_size=1))
    ids = {v for b in ds for v in b["video_id"]}
    train = {str(index.video_id[r]) for r in index.select("1", SPLIT_TRAIN)} - {"v_Blue_g04_c01"}
    assert ids == train and len(ids) < 11
    with pytest.raises(KeyError, match="split '7'"):
        ClipPairStream(cfg(flat_shards, split="7"))


def test_http_source_streams_the_same_pairs(flat_shards):
    """Streamed shards come in another order (whole shards, front to back), with the same pair per video."""
    def by_video(batches):
        return {b["video_id"][0]: b for b in batches}

    local = by_video(collect(ClipPairStream(cfg(flat_shards, batch_size=1))))
    with plain_http_server(flat_shards) as url:
        remote = by_video(collect(ClipPairStream(cfg(url, batch_size=1))))
    assert local.keys() == remote.keys() and len(local) == 11
    assert all(torch.equal(local[v]["clip1"], remote[v]["clip1"]) and torch.equal(local[v]["idx2"], remote[v]["idx2"])
               for v in local)


def test_missing_remote_shard_is_a_clear_error(flat_shards, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(flat_shards, site)
    (site / "ucf101-000002.tar").unlink()
    with plain_http_server(site) as url:
        ds = ClipPairStream(cfg(url))
        with pytest.raises(ShardDataError, match=r"shard not found \(HTTP 404\): http://127.0.0.1:\d+/ucf101-000002.tar"):
            collect(ds)


def test_truncated_shard_names_shard_and_video_or_is_skipped_and_counted(flat_shards, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(flat_shards, bad)
    t = bad / "ucf101-000001.tar"
    t.write_bytes(t.read_bytes()[: int(t.stat().st_size * 0.7)])
    with pytest.raises(ShardDataError, match=r"ucf101-000001.tar.*video v_\w+"):
        collect(ClipPairStream(cfg(bad, batch_size=1)))
    ds = ClipPairStream(cfg(bad, batch_size=1, skip_errors=True, max_skip_fraction=0.5))
    got = collect(ds)
    assert len(got) == ds.batches_per_epoch()
    assert len(ds.errors) >= 1 and "ucf101-000001.tar" in ds.errors[0]
    assert ds.skipped() == len(ds.errors) >= 1
    with pytest.raises(ShardDataError, match=r"rank 0 worker 0 in epoch 0: 1 of its 11 samples skipped, more than "
                                             r"data.max_skip_fraction 0.01; first: shard .*ucf101-000001.tar"):
        collect(ClipPairStream(cfg(bad, batch_size=1, skip_errors=True)))


def test_a_sample_the_index_does_not_know_is_an_error_when_streaming(flat_shards, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(flat_shards, bad)
    meta = json.dumps({"video_id": "v_Intruder"}).encode()
    with tarfile.open(bad / "ucf101-000000.tar", "a") as tf:
        ti = tarfile.TarInfo("v_Intruder.json")
        ti.size = len(meta)
        tf.addfile(ti, io.BytesIO(meta))
    with plain_http_server(bad) as url:
        with pytest.raises(ShardDataError, match="ucf101-000000.tar: sample 'v_Intruder' has no row in the index"):
            collect(ClipPairStream(cfg(url, batch_size=1)))
    # A local shard is read by the index's offsets: the stray member is never touched; verify flags it.
    assert len(collect(ClipPairStream(cfg(bad, batch_size=1)))) == 11
    from shards.verify import verify
    problems, _ = verify(bad, progress=False)
    assert problems == ["ucf101-000000.tar: member 'v_Intruder.json' is not in the index"]


def test_a_local_frame_that_disagrees_with_the_index_names_shard_and_video(flat_shards, tmp_path):
    bad = tmp_path / "bad"
    index, row, tar, data = copied_video_tar(flat_shards, bad, 0)
    for off in index.frames_of(row)[0]:
        data[off - 512: off - 512 + 5] = b"wrong"                 # each header now names another member
    tar.write_bytes(bytes(data))
    with pytest.raises(ShardDataError, match=rf"{tar.name}: video {index.video_id[row]}: frame \d+: no valid tar header at byte \d+"):
        collect(ClipPairStream(cfg(bad, batch_size=1)))


def test_member_names_that_leave_the_folder_are_never_written(flat_shards, tmp_path, monkeypatch):
    bad = tmp_path / "shards"
    shutil.copytree(flat_shards, bad)
    payload = b"\xff\xd8 not really a jpeg"
    with tarfile.open(bad / "ucf101-000000.tar", "a") as tf:
        for name in ("../escaped.00000.jpg", "/tmp/absolute_escape.00000.jpg", "../../up.json"):
            ti = tarfile.TarInfo(name)
            ti.size = len(payload)
            tf.addfile(ti, io.BytesIO(payload))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    before = set(p.name for p in tmp_path.iterdir())
    with plain_http_server(bad) as url:
        ds = ClipPairStream(cfg(url, batch_size=1, skip_errors=True))
        collect(ds)
    collect(ClipPairStream(cfg(bad, batch_size=1)))
    assert set(p.name for p in tmp_path.iterdir()) == before and not list(work.iterdir())
    assert not (tmp_path / "escaped.00000.jpg").exists() and not __import__("os").path.exists("/tmp/absolute_escape.00000.jpg")
    assert any("has no row in the index" in e and "../escaped" in e for e in ds.errors)


@pytest.mark.parametrize("ring", [2, None])
def test_lent_batches_are_the_copies_and_hold_until_the_next_is_asked_for(flat_shards, monkeypatch, ring):
    """lend_batches hands out the workers' shared-memory batches themselves. While the consumer
    works on one, the workers fill every other free slot: the lent batch stays whole, equal to the
    copy. A ring of 2 slots is shorter than the requests out to a worker (its prefetch and the one
    it is asked for next), so a worker reaches the slot still in use and must wait for it."""
    import time

    import shards.loader

    if ring is not None:      # forked workers inherit the module's RING
        monkeypatch.setattr(shards.loader, "RING", ring)
    c = cfg(flat_shards, batch_size=1)                     # 11 batches: each worker's ring wraps
    copied = list(PairLoader(c, num_workers=2, pin_memory=False))
    loader = PairLoader(c, num_workers=2, pin_memory=False, lend_batches=True)
    for epoch in range(2):                                 # the second epoch starts with the rings in use
        loader.set_epoch(0)
        n = 0
        for n, (lent, copy) in enumerate(zip(loader, copied), 1):
            time.sleep(0.05)
            slots = {b["clip1"].data_ptr() for ring in loader.dataset.ring for b in ring}
            assert lent["clip1"].data_ptr() in slots       # no copy
            assert lent["video_id"] == copy["video_id"]
            assert all(torch.equal(lent[k], copy[k]) for k in copy if isinstance(copy[k], torch.Tensor))
        assert n == len(copied) == 11
