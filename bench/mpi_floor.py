"""The floor of a data-parallel step of the seed model (784-32-64-128-256-10,
Keras Adam, MNIST), each part timed in isolation, one thread per process:

    python bench/mpi_floor.py [OUT.json]              # the one-rank parts
    mpiexec -n 2 python bench/mpi_floor.py [OUT.json] # + the collectives, 2 ranks
    python bench/mpi_floor.py --bound ONE.json TWO.json  # the bounds of the two runs

Parts (microseconds, min and median of many repetitions; on two ranks the
slower rank's time of each repetition, every repetition starting after a
barrier):

- ``G(b)``: ``Network.gradients`` (forward, loss, backward) over ``b`` random
  MNIST rows gathered by index, b = 16, 32, 64, 128; alone (repeated, caches
  warm) and within a step (after an optimizer update, as in ``fit``);
- ``update``: ``optimizer.step(skip_nonfinite=True)`` of Keras' Adam over
  the 71,146 parameters, after a pass (as in ``fit``) and repeated alone;
- ``allreduce``: ``MPI_Allreduce(MPI_IN_PLACE, SUM)`` of the 71,146-float
  gradient; ``allreduce 4 B`` (one float32) and ``barrier``, MPI's minimum;
  the sharded step's reduce-scatter and all-gather of the same buffer;
- ``loop``: fit's per-step Python: an epoch of ``fit`` at batch 32 and 128
  with ``Network.gradients``, the optimizer's step and the allreduce
  replaced by functions that return at once, divided by its steps.

``--bound``: with ``T1 = X1 + G(b)`` and ``T2 = X2 + G(b/2) + C``, the
best ratio T1 / T2 with X1 = X2 = 0, and with X the measured update and loop
(the same on both sides: every rank still makes the whole update).
Rank 0 prints a table and writes OUT.json.
"""
import json
import sys
import time

import numpy as np

from fastopt import MLP
from fastopt.datasets import load_mnist
from fastopt.distributed import launched_by_mpiexec
from fastopt.training import loop
from fastopt.training.threads import blas_threads

LAYERS = [784, 32, 64, 128, 256, 10]
BATCHES = (16, 32, 64, 128)
REPEATS = 2000


class _Timer:
    """Times of repetitions of ``fn``, each after a barrier when ``comm``
    is given (the slower rank's time counts)."""

    def __init__(self, comm):
        self.comm = comm

    def __call__(self, fn, repeats=REPEATS, before=None):
        times = np.empty(repeats)
        for i in range(repeats):
            if before is not None:
                before(i)
            if self.comm is not None:
                self.comm.Barrier()
            t = time.perf_counter()
            fn(i)
            times[i] = time.perf_counter() - t
        if self.comm is not None:
            times = np.max(self.comm.allgather(times), axis=0)
        return {"min_us": float(times.min() * 1e6), "median_us": float(np.median(times) * 1e6)}


def _data():
    (x, y), _ = load_mnist()
    return (x.reshape(-1, 784) / np.float32(255)).astype(np.float32), y.astype(np.int64)


def _model():
    model = MLP(LAYERS, seed=0)
    model.compile("adam", metrics=["accuracy"])
    return model


def passes(timer, x, y):
    """G(b) alone and within a step, and the update after a pass and alone."""
    model, rng = _model(), np.random.default_rng(0)
    out = {}
    for b in BATCHES:
        net = model._network(b)
        index = [np.sort(rng.choice(len(x), b, replace=False)) for _ in range(64)]
        out[f"G({b}) alone"] = timer(lambda i: net.gradients(x, y, index[i % 64]))
        out[f"G({b}) in a step"] = timer(
            lambda i: net.gradients(x, y, index[i % 64]),
            before=lambda i: model.optimizer.step(skip_nonfinite=True))
    net = model._network(128)
    out["update after a pass"] = timer(
        lambda i: model.optimizer.step(skip_nonfinite=True),
        before=lambda i: net.gradients(x, y, index[i % 64]))
    out["update alone"] = timer(lambda i: model.optimizer.step(skip_nonfinite=True))
    return out


def collectives(timer, comm):
    from mpi4py import MPI
    from fastopt.distributed.collectives import _allgather, shard_bounds
    grad = np.random.default_rng(comm.rank).standard_normal(71146).astype(np.float32)
    one = np.ones(1, np.float32)
    counts = np.diff(shard_bounds(grad.size, comm.size)).tolist()
    shard = np.empty(counts[comm.rank], np.float32)

    def sharded(i):  # what the sharded step sends: a reduce-scatter, an all-gather
        comm.Reduce_scatter(grad, shard, recvcounts=counts)
        _allgather(grad, comm)

    return {
        "allreduce 71,146 floats": timer(lambda i: comm.Allreduce(MPI.IN_PLACE, grad)),
        "reduce-scatter + all-gather": timer(sharded),
        "allreduce 4 B": timer(lambda i: comm.Allreduce(MPI.IN_PLACE, one)),
        "barrier": timer(lambda i: comm.Barrier()),
    }


