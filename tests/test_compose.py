"""docker-compose.yml: no Docker engine runs here, so check what can be: it parses, its topology is
the intended one, and every command, script and config it names exists in the installed project.
(tests/test_dask_cluster.py runs the same topology on 127.0.0.1.)"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def test_compose_file_parses_and_names_only_existing_commands():
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert set(services) == {"scheduler", "worker", "build-shards", "train"}
    assert services["scheduler"]["ports"] == ["127.0.0.1:8787:8787"]        # dashboard on loopback only
    assert services["worker"]["command"][:3] == ["dask", "worker", "tcp://scheduler:8786"]
    for name, svc in services.items():
        cmd = svc["command"]
        assert (BIN / cmd[0]).exists() or shutil.which(cmd[0]), f"{name}: {cmd[0]} is not installed"
        for word in cmd:
            if word.endswith((".py", ".yaml")) and "/" in word and not word.startswith("/"):
                assert (ROOT / word).is_file(), f"{name}: {word} does not exist"
    assert "dask-scheduler" not in (ROOT / "docker-compose.yml").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ffmpeg" in dockerfile and "pip install" in dockerfile
