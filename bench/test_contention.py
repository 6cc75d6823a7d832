"""Training on a machine where other programs run: `fastopt train` with its
default threads against fixed thread counts, quiet and beside busy processes.

For each condition (0, 2 or 4 busy processes, which the benchmark starts and
stops itself: ``python -c "while True: pass"``), each round runs
``fastopt train --epochs 1`` once per setting (the default, ``--threads 1``,
``--threads 2``) in a shuffled order, each as its own process.  Recorded per
setting: the epoch's seconds as the command's history reports them (the
median over rounds is the group's figure) and the whole command's wall time
(start-up, data loading, the epoch and the test evaluation).  The report
reads each condition as a paired group: 'vs fastopt' is the per-round ratio
of a fixed thread count to the default.  Not a test: nothing is asserted
about the times.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from bench import impls

SETTINGS = {"fastopt": [], "--threads 1": ["--threads", "1"], "--threads 2": ["--threads", "2"]}
BUSY = "while True: pass"


def _busy(n):
    return [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(n)]


def _stop(procs):
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def _train(flags, samples, workdir):
    """(epoch seconds, whole-command seconds) of one `fastopt train` run."""
    history = os.path.join(workdir, "history.json")
    cmd = [sys.executable, "-m", "fastopt", "train", "--epochs", "1", "--limit", str(samples),
           "--validation-split", "0", "--history", history, *flags]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=workdir, timeout=1800)
    wall = time.perf_counter() - start
    with open(history) as f:
        rows = json.load(f)
    return rows[0]["seconds"], wall


@pytest.mark.parametrize("busy", [0, 2, 4], ids=["quiet", "2 busy", "4 busy"])
def test_train_under_load(benchmark, request, tmp_path, busy):
    samples = request.config.getoption("--train-samples")
    epoch = {name: [] for name in SETTINGS}
    wall = {name: [] for name in SETTINGS}
    order = np.random.default_rng(busy)
    procs = _busy(busy)
    try:
        def one_round():
            for name in order.permutation(list(SETTINGS)):
                e, w = _train(SETTINGS[name], samples, tmp_path)
                epoch[name].append(e)
                wall[name].append(w)

        benchmark.group = f"fastopt train, 1 epoch of {samples} samples, {busy} busy processes"
        benchmark.extra_info.update({"impl": "one round", "busy": busy, "samples": samples,
                                     "paired": True, "nproc": os.cpu_count()})
        benchmark.pedantic(one_round, rounds=request.config.getoption("--load-rounds"),
                           iterations=1)
    finally:
        _stop(procs)
    times = impls.paired_times(epoch)
    for name, entry in times.items():
        entry["command_median"] = float(np.median(wall[name]))
        # start-up, data loading and the test evaluation: the command outside the epoch
        entry["outside_epoch_median"] = float(np.median(np.subtract(wall[name], epoch[name])))
    benchmark.extra_info["times"] = times
