"""preprocess/build_shards.py on a LocalCluster: shards, index, failures, re-runs, verify."""
from __future__ import annotations

import json
import shutil
import tarfile

import numpy as np
import pytest
import simplejpeg

from preprocess.build_shards import main as build
from shards.format import STATUS_FAILED, STATUS_MISSING, STATUS_OK
from shards.index import read_index
from shards.verify import main as verify_main
from tests.conftest import ANNOTATIONS, BAD, SYNTH_CLASSES, VIDEOS
from tests.helpers import assert_same_index
from tests.synthetic import read_index as frame_number


def _args(videos, lists, out, *extra):
    return ["--size", "128x171", "--dataset", "ucf101", "--videos", str(videos), "--annotations", str(lists), "--out", str(out),
            "--videos-per-shard", "3", "--workers", "2", "--size", "64x96", "--no-progress", *extra]


@pytest.fixture(scope="module")
def built(synthetic_ucf, tmp_path_factory):
    videos, lists = synthetic_ucf
    out = tmp_path_factory.mktemp("built") / "shards"
    assert build(_args(videos, lists, out)) == 0
    return videos, lists, out


def test_index_holds_every_listed_video_with_its_status(built, capsys):
    _, _, out = built
    idx = read_index(out)
    assert idx.attrs["dataset"] == "ucf101" and (idx.attrs["height"], idx.attrs["width"]) == (64, 96)
    assert idx.classes == ["Alpha", "Beta", "Gamma"] and idx.attrs["splits"] == ["1", "2", "3"]
    ids = [str(v) for v in idx.video_id]
    assert sorted(ids) == sorted(n for c in SYNTH_CLASSES for n, _ in SYNTH_CLASSES[c])
    row = idx.row_of()
    for name, reason in BAD.items():
        r = row[name]
        assert idx.status[r] == STATUS_FAILED and reason in str(idx.error[r]) and idx.shard[r] == -1
    assert idx.status[row["v_Gamma_not_on_disk"]] == STATUS_MISSING
    ok = [n for c in SYNTH_CLASSES for n, f in SYNTH_CLASSES[c] if f]
    for name in ok:
        r = row[name]
        assert idx.status[r] == STATUS_OK and idx.error[r] == ""
        # 25 fps in, 25 fps out: every frame, in order
        assert idx.n_frames[r] == dict(x for c in SYNTH_CLASSES.values() for x in c)[name]
        assert idx.duration[r] == pytest.approx(idx.n_frames[r] / 25, abs=0.05)
    assert idx.frame_ptr[-1] == idx.n_frames.sum() == len(idx.frame_offset)
    assert len(idx.shards) == 5  # 15 files on disk (11 good, 4 bad), 3 per shard


def test_frames_at_index_offsets_are_the_videos_frames_in_order(built):
    _, _, out = built
    idx = read_index(out)
    for r in idx.select():
        offs, sizes = idx.frames_of(r)
        with open(out / idx.shards[idx.shard[r]], "rb") as f:
            got = []
            for o, s in zip(offs, sizes):
                f.seek(o)
                got.append(frame_number(simplejpeg.decode_jpeg(f.read(s))))
        assert got == list(range(idx.n_frames[r])), str(idx.video_id[r])


def test_sample_metadata_in_the_tar(built):
    _, _, out = built
    idx = read_index(out)
    with tarfile.open(out / idx.shards[0]) as tf:
        metas = [json.load(tf.extractfile(m)) for m in tf.getmembers() if m.name.endswith(".json")]
    assert metas
    for m in metas:
        assert set(m) >= {"video_id", "label", "class", "dataset", "split", "fps", "n_frames", "height", "width", "source"}
        assert m["class"] == idx.classes[m["label"]] and m["split"]["1"] in ("train", "test")


def test_verify_passes_and_rerun_skips_complete_shards(built, capsys, tmp_path):
    videos, lists, out = built
    assert verify_main([str(out), "--no-progress"]) == 0
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = {p.name: p.stat().st_mtime_ns for p in copy.glob("*.tar")}
    capsys.readouterr()
    assert build(_args(videos, lists, copy)) == 0
    assert "0 built, 5 already complete" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in copy.glob("*.tar")} == before
    assert_same_index(out, copy)


def test_rerun_after_a_crash_rebuilds_only_broken_shards_and_gives_the_same_index(built, capsys, tmp_path):
    videos, lists, out = built
    crashed = tmp_path / "crashed"
    shutil.copytree(out, crashed)
    shutil.rmtree(crashed / "index.zarr")           # the driver died before writing the index
    t1 = crashed / "ucf101-000001.tar"
    t1.write_bytes(t1.read_bytes()[:5000])          # a shard whose tar was cut short
    (crashed / "ucf101-000002.json").unlink()       # a shard whose sidecar was never written
    (crashed / ".ucf101-000003.tar.tmp-deadbeef").write_bytes(b"partial")  # a dead worker's leftover
    capsys.readouterr()
    assert build(_args(videos, lists, crashed)) == 0
    outp = capsys.readouterr().out
    assert "2 built, 3 already complete" in outp and "1 stale temporary files removed" in outp
    assert not list(crashed.glob(".*tmp*"))
    assert_same_index(out, crashed)
    assert verify_main([str(crashed), "--no-progress"]) == 0


