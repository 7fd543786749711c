"""train.threads: intra-op threads from the cores a process may use; OMP_NUM_THREADS wins."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from shards.errors import InputError
from train.threads import busy_between, intra_op_threads, passive_wait, usable_cores
from tests.conftest import ROOT


@pytest.mark.parametrize("cores, env, workers, want", [
    (16, {}, 0, 16),                                  # one process, no workers: every core
    (16, {}, 4, 12),                                  # less its loader workers
    (16, {"LOCAL_WORLD_SIZE": "4"}, 2, 2),            # 16 / 4 ranks on the node, less 2 workers each
    (16, {"LOCAL_WORLD_SIZE": "8"}, 4, 1),            # never below 1
    (2, {}, 4, 1),
    (16, {"OMP_NUM_THREADS": "3"}, 4, 3),             # the user's setting wins
    (2, {"OMP_NUM_THREADS": "1", "LOCAL_WORLD_SIZE": "2"}, 0, 1),
])
def test_threads_from_cores_processes_and_workers(cores, env, workers, want):
    assert intra_op_threads(workers, cores=cores, env=env)[0] == want


@pytest.mark.parametrize("cores, env, workers, busy, want", [
    (2, {}, 0, 1.0, 1),                               # one core kept busy by other work: the other one
    (2, {}, 0, 0.4, 2),                               # a core less than half busy is not taken
    (16, {}, 0, 5.6, 10),
    (16, {"LOCAL_WORLD_SIZE": "4"}, 0, 3.0, 4),       # the share per process is below what is free
    (16, {"LOCAL_WORLD_SIZE": "4"}, 1, 14.0, 1),      # free 2, less a worker: at least 1
    (16, {}, 2, 99.0, 1),
    (2, {"OMP_NUM_THREADS": "2"}, 0, 2.0, 2),         # the user's setting wins over the load too
])
def test_cores_that_other_work_keeps_busy_are_not_taken(cores, env, workers, busy, want):
    n, why = intra_op_threads(workers, cores=cores, env=env, busy=busy)
    assert n == want
    assert ("busy with other work" in why) == (not env.get("OMP_NUM_THREADS") and busy >= 0.5)


STAT = "cpu  {a} 0 {b} {c} 0 0 0 0 0 0\ncpu0 {a} 0 0 {c} 0 0 0 0 0 0\ncpu1 0 0 {b} {d} {e} 0 0 0 0 0\nintr 1 2 3\n"


def test_busy_cores_from_two_readings_of_proc_stat():
    before = STAT.format(a=100, b=50, c=900, d=950, e=0)
    # cpu0: 100 busy jiffies of 100; cpu1: 25 system, 50 idle, 25 iowait (iowait counts as idle)
    after = STAT.format(a=200, b=75, c=900, d=1000, e=25)
    assert busy_between(before, after, [0, 1]) == pytest.approx(1.25)
    assert busy_between(before, after, [1]) == pytest.approx(0.25)     # only the cores the process may use
    assert busy_between(before, after, [0, 7]) == pytest.approx(1.0)   # a core not in the file counts 0
    assert busy_between(before, before, [0, 1]) == 0.0                 # no time passed


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or not {0, 1} <= os.sched_getaffinity(0)
                    or not os.path.exists("/proc/stat"), reason="needs Linux and cores 0 and 1")
def test_a_process_beside_a_busy_core_takes_one_thread():
    """A real spinner on core 0; a fresh process allowed cores 0 and 1 measures it and takes 1 thread."""
    spin = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        code = "from train.threads import set_threads; import torch; print(set_threads(0), torch.get_num_threads())"
        env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
        r = subprocess.run(["taskset", "-c", "0,1", sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, timeout=120)
    finally:
        spin.kill()
        spin.wait()
    assert r.stdout.split()[-1] == "1" and "2 cores / 1 processes, " in r.stdout, r.stdout + r.stderr
    assert re.search(r", [12] busy with other work - 0 loader workers", r.stdout), r.stdout


@pytest.mark.parametrize("bad", ["0", "-2", "four"])
def test_a_bad_omp_num_threads_is_one_line(bad):
    with pytest.raises(InputError, match=rf"OMP_NUM_THREADS='{bad}': not a positive whole number"):
        intra_op_threads(0, cores=4, env={"OMP_NUM_THREADS": bad})


def test_a_process_takes_its_affinity_and_the_environment():
    """In a fresh process pinned to one core: 1 thread; with OMP_NUM_THREADS=2: 2."""
    code = "from train.threads import set_threads; import torch; print(set_threads(0), torch.get_num_threads())"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    one = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert one.stdout.split()[-1] == "1" and "(1 cores / 1 processes" in one.stdout, one.stderr
    two = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "OMP_NUM_THREADS": "2"})
    assert two.stdout.split()[-1] == "2" and "(OMP_NUM_THREADS)" in two.stdout, two.stderr
    assert usable_cores() >= 1


def test_waiting_threads_sleep_unless_the_environment_says_otherwise():
    env: dict[str, str] = {}
    passive_wait(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    mine = {"OMP_WAIT_POLICY": "ACTIVE"}
    passive_wait(mine)
    assert mine == {"OMP_WAIT_POLICY": "ACTIVE"}


# Entry points run as a user runs them (by path, or the console script's module), then torch: the
# policy must be in the environment before torch loads its OpenMP runtime, which reads it once.
ENTRY_POINTS = ["train/pretrain.py", "eval/finetune.py", "eval/linear_probe.py", "eval/retrieval.py",
                "bench/train_step.py", "-m train.launch", "-m eval.ft_launch"]


def _spin_count(entry: str, env: dict[str, str]) -> subprocess.Popen:
    load = (f"import importlib; importlib.import_module({entry[3:]!r})" if entry.startswith("-m ") else
            f"import runpy; runpy.run_path({str(ROOT / entry)!r}, run_name='entry_point')")
    code = f"{load}\nimport torch\ntorch.ones(64, 64) @ torch.ones(64, 64)"
    full = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_DISPLAY_ENV": "VERBOSE", **env}
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _shown(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    m = re.search(r"GOMP_SPINCOUNT = '(\d+)'", err)
    if m is None:
        pytest.skip("torch's OpenMP runtime here is not GNU libgomp (no GOMP_SPINCOUNT in OMP_DISPLAY_ENV)")
    return m.group(1)


def test_every_entry_point_sets_the_wait_policy_before_torch_loads_openmp():
    """libgomp spins 300,000 rounds unless told PASSIVE (0) before it loads; a user's ACTIVE is kept."""
    procs = {e: _spin_count(e, {}) for e in ENTRY_POINTS}
    kept = _spin_count("train/pretrain.py", {"OMP_WAIT_POLICY": "ACTIVE"})
    assert {e: _shown(p) for e, p in procs.items()} == {e: "0" for e in ENTRY_POINTS}
    assert int(_shown(kept)) > 0
