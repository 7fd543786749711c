"""preprocess under faults: signals mid-build, unreadable inputs, empty or unlistable folders, two
builds at once, damaged sidecars and tars, bad annotation files, extensions the listing did not know."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from preprocess.adapters import load_listing
from preprocess.adapters.base import AnnotationError
from preprocess.build_shards import main as build
from shards.format import FAILURES_NAME, LOCK_NAME, STATUS_FAILED, STATUS_OK
from shards.index import read_index, write_index, empty_rows
from shards.verify import main as verify_main
from tests.conftest import ROOT
from tests.helpers import assert_same_index, when_two_shards_in_flight
from tests.synthetic import make_video, write_ucf_layout

SMALL = {"Alpha": [("v_Alpha_g01_c01", 30), ("v_Alpha_g02_c01", 26)],
         "Beta": [("v_Beta_g01_c01", 28), ("v_Beta_g02_c01", 24)]}


def _args(videos, lists, out, *extra, workers=1):
    return ["--size", "128x171", "--dataset", "ucf101", "--videos", str(videos), "--annotations", str(lists), "--out", str(out),
            "--videos-per-shard", "2", "--workers", str(workers), "--size", "32x48", "--no-progress", *extra]


def _dataset(root: Path, classes: dict, size=(64, 80)) -> tuple[Path, Path]:
    videos, lists = write_ucf_layout(root, classes)
    for c, items in classes.items():
        for name, n in items:
            if n:
                make_video(videos / c / f"{name}.avi", n, fps=25, size=size)
    return videos, lists


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    videos, lists = _dataset(root, SMALL)
    reference = root / "reference"
    assert build(_args(videos, lists, reference)) == 0
    return videos, lists, reference


# 1. signals ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def heavy(tmp_path_factory):
    """Transcodes long enough (VGA, 150 frames) for a signal to land while ffmpeg runs."""
    root = tmp_path_factory.mktemp("heavy")
    classes = {c: [(f"v_{c}_g0{j}_c01", 150) for j in range(1, 5)] for c in ("Left", "Right")}
    videos, lists = _dataset(root, classes, size=(480, 640))
    reference = root / "reference"
    assert build(_args(videos, lists, reference)) == 0
    return videos, lists, reference


@pytest.mark.parametrize("how", ["ctrl-c to the terminal's process group", "sigterm to the driver"])
def test_an_interrupted_build_records_nothing_in_flight_and_a_rerun_matches_a_clean_build(heavy, tmp_path, how, capsys):
    videos, lists, reference = heavy
    out = tmp_path / "out"
    args = _args(videos, lists, out, workers=2)
    # A session of its own stands for the terminal's foreground job: Ctrl-C goes to all of it.
    job = subprocess.Popen([sys.executable, "preprocess/build_shards.py", *args], cwd=ROOT, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    def interrupt():
        time.sleep(0.2)                     # both workers are inside an ffmpeg run
        if how.startswith("ctrl-c"):
            os.killpg(job.pid, signal.SIGINT)
        else:
            job.send_signal(signal.SIGTERM)

    sent = when_two_shards_in_flight(job, out, interrupt)
    stdout, stderr = job.communicate(timeout=120)
    assert sent, "never saw two shards in flight"
    assert job.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert not list(out.glob(".*tmp*")), "a partial shard was left behind"
    assert not (out / LOCK_NAME).exists()
    for sidecar in out.glob("*.json"):
        rec = json.loads(sidecar.read_text())
        assert all(v["status"] == STATUS_OK for v in rec["videos"]), rec["videos"]
    capsys.readouterr()
    assert build(args) == 0
    assert "8 ok, 0 failed" in capsys.readouterr().out
    assert_same_index(reference, out)


# 2. listed files that cannot be read ----------------------------------------------------------------

def test_unreadable_listed_files_are_failed_with_the_os_reason_and_the_build_goes_on(small, tmp_path, capsys):
    videos, lists, _ = small
    classes = {**SMALL, "Gamma": [("v_Gamma_dangling", 0), ("v_Gamma_loop", 0), ("v_Gamma_fifo", 0),
                                  ("v_Gamma_folder", 0)]}
    root = tmp_path / "data"
    v2, l2 = write_ucf_layout(root, classes)
    shutil.copytree(videos, v2, dirs_exist_ok=True)
    g = v2 / "Gamma"
    g.mkdir()
    (g / "v_Gamma_dangling.avi").symlink_to(g / "gone.avi")
    (g / "v_Gamma_loop.avi").symlink_to(g / "v_Gamma_loop.avi")
    os.mkfifo(g / "v_Gamma_fifo.avi")
    (g / "v_Gamma_folder.avi").mkdir()
    out = tmp_path / "out"
    assert build(_args(v2, l2, out, "--timeout", "20")) == 0
    idx = read_index(out)
    row = idx.row_of()
    reasons = {"v_Gamma_dangling": "No such file or directory (dangling symlink)",
               "v_Gamma_loop": "Too many levels of symbolic links", "v_Gamma_fifo": "not a regular file (a FIFO)",
               "v_Gamma_folder": "Is a directory"}
    for vid, reason in reasons.items():
        assert idx.status[row[vid]] == STATUS_FAILED and reason in str(idx.error[row[vid]]), (vid, idx.error[row[vid]])
    assert all(idx.status[row[n]] == STATUS_OK for c in SMALL.values() for n, _ in c)


# 3. a folder that cannot be listed, or no videos at all -------------------------------------------

def test_a_build_that_finds_no_videos_fails_naming_the_folder(small, tmp_path, capsys):
    _, lists, _ = small
    empty = tmp_path / "empty"
    (empty / "Alpha").mkdir(parents=True)
    (empty / "Alpha" / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    assert build(_args(empty, lists, out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"none of the 4 listed videos is under {empty}" in err
    assert not (out / "index.zarr").exists()


def as_nobody(fn) -> str:
    """``fn()``'s result (a string), computed in a forked child that runs as uid/gid 65534: tests
    run as root, and root reads and lists what mode 000 forbids."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                        # pragma: no cover - the child
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            out = fn()
        except BaseException as exc:                    # noqa: BLE001 - report anything to the parent
            out = f"{type(exc).__name__}: {exc}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    os.waitpid(pid, 0)
    return text