class _StubNetwork:
    metric_sums = [0.0]

    def __init__(self, rows):
        self.rows = rows

    def gradients(self, x, y, index, *args, **kwargs):
        return 0.5, 0


def _no_gradient_sum(comm):
    """``comm`` (the same communicator) whose Allreduce of the 71,146-float
    gradient returns at once; the other collectives run."""
    from mpi4py import MPI

    class NoGradientSum(MPI.Intracomm):
        def Allreduce(self, send, recv, **op):
            if getattr(recv, "size", 0) < 1000:
                super().Allreduce(send, recv, **op)

    return NoGradientSum(comm)


def loop_python(x, y, distributed):
    """fit's per-step Python (µs): epochs at batch 32 and 128 with the pass,
    the update and the allreduce stubbed, min and median of 5."""
    from fastopt.training import parallel
    real_start, real_epoch = parallel.DataParallel.start, loop.FitRun.epoch
    seconds = []

    def start(self, *args):
        real_start(self, *args)
        self.comm = _no_gradient_sum(self.comm)

    def timed_epoch(self, epoch, callbacks):
        t = time.perf_counter()
        logs = real_epoch(self, epoch, callbacks)
        seconds.append((time.perf_counter() - t) / self.steps)
        return logs

    parallel.DataParallel.start, loop.FitRun.epoch = start, timed_epoch
    out = {}
    try:
        for b in (32, 128):
            model = _model()
            model._training_network = _StubNetwork
            model.optimizer.step = lambda skip_nonfinite=False: False
            del seconds[:]
            model.fit(x, y, batch_size=b, epochs=5, verbose=0, distributed=distributed)
            out[f"loop at batch {b}"] = {"min_us": min(seconds) * 1e6,
                                         "median_us": float(np.median(seconds)) * 1e6}
    finally:
        parallel.DataParallel.start, loop.FitRun.epoch = real_start, real_epoch
    return out


def bounds(one, two):
    """T1 / T2 at batch 32 and 128 from the parts of a one-rank run (``one``)
    and a two-rank run (``two``): G(b) and X1 from ``one``, G(b/2) (both
    ranks passing at once), C and X2 from ``two``; with X = 0 and with the
    measured update and loop, per statistic (min, median)."""
    out = {}
    for b in (32, 128):
        for stat in ("min_us", "median_us"):
            g1, g2 = one[f"G({b}) in a step"][stat], two[f"G({b // 2}) in a step"][stat]
            c = two["allreduce 71,146 floats"][stat]
            x1 = one["update after a pass"][stat] + one[f"loop at batch {b}"][stat]
            x2 = two["update after a pass"][stat] + two[f"loop at batch {b} (2 ranks)"][stat]
            out[f"batch {b}, {stat[:-3]}"] = {
                "G(b)": g1, "G(b/2)": g2, "C": c, "X1": x1, "X2": x2,
                "bound X=0": g1 / (g2 + c), "bound measured X": (x1 + g1) / (x2 + g2 + c)}
    return out


def show_bounds(one_path, two_path):
    with open(one_path) as f1, open(two_path) as f2:
        result = bounds(json.load(f1)["parts"], json.load(f2)["parts"])
    for name, row in result.items():
        print(name, " ".join(f"{k} {v:.3f}" if k.startswith("bound") else f"{k} {v:.1f}"
                             for k, v in row.items()))


def main(out_path=None):
    launched = launched_by_mpiexec()
    x, y = _data()
    with blas_threads(1):
        if not launched:
            parts = {**passes(_Timer(None), x, y), **loop_python(x, y, False)}
            comm = None
        else:
            from fastopt.distributed import world
            comm = world()
            parts = {**passes(_Timer(comm), x, y), **collectives(_Timer(comm), comm)}
            parts.update({k + " (2 ranks)": v for k, v in loop_python(x, y, True).items()})
    if comm is None or comm.rank == 0:
        for name, t in parts.items():
            print(f"{name:32s} {t['min_us']:9.1f} {t['median_us']:9.1f}")
        if out_path:
            with open(out_path, "w") as f:
                json.dump({"ranks": launched[1] if launched else 1, "parts": parts}, f,
                          indent=1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bound"]:
        show_bounds(*sys.argv[2:4])
    else:
        main(*sys.argv[1:])
