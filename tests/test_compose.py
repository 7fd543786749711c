"""docker-compose.yml, run without Docker: no engine runs here, so the test starts each service's
exact command from the compose file on 127.0.0.1 (hostnames and ports made local, volumes mapped to
folders), scheduler, worker, build-shards and the trainer, and checks that the job and the training
run finish with shards, an index and a checkpoint."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import ANNOTATIONS, ROOT, VIDEOS
from tests.servers import free_port, stop_processes

BIN = Path(sys.executable).parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def interpolate(word: str, env: dict) -> str:
    """Compose's ${VAR:-default}: the variable from ``env``, else the default."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1], m[2]), word)


def localise(service: str, env: dict, mounts: dict[str, Path], port: int) -> list[str]:
    """The service's command with the compose network replaced by loopback and its volumes by
    ``mounts`` (container path -> host folder)."""
    out = []
    for word in SERVICES[service]["command"]:
        word = interpolate(word, env)
        word = word.replace("tcp://scheduler:8786", f"tcp://127.0.0.1:{port}")
        for inside, outside in mounts.items():
            word = re.sub(rf"(^|=){re.escape(inside)}(?=/|$)", lambda m: m[1] + str(outside), word)
        out.append(word)
    if out[:2] == ["dask", "scheduler"]:
        out = [w if w not in ("0.0.0.0", "8786", ":8787") else {"0.0.0.0": "127.0.0.1", "8786": str(port),
                                                                ":8787": ":0"}[w] for w in out]
    if out[:2] == ["dask", "worker"]:
        out += ["--host", "127.0.0.1", "--no-dashboard"]
    return out


def volumes(service: str, env: dict) -> dict[str, str]:
    """container path -> the compose file's host path expression, for one service."""
    out = {}
    for v in SERVICES[service].get("volumes", []):
        host, inside = interpolate(v, env).split(":")[:2]
        out[inside] = host
    return out


def test_compose_topology_defines_the_intended_services():
    assert set(SERVICES) == {"scheduler", "worker", "build-shards", "train"}
    assert SERVICES["scheduler"]["ports"] == ["127.0.0.1:8787:8787"]        # dashboard on loopback only
    assert "dask-scheduler" not in (ROOT / "docker-compose.yml").read_text()
    gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())
    devices = gpu["services"]["train"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ffmpeg" in dockerfile and "USER cstp" in dockerfile
    # dependencies install before the source is copied, so a source edit keeps the torch layer
    assert dockerfile.index("constraints.txt") < dockerfile.index("COPY preprocess")


def test_compose_services_run_their_exact_commands_on_loopback(tmp_path):
    env = {"DATASET": "ucf101", "GPUS": "1"}
    mounts = {"/data/videos": VIDEOS / "ucf101" / "UCF-101", "/data/annotations": ANNOTATIONS / "ucf101",
              "/data/shards": tmp_path / "shards", "/data/runs": tmp_path / "runs"}
    # every volume the services mount is one the test maps
    for name in SERVICES:
        assert set(volumes(name, env)) <= set(mounts), name
    for p in mounts.values():
        p.mkdir(parents=True, exist_ok=True)
    port = free_port()
    path_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []
    try:
        for name in ("scheduler", "worker"):
            procs.append(subprocess.Popen(localise(name, env, mounts, port), cwd=ROOT, env=path_env,
                                          stdout=open(logs / f"{name}.log", "w"), stderr=subprocess.STDOUT))
        time.sleep(2)
        build = subprocess.run(localise("build-shards", env, mounts, port), cwd=ROOT, env=path_env,
                               capture_output=True, text=True, timeout=600)
        assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:] + (logs / "worker.log").read_text()[-2000:]
        shards = mounts["/data/shards"] / "ucf101"
        assert (shards / "index.zarr").is_dir() and list(shards.glob("*.tar"))
        # the trainer's exact command, sized down for a CPU test by overrides appended to it
        small = ["model.width=0.125", "data.clip_len=8", "data.out_size=32", "data.batch_size=2",
                 "data.num_workers=0", "data.split=all", "train.max_steps=2", "train.tensorboard=false"]
        train = subprocess.run(localise("train", env, mounts, port) + small, cwd=ROOT, env=path_env,
                               capture_output=True, text=True, timeout=600)
        assert train.returncode == 0, train.stderr[-3000:]
        assert list((mounts["/data/runs"] / "cstp").glob("ckpt-*.pt"))
    finally:
        stop_processes(procs)
