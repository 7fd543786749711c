"""shards.epoch_plan: the pure functions that deal an epoch's videos to ranks and workers."""
from __future__ import annotations

import numpy as np
import pytest

from shards.epoch_plan import (EpochOrder, SetTooSmall, batches_done, batches_per_rank, role_of, shuffled_order,
                               worker_quotas, worker_rows)

ROWS = np.arange(100, 137)                   # 37 videos in tar order
SHARD = np.repeat([0, 1, 2, 3, 4], [9, 9, 9, 9, 1])


def test_round_robin_bookkeeping_matches_a_dataloader():
    for batches, k in ((7, 3), (6, 2), (2, 4), (9, 1)):
        quotas = worker_quotas(batches, k)
        assert sum(quotas) == batches and max(quotas) - min(quotas) <= 1
        order = [i % k for i in range(batches)]          # the rank's i-th batch is worker i % K's
        for delivered in range(batches + 1):
            done = [order[:delivered].count(w) for w in range(k)]
            assert [batches_done(w, k, delivered) for w in range(k)] == done
            # a new DataLoader asks slot 0 first: it must play the worker whose batch is due next
            if delivered < batches:
                assert role_of(0, k, delivered) == order[delivered]


def test_every_epoch_delivers_distinct_videos_and_carries_the_rest():
    order = EpochOrder(ROWS, SHARD, seed=3, per_epoch=32, whole_shards=False)
    prev = None
    for epoch in range(6):
        got = order.delivered(epoch)
        assert len(got) == len(set(got.tolist())) == 32 and set(got.tolist()) <= set(ROWS.tolist())
        if prev is not None:
            carried = sorted(set(ROWS.tolist()) - set(prev.tolist()))
            assert sorted(got[:5].tolist()) == carried            # last epoch's 5 left-overs open this one
        prev = got
    # computed afresh (a resumed run) it is the same
    assert np.array_equal(EpochOrder(ROWS, SHARD, 3, 32, False).delivered(5), prev)


def test_streamed_order_keeps_whole_shards_in_tar_order():
    got = shuffled_order(ROWS, SHARD, seed=1, epoch=0, whole_shards=True)
    shards = SHARD[got - 100]
    assert sorted(got.tolist()) == ROWS.tolist()
    assert np.count_nonzero(np.diff(shards)) == 4                  # each shard one contiguous run
    for s in range(5):
        run = got[shards == s]
        assert np.all(np.diff(run) > 0)
    assert not np.array_equal(got, shuffled_order(ROWS, SHARD, seed=1, epoch=1, whole_shards=True))


def test_ranks_and_workers_take_disjoint_contiguous_runs():
    order = EpochOrder(ROWS, SHARD, seed=0, per_epoch=36, whole_shards=True).delivered(0)
    batches = batches_per_rank(37, 3, 4)                              # 3 batches of 3 per rank
    parts = [worker_rows(order, r, w, 3, 2, batches).tolist() for r in range(4) for w in range(2)]
    assert sum(parts, []) == order.tolist()
    assert [len(p) for p in parts] == [6, 3] * 4


def test_a_set_smaller_than_one_global_batch_is_refused():
    with pytest.raises(SetTooSmall, match=r"7 usable videos are fewer than one global batch of 8 \(data.batch_size 4 x world size 2\)"):
        batches_per_rank(7, 4, 2)


def _index(split: np.ndarray, n_frames: np.ndarray, names: list[str]):
    from shards.index import ShardIndex

    v = len(n_frames)
    zeros = np.zeros(v)
    return ShardIndex(attrs={"splits": names}, video_id=np.array([f"v{i}" for i in range(v)]), label=zeros, split=split,
                      status=np.zeros(v, np.int8), error=zeros, shard=zeros, n_frames=n_frames, source_fps=zeros,
                      duration=zeros, frame_ptr=np.zeros(v + 1), frame_offset=zeros, frame_size=zeros)


def test_the_too_small_message_names_the_split_its_roles_and_the_splits_that_would_work():
    from shards.epoch_plan import split_advice
    from shards.format import SPLIT_TEST, SPLIT_TRAIN

    # as the UCF-101 sample: split 1 puts 2 of 11 videos in train, split 2 all 11, split 3 seven;
    # video 9 is too short for a clip pair (30 frames wanted), so it counts nowhere
    split = np.full((11, 3), SPLIT_TRAIN, np.int8)
    split[2:, 0] = SPLIT_TEST
    split[7:, 2] = SPLIT_TEST
    n_frames = np.full(11, 100)
    n_frames[9] = 20
    index = _index(split, n_frames, ["1", "2", "3"])
    advice = split_advice(index, "1", SPLIT_TRAIN, 30)
    with pytest.raises(SetTooSmall) as exc:
        batches_per_rank(2, 4, 2, "S: ", advice)
    msg = str(exc.value)
    assert msg.startswith("S: data.split=1 (2 train, 8 test usable videos; training takes the train part): 2 usable "
                          "videos are fewer than one global batch of 8 (data.batch_size 4 x world size 2)"), msg
    assert "or choose data.split=2 (10 train videos) or data.split=all (10 videos)" in msg
    assert "data.split=3" not in msg                  # 7 train videos: one short of a global batch
    with pytest.raises(SetTooSmall, match=r"no data.split has enough \(10 usable videos in the whole set\)"):
        batches_per_rank(2, 11, 1, "", advice)
    # a set with no train rows at all (the Kinetics sample): only data.split=all can work
    kinetics = _index(np.full((3, 1), SPLIT_TEST, np.int8), np.full(3, 100), ["1"])
    with pytest.raises(SetTooSmall, match=r"data.split=1 \(0 train, 3 test usable videos.*or choose data.split=all \(3 videos\)"):
        batches_per_rank(0, 2, 1, "", split_advice(kinetics, "1", SPLIT_TRAIN, 30))
    with pytest.raises(SetTooSmall, match=r"^data.split=all \(every video; 3 usable\): 3 usable videos are fewer"):
        batches_per_rank(3, 4, 1, "", split_advice(kinetics, None, SPLIT_TRAIN, 30))
