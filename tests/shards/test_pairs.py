"""shards.pairs: a batch carries each pair's whole geometry (every PairSample field under its own
name), which the pretext tasks (train.pretext) draw their labels from."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from shards.pairs import fill, geometry, needed_frames, new_batch
from shards.sampling import PairConfig, PairSample, sample_pair


def test_a_filled_batch_holds_every_field_of_each_pair():
    cfg = PairConfig(clip_len=8, rates=(1, 2))
    rng = np.random.default_rng(5)
    pairs = [sample_pair(60, 48, 64, cfg, rng) for _ in range(3)]
    batch = new_batch(3, 8, (16, 16))
    for i, p in enumerate(pairs):
        needed = needed_frames(p)
        fill(batch, i, p, needed, np.zeros((len(needed), 48, 64, 3), np.uint8), 7 + i, f"v{i}", (16, 16))
    expect = geometry(pairs)
    assert set(expect) == {f.name for f in dataclasses.fields(PairSample)}
    for k, v in expect.items():
        assert torch.equal(batch[k], v), k
    assert batch["box1"][1].tolist() == list(pairs[1].box1) and batch["idx2"][2].tolist() == pairs[2].idx2.tolist()
    assert batch["overlap_t"].tolist() == [p.overlap_t for p in pairs]
    assert batch["label"].tolist() == [7, 8, 9] and batch["video_id"] == ["v0", "v1", "v2"]
