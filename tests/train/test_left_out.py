"""Pretraining's start summary names the videos of the split it leaves out (too short for a clip pair)."""
from __future__ import annotations

import json

from tests.shards.test_stream import flat_shards  # noqa: F401  (module-scoped fixture)
from tests.train.test_pretrain import run
from train.run_start import left_out_phrase


def test_left_out_phrase_counts_and_names_the_first_few():
    assert left_out_phrase([], 16) == ""
    assert left_out_phrase(["a", "b"], 16) == " (2 left out, shorter than the 16 frames a clip pair needs: a, b)"
    assert left_out_phrase(list("abcde"), 16) == " (5 left out, shorter than the 16 frames a clip pair needs: a, b, c, ...)"


def test_the_start_summary_names_the_videos_too_short_for_a_clip_pair(flat_shards, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    assert run(flat_shards, out, "train.max_steps=1", "data.clip_len=16") == 0
    stdout = capsys.readouterr().out
    # 12 flat videos; v_Blue_g04_c01 has 12 frames, fewer than a 16-frame clip (tests/shards/test_stream.py)
    assert ("12 videos (1 left out, shorter than the 16 frames a clip pair needs: v_Blue_g04_c01), "
            "10 pairs per epoch") in stdout, stdout
    start = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["videos_too_short"] == 1
