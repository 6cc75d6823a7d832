"""Seconds per epoch of the seed model (784-32-64-128-256-10, Adam, MNIST)
trained by one process and data-parallel by two (``mpiexec -n 2``,
``fit(..., distributed=True)``), one thread per process, at global batch 32
and 128, with the test accuracy after the epoch.

The machine may be shared, so the two runs of a round are back to back and
their order alternates round by round; each round uses the next seed (the
same for both).  extra_info holds each run's fit time (measured inside the
process, after a barrier; process start-up is excluded), the median
speed-up and the mean accuracies.  The group's own timing is one whole
round (both runs with their start-up) and is not the number to read.
Issue #18's targets: 2 ranks >= 1.6x faster at batch 128, >= 1.3x at 32,
accuracy within 0.3 points (they are reported, not asserted).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _epoch(tmp_path, ranks, batch, samples, seed):
    out = tmp_path / f"r{ranks}-b{batch}-s{seed}.json"
    # run as a script: its directory, not the checkout's unbuilt fastopt/, is on sys.path
    cmd = [sys.executable, str(Path(__file__).parent / "mpi_epoch.py"), str(out), str(batch),
           str(samples), str(seed)]
    if ranks > 1:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", str(ranks), *cmd]
    env = dict(os.environ, **ONE_THREAD)
    subprocess.run(cmd, check=True, timeout=1800, env=env, cwd=tmp_path,
                   capture_output=True)
    return json.loads(out.read_text())


@pytest.mark.parametrize("batch", [32, 128], ids=["batch32", "batch128"])
def test_epoch_one_and_two_ranks(benchmark, tmp_path, request, batch):
    samples = request.config.getoption("--train-samples")
    benchmark.group = f"MNIST epoch over MPI, batch {batch}, {samples} samples, 1t per rank"
    runs = {1: [], 2: []}

    def round_():
        seed = len(runs[1])
        order = (1, 2) if seed % 2 == 0 else (2, 1)
        for ranks in order:
            runs[ranks].append(_epoch(tmp_path, ranks, batch, samples, seed))

    rounds = request.config.getoption("--mpi-rounds")
    load_before = os.getloadavg()
    benchmark.pedantic(round_, rounds=rounds, iterations=1)
    seconds = {r: [run["seconds"] for run in runs[r]] for r in runs}
    accuracy = {r: float(np.mean([run["accuracy"] for run in runs[r]])) for r in runs}
    speedups = [a / b for a, b in zip(seconds[1], seconds[2])]
    benchmark.extra_info.update({
        "batch": batch, "samples": samples, "threads_per_rank": 1,
        "seconds_1rank": seconds[1], "seconds_2ranks": seconds[2],
        "speedup_median": float(np.median(speedups)), "speedups": speedups,
        "accuracy_1rank": accuracy[1], "accuracy_2ranks": accuracy[2],
        "loadavg_before": load_before, "loadavg_after": os.getloadavg()})
    assert all(run["ranks"] == 2 for run in runs[2])
