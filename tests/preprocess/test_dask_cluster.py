"""A real cluster, started as users start one: `dask scheduler`, two `dask worker` processes on
127.0.0.1, then `dask-submit preprocess/build_shards.py` against it; and a worker killed mid-shard."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from preprocess.build_shards import main as build
from shards.verify import main as verify_main
from tests.conftest import ROOT
from tests.helpers import assert_same_index, when_two_shards_in_flight
from tests.servers import free_port, stop_processes
from tests.synthetic import make_video, write_ucf_layout

BIN = Path(sys.executable).parent


def wait_for_workers(address: str, n: int, timeout: float = 60) -> None:
    from distributed import Client

    with Client(address, timeout="20s") as c:
        c.wait_for_workers(n, timeout=timeout)


@pytest.fixture
def cluster(tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [subprocess.Popen([BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0", "--no-show"],
                              stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT)]
    workers = []
    try:
        time.sleep(1.0)
        for i in range(2):
            # --no-nanny: the worker process is the one a test kills, and nothing restarts it
            w = subprocess.Popen([BIN / "dask", "worker", address, "--nthreads", "1", "--no-nanny",
                                  "--host", "127.0.0.1", "--name", f"w{i}", "--no-dashboard"],
                                 stdout=open(logs / f"worker{i}.log", "w"), stderr=subprocess.STDOUT, cwd=tmp_path)
            procs.append(w)
            workers.append(w)
        wait_for_workers(address, 2)
        yield address, workers
    finally:
        stop_processes(procs, timeout=10)


@pytest.fixture(scope="module")
def heavy_ucf(tmp_path_factory):
    """Enough work per shard (2 videos of 200 VGA frames) that a worker can be caught mid-shard."""
    root = tmp_path_factory.mktemp("heavy")
    classes = {c: [(f"v_{c}_g0{j}_c01", 200) for j in range(1, 5)] for c in ("Left", "Right")}
    videos, lists = write_ucf_layout(root, classes)
    for c, items in classes.items():
        for name, n in items:
            make_video(videos / c / f"{name}.avi", n, fps=25, size=(480, 640))
    reference = root / "reference"
    assert build(_args(videos, lists, reference) + ["--workers", "1"]) == 0
    return videos, lists, reference


def _args(videos, lists, out):
    return ["--size", "128x171", "--dataset", "ucf101", "--videos", str(videos), "--annotations", str(lists), "--out", str(out),
            "--videos-per-shard", "2", "--size", "112x112", "--no-progress"]


def test_dask_submit_runs_the_driver_on_a_running_cluster(cluster, heavy_ucf, tmp_path):
    address, _ = cluster
    videos, lists, reference = heavy_ucf
    out = tmp_path / "shards"
    r = subprocess.run([BIN / "dask-submit", "--scheduler", address, "preprocess/build_shards.py",
                        *_args(videos, lists, out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "8 ok, 0 failed" in r.stdout and "4 built" in r.stdout
    assert_same_index(reference, out)
    # the driver ran on the cluster's two workers, not on a LocalCluster of its own
    assert "LocalCluster" not in r.stderr


def test_dask_submit_passes_the_exit_code_and_explains_an_unreachable_scheduler(tmp_path):
    r = subprocess.run([BIN / "dask-submit", "--scheduler", f"tcp://127.0.0.1:{free_port()}", "--timeout", "2",
                        "preprocess/build_shards.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:" in r.stderr
    r = subprocess.run([BIN / "dask-submit", "preprocess/build_shards.py", "--size", "128x171", "--dataset", "ucf101", "--videos",
                        str(tmp_path / "none"), "--annotations", str(tmp_path), "--out", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("build_shards: video folder")


def test_a_worker_killed_mid_shard_does_not_stop_the_job(cluster, heavy_ucf, tmp_path):
    address, workers = cluster
    videos, lists, reference = heavy_ucf
    out = tmp_path / "shards"
    job = subprocess.Popen([BIN / "dask-submit", "--scheduler", address, "preprocess/build_shards.py",
                            *_args(videos, lists, out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until both workers are writing a shard (two temporary tars at once), then kill one.
    killed = when_two_shards_in_flight(job, out, lambda: os.kill(workers[0].pid, signal.SIGKILL))
    stdout, stderr = job.communicate(timeout=300)
    assert killed, "never saw two shards in flight"
    assert job.returncode == 0, stderr[-3000:]
    assert workers[0].poll() is not None
    assert "8 ok, 0 failed" in stdout
    assert not list(out.glob(".*tmp*")), "a partial tar is still visible"
    assert_same_index(reference, out)
    assert verify_main([str(out), "--no-progress"]) == 0
