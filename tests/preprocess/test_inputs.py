"""What a build says about inputs it cannot use as they are: short videos, a video in both the train
and the test list, names in another Unicode form, tiny frames, rotated clips; a full disk's temporaries."""
from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from preprocess.adapters import load_listing
from preprocess.build_shards import main as build
from preprocess.build_summary import PAIR_FRAMES, short_videos
from preprocess.probe import ProbeError, parse_banner
from preprocess.transcode import TranscodeError, TranscodeSettings, transcode
from shards.format import SPLIT_TEST, SPLIT_TRAIN, STATUS_FAILED, STATUS_OK, TEMP_MARK
from shards.index import read_index
from tests.synthetic import make_square_video, make_video

CAFE_NFC = unicodedata.normalize("NFC", "v_Alpha_caf\u00e9_c01")


def _ucf(root, videos: dict[str, int], train: list[str], test: list[str]):
    """A one-class UCF-101 layout; ``videos`` maps a file stem to its frame count."""
    lists = root / "lists"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 Alpha\n")
    for k in (1, 2, 3):
        (lists / f"trainlist0{k}.txt").write_text("".join(f"Alpha/{n}.avi 1\n" for n in train))
        (lists / f"testlist0{k}.txt").write_text("".join(f"Alpha/{n}.avi\n" for n in test))
    for name, n in videos.items():
        make_video(root / "videos" / "Alpha" / f"{name}.avi", n, size=(48, 64))
    return root / "videos", lists


def test_a_name_in_nfd_on_disk_matches_its_nfc_listing(tmp_path):
    nfd = unicodedata.normalize("NFD", CAFE_NFC)
    assert nfd != CAFE_NFC
    videos, lists = _ucf(tmp_path, {nfd: 20}, train=[CAFE_NFC], test=[])
    listing = load_listing("ucf101", videos, lists)
    (entry,) = listing.entries
    assert entry.video_id == CAFE_NFC and entry.path.endswith(nfd + ".avi") and listing.unlisted == []


def test_a_video_in_both_the_train_and_the_test_list_is_kept_as_test_and_named(tmp_path):
    videos, lists = _ucf(tmp_path, {"v_a": 20, "v_b": 20}, train=["v_a", "v_b"], test=["v_b"])
    listing = load_listing("ucf101", videos, lists)
    split = {e.video_id: e.split for e in listing.entries}
    assert split == {"v_a": [SPLIT_TRAIN] * 3, "v_b": [SPLIT_TEST] * 3}
    assert listing.both_roles == [("v_b", "1"), ("v_b", "2"), ("v_b", "3")]
    assert "warning: 3 videos are listed as both train and test in one split; each is kept as test only: " \
           "v_b (split 1)" in listing.report()


def test_short_videos_are_counted_against_the_clip_and_the_pair():
    ids = np.array(["a", "b", "c", "d", "e"])
    status = np.array([STATUS_OK, STATUS_OK, STATUS_OK, STATUS_FAILED, STATUS_OK])
    n = np.array([10, 12, 100, 0, PAIR_FRAMES])
    line = short_videos(ids, status, n)
    # a default pair needs one clip at rate 1 (the authors' rule), so the two counts are one
    assert PAIR_FRAMES == 16 and line.startswith("short videos: 2 have fewer frames than the paper's 16-frame clip; "
                                                 "training at the defaults leaves those out")
    assert line.endswith("e.g. a (10), b (12)")


