"""preprocess.adapters on the datasets' full, real split files and the real clips."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from preprocess.adapters import DATASETS, load_listing
from preprocess.adapters.base import AnnotationError
from preprocess.plan import plan_shards
from tests.conftest import ANNOTATIONS, VIDEOS


def test_registry_names():
    assert sorted(DATASETS) == ["hmdb51", "kinetics400", "ucf101"]
    with pytest.raises(KeyError, match="known"):
        load_listing("ucf102", VIDEOS, ANNOTATIONS)


def test_ucf101_full_split_lists():
    L = load_listing("ucf101", VIDEOS / "ucf101/UCF-101", ANNOTATIONS / "ucf101")
    assert len(L.entries) == 13320 and len(L.classes) == 101 and L.splits == ["1", "2", "3"]
    assert L.classes[0] == "ApplyEyeMakeup" and L.classes[-1] == "YoYo"
    split = np.array([e.split for e in L.entries])
    # The official counts: 9537 / 3783 videos in split 1, every video in exactly one role per split.
    assert ((split[:, 0] == 1).sum(), (split[:, 0] == 2).sum()) == (9537, 3783)
    assert ((split[:, 1] == 1).sum(), (split[:, 2] == 2).sum()) == (9586, 3696)
    assert (split > 0).all()
    by_id = {e.video_id: e for e in L.entries}
    # listed as .avi, on disk as .mp4: matched by stem
    b = by_id["v_Basketball_g01_c02"]
    assert b.path.endswith("v_Basketball_g01_c02.mp4") and L.classes[b.label] == "Basketball" and b.split == [2, 1, 1]
    s = by_id["v_SoccerJuggling_g23_c01"]
    assert L.classes[s.label] == "SoccerJuggling" and s.split == [1, 1, 1]
    assert len(L.present) == 11 and len(L.missing) == 13309 and L.unlisted == []
    assert "13309 missing" in L.report()


def test_hmdb51_full_split_files():
    L = load_listing("hmdb51", VIDEOS / "hmdb51", ANNOTATIONS / "hmdb51")
    assert len(L.entries) == 6766 and len(L.classes) == 51
    assert L.classes == (ANNOTATIONS / "hmdb51/class_list.txt").read_text().split()
    split = np.array([e.split for e in L.entries])
    # 70/30: 70 train and 30 test clips per class and split
    assert (split[:, 0] == 1).sum() == 51 * 70 and (split[:, 0] == 2).sum() == 51 * 30
    by_id = {e.video_id: e for e in L.entries}
    assert by_id["RATRACE_wave_f_nm_np1_fr_goo_37"].split == [1, 2, 1]
    assert by_id["SchoolRulesHowTheyHelpUs_wave_f_nm_np1_ba_med_0"].split == [0, 0, 1]
    assert L.classes[by_id["TrumanShow_wave_f_nm_np1_fr_med_26"].label] == "wave"
    assert len(L.present) == 3


def test_kinetics400_val_and_test_csvs():
    L = load_listing("kinetics400", VIDEOS / "kinetics400", ANNOTATIONS / "kinetics400")
    assert len(L.classes) == 400
    val = [e for e in L.entries if e.split == [2]]
    test = [e for e in L.entries if e.split == [0]]
    assert len(val) == 19906 and all(e.label >= 0 for e in val)
    assert len(test) > 0 and all(e.label == -1 for e in test)
    seg = [e for e in L.present]
    assert len(seg) == 3 and {L.classes[e.label] for e in seg} == {"using segway"}
    assert {e.video_id for e in seg} >= {"R6llTwEh07w_000000_000010"}


def test_kinetics_matches_bare_youtube_ids_in_class_folders(tmp_path):
    d = tmp_path / "k400" / "using segway"
    d.mkdir(parents=True)
    shutil.copy(VIDEOS / "kinetics400/val/R6llTwEh07w_000000_000010.mp4", d / "R6llTwEh07w.mp4")
    (d / "not_in_any_csv.mp4").write_bytes(b"x")
    L = load_listing("kinetics400", tmp_path / "k400", ANNOTATIONS / "kinetics400")
    assert [e.video_id for e in L.present] == ["R6llTwEh07w_000000_000010"]
    assert [p.split("/")[-1] for p in L.unlisted] == ["not_in_any_csv.mp4"]


def test_malformed_annotations_name_file_and_line(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 A\r\n2 B\r\n")
    for s in (1, 2, 3):
        (tmp_path / f"trainlist0{s}.txt").write_text("A/v_A_1.avi 1\r\nC/v_C_1.avi 3\r\n")
        (tmp_path / f"testlist0{s}.txt").write_text("")
    with pytest.raises(AnnotationError, match=r"trainlist01.txt:2: class 'C'"):
        load_listing("ucf101", tmp_path, tmp_path)


def test_plan_is_deterministic_and_mixes_classes():
    L = load_listing("ucf101", VIDEOS / "ucf101/UCF-101", ANNOTATIONS / "ucf101")
    a = plan_shards(L, "ucf101", seed=0, videos_per_shard=4)
    b = plan_shards(L, "ucf101", seed=0, videos_per_shard=4)
    c = plan_shards(L, "ucf101", seed=1, videos_per_shard=4)
    assert a == b and a != c
    assert [len(s.videos) for s in a] == [4, 4, 3]
    assert [s.tar for s in a] == ["ucf101-000000.tar", "ucf101-000001.tar", "ucf101-000002.tar"]
    assert all(len({v.label for v in s.videos}) > 1 for s in a)
    by_size = plan_shards(L, "ucf101", shard_bytes=3_000_000)
    assert sum(len(s.videos) for s in by_size) == 11 and len(by_size) > 1


def test_written_lists_parse_back(tmp_path):
    from preprocess.adapters.ucf101 import write_lists

    (tmp_path / "videos" / "B").mkdir(parents=True)
    (tmp_path / "videos" / "B" / "v_B_1.mp4").write_bytes(b"x")
    write_lists(tmp_path / "lists", ["A", "B"], [("A", "v_A_1", [1, 2, 1]), ("B", "v_B_1", [2, 1, 1])])
    assert (tmp_path / "lists" / "trainlist01.txt").read_bytes() == b"A/v_A_1.avi 1\r\n"
    L = load_listing("ucf101", tmp_path / "videos", tmp_path / "lists")
    assert [(e.video_id, e.label, e.split) for e in L.entries] == [("v_A_1", 0, [1, 2, 1]), ("v_B_1", 1, [2, 1, 1])]
    assert [e.video_id for e in L.present] == ["v_B_1"]
