"""One epoch of the seed model (784-32-64-128-256-10, Adam, MNIST), run by
bench/test_distributed.py alone or under ``mpiexec -n N``:

    python bench/mpi_epoch.py OUT.json BATCH SAMPLES SEED [sharded]

Times ``fit`` only (after a barrier, so every rank starts together; the
start-up check of the ranks, which hashes the data, is inside the time),
then rank 0 writes the seconds and the test accuracy to OUT.json.
"""
import json
import sys
import time

import numpy as np

from fastopt import MLP
from fastopt.datasets import load_mnist
from fastopt.distributed import launched_by_mpiexec

LAYERS = [784, 32, 64, 128, 256, 10]


def main(out, batch, samples, seed, mode=None):
    launched = launched_by_mpiexec()
    distributed = ("sharded" if mode == "sharded" else True) if launched else False
    (x, y), (xt, yt) = load_mnist()
    x = (x[:samples].reshape(-1, 784) / np.float32(255)).astype(np.float32)
    xt = (xt.reshape(-1, 784) / np.float32(255)).astype(np.float32)
    model = MLP(LAYERS, seed=seed)
    model.compile("adam", metrics=["accuracy"])
    comm = None
    if distributed:
        from fastopt.distributed import world
        comm = world()
        comm.Barrier()
    start = time.perf_counter()
    model.fit(x, y[:samples].astype(np.int64), batch_size=batch, epochs=1, verbose=0,
              threads=1, distributed=distributed)
    seconds = time.perf_counter() - start
    if comm is not None:
        seconds = max(comm.allgather(seconds))  # the slowest rank's
    if comm is None or comm.rank == 0:
        accuracy = model.evaluate(xt, yt.astype(np.int64), threads=1)[1]
        with open(out, "w") as f:
            json.dump({"seconds": seconds, "accuracy": float(accuracy),
                       "ranks": launched[1] if launched else 1}, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:])