def test_the_build_summary_names_short_videos_and_double_listings(tmp_path, capsys):
    videos, lists = _ucf(tmp_path, {"v_short": 12, "v_mid": 14, "v_long": 40}, train=["v_short", "v_mid", "v_long"],
                         test=["v_long"])
    out = tmp_path / "out"
    assert build(["--dataset", "ucf101", "--videos", str(videos), "--annotations", str(lists), "--out", str(out),
                  "--size", "32x48", "--workers", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "short videos: 2 have fewer frames than the paper's 16-frame clip; training at the defaults" in text
    assert "e.g. v_short (12), v_mid (14)" in text
    assert "warning: 3 videos are listed as both train and test in one split" in text.split("short videos")[1]
    assert (read_index(out).split[read_index(out).row_of()["v_long"]] == SPLIT_TEST).all()


def test_frame_sizes_of_one_digit_are_read_and_tiny_frames_get_their_size_as_reason(tmp_path):
    banner = ("Input #0, avi, from 'x.avi':\n  Duration: 00:00:01.00, start: 0.0, bitrate: 10 kb/s\n"
              "  Stream #0:0: Video: mpeg4 (Simple Profile) (FMP4 / 0x34504D46), yuv420p, {}, 25 fps, 25 tbr\n")
    with pytest.raises(ProbeError, match=r"frame size 8x6 is too small \(a side under 16 px\)"):
        parse_banner(banner.format("8x6 [SAR 1:1 DAR 4:3]"))
    assert (parse_banner(banner.format("320x240")).width, parse_banner(banner.format("320x240")).height) == (320, 240)
    tiny = make_video(tmp_path / "tiny.avi", 10, size=(8, 8))
    with pytest.raises(TranscodeError, match="frame size 8x8 is too small"):
        transcode(str(tiny), TranscodeSettings(height=32, width=48))


def _white_box(jpeg: bytes) -> tuple[int, int]:
    """Height and width of the white square in a decoded frame."""
    white = simplejpeg.decode_jpeg(jpeg).mean(axis=2) > 128
    rows, cols = np.flatnonzero(white.any(axis=1)), np.flatnonzero(white.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


@pytest.mark.parametrize("size,rotation", [((180, 320), 90), ((180, 320), -90), ((320, 180), None)])
def test_a_rotated_or_portrait_clip_keeps_its_aspect(tmp_path, size, rotation):
    # Displayed as a 180x320 (w x h) portrait frame either way; before, it was stretched ~2.4x wide.
    clip = make_square_video(tmp_path / "p.mp4", size=size, side=60, rotation=rotation)
    r = transcode(str(clip), TranscodeSettings(height=128, width=171))
    h, w = _white_box(r.frames[0])
    assert simplejpeg.decode_jpeg(r.frames[0]).shape == (128, 171, 3)
    assert abs(h / w - 1) < 0.1, (h, w)
    assert w == pytest.approx(60 * 171 / 180, abs=3)     # scaled to cover the width, then centre-cropped


def test_a_landscape_clip_is_resized_to_the_output_as_before(tmp_path):
    clip = make_square_video(tmp_path / "l.mp4", size=(180, 320), side=60)
    h, w = _white_box(transcode(str(clip), TranscodeSettings(height=128, width=171)).frames[0])
    assert (h, w) == (pytest.approx(60 * 128 / 180, abs=2), pytest.approx(60 * 171 / 320, abs=2))


def test_a_full_disk_in_a_shard_task_leaves_no_temporary_behind(tmp_path, monkeypatch, capsys):
    """ShardWriter.abort can fail too on a full disk; the build removes what the failed task left."""
    from distributed import Client

    import preprocess.build_shards as bs
    import preprocess.shard_task as shard_task

    def build_shard(spec, settings, out, *args, **kw):
        (Path(out) / f".{spec.tar}{TEMP_MARK}deadbeef").write_bytes(b"half a tar")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shard_task, "build_shard", build_shard)
    monkeypatch.setattr(bs, "connect", lambda args, in_process=False: (
        Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0"), None))
    videos, lists = _ucf(tmp_path, {"v_a": 20}, train=["v_a"], test=[])
    out = tmp_path / "out"
    assert bs.main(["--dataset", "ucf101", "--videos", str(videos), "--annotations", str(lists), "--out", str(out),
                    "--retries", "0", "--no-progress"]) == 1
    assert "(1 temporary files removed)" in capsys.readouterr().err
    assert not [p for p in out.iterdir() if TEMP_MARK in p.name]


def test_kinetics_a_clip_in_the_train_and_the_val_csv_is_kept_as_val_and_named(tmp_path):
    (tmp_path / "videos").mkdir()
    ann = tmp_path / "ann"
    ann.mkdir()
    head = "label,youtube_id,time_start,time_end,split\n"
    (ann / "train.csv").write_text(head + "abseiling,aaaaaaaaaaa,0,10,train\nabseiling,bbbbbbbbbbb,5,15,train\n")
    (ann / "val.csv").write_text(head + "abseiling,bbbbbbbbbbb,5,15,val\n")
    listing = load_listing("kinetics400", tmp_path / "videos", ann)
    assert {e.video_id: e.split for e in listing.entries} == {"aaaaaaaaaaa_000000_000010": [SPLIT_TRAIN],
                                                              "bbbbbbbbbbb_000005_000015": [SPLIT_TEST]}
    assert "listed as both train and val in one split; each is kept as val only: bbbbbbbbbbb_000005_000015 " \
           "(split 1)" in listing.report()