def test_overwrite_rebuilds_everything(built, capsys, tmp_path):
    videos, lists, out = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    capsys.readouterr()
    assert build(_args(videos, lists, copy, "--overwrite")) == 0
    assert "5 built, 0 already complete" in capsys.readouterr().out
    assert_same_index(out, copy)


def test_verify_reports_tars_that_disagree_with_the_index(built, tmp_path, capsys):
    _, _, out = built
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    t0 = bad / "ucf101-000000.tar"
    t0.write_bytes(t0.read_bytes()[: t0.stat().st_size // 2])
    with tarfile.open(bad / "ucf101-000001.tar", "a") as tf:
        extra = bad / "stray.txt"
        extra.write_text("x")
        tf.add(extra, arcname="stray.txt")
    capsys.readouterr()
    assert verify_main([str(bad), "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert "ucf101-000000.tar" in text and "ucf101-000001.tar: member 'stray.txt' is not in the index" in text
    assert text.strip().splitlines()[-1].startswith("FAILED")


def test_real_clips_of_all_three_datasets(tmp_path, capsys):
    for name, v, a in [("hmdb51", VIDEOS / "hmdb51", ANNOTATIONS / "hmdb51"),
                       ("kinetics400", VIDEOS / "kinetics400", ANNOTATIONS / "kinetics400")]:
        out = tmp_path / name
        assert build(["--size", "128x171", "--dataset", name, "--videos", str(v), "--annotations", str(a), "--out", str(out),
                      "--workers", "1", "--no-progress"]) == 0
        idx = read_index(out)
        assert (idx.status == STATUS_OK).sum() == 3
        assert (idx.status == STATUS_MISSING).sum() == len(idx) - 3
        # the defaults give a set this small one shard per video
        assert len(idx.shards) == 3 and "shards: 3 in the set" in (text := capsys.readouterr().out)
        if name == "kinetics400":
            # Kinetics' own words for its split column: the 3 clips are val videos, test has no labels
            val = next(ln for ln in text.splitlines() if ln.split()[:1] == ["val"])
            assert val.split()[1] == "3" and any(ln.split()[:1] == ["test"] for ln in text.splitlines())
        assert np.all(idx.n_frames[idx.status == STATUS_OK] > 30)
        assert verify_main([str(out), "--no-progress"]) == 0


def test_clear_errors_for_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build(["--size", "128x171", "--dataset", "ucf101", "--videos", str(tmp_path), "--annotations", str(tmp_path),
               "--out", str(tmp_path / "o"), "--size", "big"])
    assert "HEIGHTxWIDTH" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        build(["--size", "128x171", "--dataset", "ucf101", "--videos", str(tmp_path), "--annotations", str(tmp_path),
               "--out", str(tmp_path / "o"), "--videos-per-shard", "0"])
    assert exc.value.code == 2 and "--videos-per-shard: wants a value above 0, got '0'" in capsys.readouterr().err
    assert build(["--size", "128x171", "--dataset", "ucf101", "--videos", str(tmp_path / "nope"), "--annotations", str(tmp_path),
                  "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"video folder {tmp_path / 'nope'} does not exist" in err


def test_entry_points_give_every_option_help_and_its_default(capsys):
    from preprocess.submit import main as submit

    for main in (build, verify_main, submit):
        with pytest.raises(SystemExit) as exc:
            main(["--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        options = [ln.split()[0] for ln in text.splitlines() if ln.startswith("  --") and ln.split()[0] != "--help"]
        assert options, text
        for opt in options:
            block = text[text.index(f"  {opt}"):].split("\n  --", 1)[0]
            # a default shown once, none for a required option or a flag (tests/test_cli.py: every entry point)
            assert block.count("(default:") <= 1 and "(default: None)" not in block, f"{opt}:\n{block}"
    assert submit(["/no/such/script.py"]) == 2
    assert capsys.readouterr().err == "dask-submit: no such script: /no/such/script.py\n"


def test_a_failing_shard_task_is_reported_with_its_exception_and_the_others_kept(monkeypatch, tmp_path):
    """The driver collects results as they complete; a task that raised is reported with its own
    exception, the others' results are kept (build_shards then exits 1 without writing the index)."""
    from types import SimpleNamespace

    from distributed import Client

    import preprocess.shard_task as shard_task
    from preprocess.build_shards import submit_all

    def build_shard(spec, *args, **kw):
        if spec.number == 1:
            raise RuntimeError("disk full")
        return {"shard": spec.number}

    monkeypatch.setattr(shard_task, "build_shard", build_shard)      # an in-process cluster sees the patch
    specs = [SimpleNamespace(number=i, digest=lambda identity: "0123456789abcdef") for i in range(3)]
    args = SimpleNamespace(dataset="ucf101", overwrite=False, retries=0, no_progress=True)
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        results, failed = submit_all(client, specs, None, tmp_path, args, SimpleNamespace(splits=None), {})
    assert sorted(r["shard"] for r in results) == [0, 2]
    assert [(key, type(exc).__name__, str(exc)) for key, exc in failed] == \
        [("shard-000001-0123456789ab", "RuntimeError", "disk full")]