@pytest.fixture
def world_readable(tmp_path):
    """A folder that uid 65534 can reach (pytest's own tmp folders are mode 0700)."""
    d = Path(tempfile.mkdtemp(prefix="cstp-faults-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    for p in d.rglob("*"):
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    shutil.rmtree(d)


def test_a_video_folder_that_cannot_be_listed_is_an_error(small, world_readable):
    from preprocess.adapters.base import VideoFolderError

    videos, lists, _ = small
    blocked = world_readable / "videos"
    shutil.copytree(videos, blocked)
    shutil.copytree(lists, world_readable / "lists")
    for p in [world_readable, *world_readable.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    (blocked / "Beta").chmod(0)

    def listing() -> str:
        try:
            load_listing("ucf101", blocked, world_readable / "lists")
        except VideoFolderError as exc:
            return str(exc)
        return "listed without an error"

    assert as_nobody(listing) == f"cannot list video folder {blocked / 'Beta'}: Permission denied"


def test_a_listed_file_without_read_permission_fails_with_the_os_reason(small, world_readable):
    from preprocess.transcode import TranscodeError, check_readable

    videos, _, _ = small
    locked = world_readable / "v_locked.avi"
    shutil.copy(videos / "Alpha" / "v_Alpha_g01_c01.avi", locked)
    locked.chmod(0)

    def check() -> str:
        try:
            check_readable(str(locked))
        except TranscodeError as exc:
            return str(exc)
        return "readable"

    assert as_nobody(check) == "cannot read: Permission denied"


def test_verify_of_an_empty_shard_set_is_not_ok(tmp_path, capsys):
    rows = empty_rows(["v_a"], [0], np.ones((1, 1), np.int8))
    write_index(tmp_path, {"dataset": "ucf101", "fps": 25.0, "height": 32, "width": 48, "classes": ["A"],
                           "splits": ["1"], "shards": []}, rows, {})
    assert verify_main([str(tmp_path), "--no-progress"]) == 1
    assert "FAILED" in capsys.readouterr().out


# 4. two builds into one folder --------------------------------------------------------------------

def test_a_second_build_into_a_locked_folder_refuses_at_once(small, tmp_path, capsys):
    videos, lists, _ = small
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_NAME).write_text(f"{socket.gethostname()} {holder.pid}\n")
        t0 = time.perf_counter()
        assert build(_args(videos, lists, out)) == 2
        took = time.perf_counter() - t0
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"pid {holder.pid} on host {socket.gethostname()}" in err and LOCK_NAME in err
    assert took < 5 and not list(out.glob("*.tar"))
    assert (out / LOCK_NAME).exists(), "the other build's lock must stay"


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(small, tmp_path, capsys):
    videos, lists, reference = small
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_NAME).write_text(f"{socket.gethostname()} {dead.pid}\n")
    assert build(_args(videos, lists, out)) == 0
    assert f"taking over the stale lock {out / LOCK_NAME} of pid {dead.pid}" in capsys.readouterr().err
    assert not (out / LOCK_NAME).exists()
    assert_same_index(reference, out)


# 5. damaged sidecars, tars, index ---------------------------------------------------------------

def test_a_tar_or_sidecar_that_fails_its_checksum_is_rebuilt_on_resume(small, tmp_path, capsys):
    videos, lists, reference = small
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    tar = out / "ucf101-000000.tar"
    data = bytearray(tar.read_bytes())
    idx = read_index(out)
    r = int(idx.select()[idx.shard[idx.select()] == 0][0])
    off, size = idx.frames_of(r)
    data[int(off[0]) + int(size[0]) // 2] ^= 0xFF                 # one JPEG byte: same size, same members
    tar.write_bytes(bytes(data))
    side = out / "ucf101-000001.json"
    rec = json.loads(side.read_text())
    rec["videos"][0]["n_frames"] += 1                             # valid JSON, wrong content
    side.write_text(json.dumps(rec))
    capsys.readouterr()
    assert build(_args(videos, lists, out)) == 0
    assert "2 built, 0 already complete" in capsys.readouterr().out
    assert tar.read_bytes() == (reference / tar.name).read_bytes()
    assert_same_index(reference, out)


def test_an_index_that_is_a_file_is_one_clear_error_and_leaves_nothing_behind(small, tmp_path, capsys):
    videos, lists, _ = small
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.zarr").write_text("not a folder")
    assert build(_args(videos, lists, out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out / 'index.zarr'} is a file, not a Zarr folder" in err
    assert sorted(p.name for p in out.iterdir()) == ["index.zarr"]


# 6. annotation files ------------------------------------------------------------------------------

def _ucf_lists(folder: Path, train: bytes) -> Path:
    folder.mkdir(parents=True)
    (folder / "classInd.txt").write_bytes(b"1 Alpha\r\n2 Beta\r\n")
    for s in (1, 2, 3):
        (folder / f"trainlist0{s}.txt").write_bytes(train)
        (folder / f"testlist0{s}.txt").write_bytes(b"")
    return folder


def test_an_annotation_file_that_is_not_utf8_names_file_and_line(small, tmp_path, capsys):
    videos, _, _ = small
    lists = _ucf_lists(tmp_path / "lists", b"Alpha/v_Alpha_g01_c01.avi 1\r\n\r\nBeta/v_Beta_\xe9t\xe9.avi 2\r\n")
    with pytest.raises(AnnotationError, match=r"trainlist01.txt:3: not valid UTF-8 \(byte 0xe9\)"):
        load_listing("ucf101", videos, lists)
    assert build(_args(videos, lists, tmp_path / "out")) == 2
    assert "trainlist01.txt:3: not valid UTF-8" in capsys.readouterr().err
    k = tmp_path / "k400"
    k.mkdir()
    (k / "kinetics-400_val.csv").write_bytes(b"label,youtube_id,time_start,time_end,split\n"
                                             b"abseiling,aaa,0,10,val\ncaf\xe9,bbb,0,10,val\n")
    with pytest.raises(AnnotationError, match=r"kinetics-400_val.csv:3: not valid UTF-8"):
        load_listing("kinetics400", videos, k)


def test_a_malformed_line_names_file_and_line(small, tmp_path):
    videos, _, _ = small
    lists = _ucf_lists(tmp_path / "lists", b"Alpha/v_Alpha_g01_c01.avi 1\r\n\r\nBeta/v_Beta_g01_c01.avi two\r\n")
    with pytest.raises(AnnotationError, match=r"trainlist01.txt:3: expected '<Class>/<name>.avi \[<label>\]'"):
        load_listing("ucf101", videos, lists)


# 7. extensions the listing does not know ----------------------------------------------------------

def test_listed_videos_in_other_containers_are_transcoded_not_reported_missing(small, tmp_path):
    from preprocess.ffmpeg_binary import ffmpeg_path

    videos, lists, _ = small
    v2 = tmp_path / "videos"
    shutil.copytree(videos, v2)
    # The same clips as .gif and .y4m (an extension no list of video suffixes carries).
    for name, ext in (("Alpha/v_Alpha_g01_c01", ".gif"), ("Beta/v_Beta_g01_c01", ".y4m")):
        src = v2 / f"{name}.avi"
        subprocess.run([ffmpeg_path(), "-v", "error", "-y", "-i", str(src), str(src.with_suffix(ext))], check=True)
        src.unlink()
    out = tmp_path / "out"
    assert build(_args(v2, lists, out)) == 0
    idx = read_index(out)
    row = idx.row_of()
    assert idx.status[row["v_Alpha_g01_c01"]] == STATUS_OK and idx.n_frames[row["v_Alpha_g01_c01"]] == 30
    assert idx.status[row["v_Beta_g01_c01"]] == STATUS_OK and idx.n_frames[row["v_Beta_g01_c01"]] == 28
    assert (idx.status == STATUS_OK).all()


# 8, 9. shard count for small sets, the summary --------------------------------------------------

def test_defaults_give_small_sets_enough_shards_and_the_summary_says_what_happened(tmp_path, capsys):
    classes = {**SMALL, "Gamma": [("v_Gamma_text", 0), ("v_Gamma_gone", 0)]}
    videos, lists = _dataset(tmp_path / "data", classes)
    (videos / "Gamma").mkdir()
    (videos / "Gamma" / "v_Gamma_text.avi").write_text("no video here\n")
    out = tmp_path / "out"
    args = [a for a in _args(videos, lists, out) if a not in ("--videos-per-shard", "2")]
    assert build(args) == 0
    text = capsys.readouterr().out
    # 5 videos on disk: one per shard, so that 2 ranks x workers each have shards to read.
    assert len(read_index(out).shards) == 5 and "shards: 5 in the set" in text
    lines = text.splitlines()
    at = lines.index(next(ln for ln in lines if ln.startswith("split 1:")))
    assert lines[at].split()[-3:] == ["ok", "failed", "missing"]
    # split 1: the first video of each class is in the test list (write_ucf_layout), so the text
    # file is a failed test video and the missing one a train video
    assert lines[at + 1].split() == ["train", "2", "0", "1"] and lines[at + 2].split() == ["test", "2", "1", "0"]
    assert any(ln.startswith("split 3:") for ln in lines)
    assert f"failures: {out / FAILURES_NAME} (2 failed or missing videos" in text
    rows = [ln.split("\t") for ln in (out / FAILURES_NAME).read_text().splitlines()]
    assert rows[0] == ["video_id", "status", "reason", "path"]
    assert sorted((r[0], r[1]) for r in rows[1:]) == [("v_Gamma_gone", "missing"), ("v_Gamma_text", "failed")]
    text_row = next(r for r in rows if r[0] == "v_Gamma_text")
    assert "not a readable media file" in text_row[2] and text_row[3].endswith("Gamma/v_Gamma_text.avi")
