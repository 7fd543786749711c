"""train.threads: intra-op threads from the cores a process may use; OMP_NUM_THREADS wins."""
from __future__ import annotations

import subprocess
import sys

import pytest

from shards.errors import InputError
from train.threads import intra_op_threads, usable_cores
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


@pytest.mark.parametrize("bad", ["0", "-2", "four"])
def test_a_bad_omp_num_threads_is_one_line(bad):
    with pytest.raises(InputError, match=rf"OMP_NUM_THREADS='{bad}': not a positive whole number"):
        intra_op_threads(0, cores=4, env={"OMP_NUM_THREADS": bad})


def test_a_process_takes_its_affinity_and_the_environment():
    """In a fresh process pinned to one core: 1 thread; with OMP_NUM_THREADS=2: 2."""
    code = "from train.threads import set_threads; import torch; print(set_threads(0), torch.get_num_threads())"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    one = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert one.stdout.split()[-1] == "1" and "1 cores / 1 processes - 0 loader workers" in one.stdout, one.stderr
    two = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "OMP_NUM_THREADS": "2"})
    assert two.stdout.split()[-1] == "2" and "(OMP_NUM_THREADS)" in two.stdout, two.stderr
    assert usable_cores() >= 1
