"""``fit(..., distributed=True | "sharded")``: the data-parallel side of one
fit, over MPI (:mod:`fastopt.distributed`; mpi4py is imported only here, when
a distributed fit starts).

Every rank runs the same fit over the same data with the same seed, so all
draw the same permutation each epoch.  Of each global batch of ``B`` rows,
rank ``r`` of ``N`` takes rows ``[B r / N, B (r+1) / N)`` and computes, in one
call into C, the gradient of their loss summed and divided by ``B`` (its
share of the global mean: the loss gradient's scale is ``1 / B``, so no pass
weighs it afterwards); the gradients are combined by one collective: an
in-place allreduce of the flat gradient (``True``), or a reduce-scatter
into 64-byte-aligned shards, the
update of this rank's shard, and an all-gather of the parameters
(``"sharded"``).  Then every rank holds the same parameters.  Loss and
metric sums are reduced once per epoch; validation is split across
the ranks and its sums reduced.  Only rank 0 prints and writes checkpoints.
"""
import sys
import time
import traceback

import numpy as np

from fastopt import distributed as dist
from fastopt.distributed._env import mpi
from fastopt.training.callbacks import ModelCheckpoint

MODES = (False, True, "sharded")
#: seconds a failing rank waits between writing its traceback and aborting the job
_ABORT_GRACE_S = 0.2


def check_mode(distributed):
    """``distributed`` as given, if it is False, True or 'sharded'."""
    if not any(distributed is m for m in (False, True)) and distributed != "sharded":
        raise ValueError(f"distributed must be False, True or 'sharded', got {distributed!r}")
    return distributed


def _describe(value):
    """A value as every rank describes it the same way (schedules by config)."""
    if hasattr(value, "get_config"):
        return (type(value).__name__, value.get_config())
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else type(value).__name__


_SAMPLE_ROWS = 1024


def _data_hash(*arrays):
    """Per array: shape, dtype, an exact checksum of all its bytes (the sum
    of its 32-bit words as integers: the same on any CPU, in any order) and
    a hash of up to 1,024 evenly spaced rows.  Hashing all of MNIST's 188 MB
    would cost each rank most of a second; the checksum still reads every
    value, at memory speed."""
    out = []
    for a in arrays:
        a = np.ascontiguousarray(a)
        rows = np.unique(np.linspace(0, len(a) - 1, min(len(a), _SAMPLE_ROWS)).astype(np.int64))
        words = a.reshape(-1).view(np.uint32 if a.nbytes % 4 == 0 else np.uint8)
        checksum = int(np.add.reduce(words, dtype=np.uint64))
        out.append((a.shape, str(a.dtype), checksum, dist.parameter_hash(a[rows])))
    return out


def fingerprint(model, x, y, validation, settings):
    """What every rank must agree on before training: the model, its
    optimizer and state, its weights, the shuffling generator, the data, and
    ``settings`` (fit's arguments)."""
    opt = model.optimizer
    return {
        "model": model.get_config(), "loss": model.loss, "metrics": model.metrics,
        "optimizer": f"{opt.family}.{type(opt).__name__}",
        "hyperparameters": [{k: _describe(v) for k, v in g.items() if k != "params"}
                            for g in opt.param_groups],
        "optimizer steps": [s.step for spans in opt._spans for s in spans],
        "parameters": dist.parameter_hash(model.params.data),
        "shuffling generator (seed)": model.rng_state,
        "training data": _data_hash(x, y),
        "validation data": _data_hash(*validation) if validation else None,
        **settings,
    }


class DataParallel:
    """The distributed side of one fit of ``model`` (``mode`` True or
    'sharded') on ``comm``; FitRun calls :meth:`local`, :meth:`step`,
    :meth:`reduce_sums`; fit calls the rest."""

    def __init__(self, model, mode, comm=None):
        self.comm = dist.world(comm)
        self.rank, self.size = self.comm.rank, self.comm.size
        self.model, self.mode = model, mode
        self.sharded = None
        self.checkpointing = False
        # the step's allreduce, checked once here (allreduce_gradients_ checks
        # its arguments on every call: 4 us a step)
        MPI = mpi()
        self._sum_gradients = (MPI.IN_PLACE, model.params.grad, MPI.SUM)

    def start(self, x, y, validation, rows, settings):
        """The start-up check (the same ValueError on every rank if the
        ranks differ), then the global batch against the number of ranks."""
        dist.check_same(fingerprint(self.model, x, y, validation, settings), self.comm)
        if rows < self.size:
            raise ValueError(f"the global batch ({rows} samples) is smaller than the number "
                             f"of ranks ({self.size}): every rank needs at least one sample")
        if self.mode == "sharded":
            self.sharded = dist.ShardedOptimizer(self.model.optimizer, self.model.params,
                                                 self.comm)

    def callbacks(self, callbacks, verbose):
        """``(callbacks, verbose)`` for this rank: rank 0 keeps all; the
        others print nothing and write no checkpoints (every rank keeps the
        rest, e.g. EarlyStopping, which decides identically from the reduced
        logs)."""
        self.checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)
        if self.rank == 0:
            return callbacks, verbose
        return [c for c in callbacks if not isinstance(c, ModelCheckpoint)], 0

    def local(self, index):
        """This rank's rows of a global batch ``index``."""
        n = len(index)
        return index[n * self.rank // self.size:n * (self.rank + 1) // self.size]

    def step(self, local_rows, loss_finite):
        """Combine the ranks' gradients and update: True if the batch is
        skipped because the loss or the summed gradient is not finite on some
        rank (every rank decides the same).  Each rank's gradient is already
        its share of the global batch's mean (``Network.gradients``'
        ``total_rows``; zeros for a rank without rows), so the sum needs no
        weighting pass."""
        grad = self.model.params.grad
        if not loss_finite and local_rows:
            grad[0] = np.nan  # so that every rank skips this batch
        if self.sharded is not None:
            return self.sharded.step(skip_nonfinite=True)
        in_place, grad, op = self._sum_gradients  # allreduce_gradients_(grad, comm=...)
        self.comm.Allreduce(in_place, grad, op=op)
        return self.model.optimizer.step(skip_nonfinite=True)

    def reduce_sums(self, *values):
        """The sums over the ranks of ``values`` (one small allreduce)."""
        out = np.array(values, np.float64)
        self.comm.Allreduce(mpi().IN_PLACE, out)
        return out.tolist()

    def validate(self, x, y):
        """Validation logs over the whole set: each rank evaluates its part."""
        lo, hi = len(x) * self.rank // self.size, len(x) * (self.rank + 1) // self.size
        objective = self.model.objective
        loss, sums = (self.model._evaluate_sums(x[lo:hi], y[lo:hi]) if hi > lo
                      else (0.0, [0.0] * len(objective.metrics)))
        loss, *sums = self.reduce_sums(loss, *sums)
        return objective.logs(objective.mean_loss(loss, len(x)), sums, len(x))

    def before_epoch_callbacks(self):
        """Sharded state gathered on rank 0 when a checkpoint will be written."""
        if self.sharded is not None and self.checkpointing:
            self.sharded.gather(root=0)

    def run(self, train):
        """``train()``, then the end-of-run check.  An exception other than
        FloatingPointError (which every rank raises together) aborts the
        whole MPI job, so no rank waits forever for one that failed alone."""
        try:
            history = train()
        except FloatingPointError:
            raise
        except BaseException:
            # the traceback in one write, and a moment for the process manager
            # to forward it: Abort ends every rank at once, and output still
            # in transit is lost (piece by piece, only its first line arrived)
            sys.stderr.write(traceback.format_exc())
            sys.stderr.flush()
            time.sleep(_ABORT_GRACE_S)
            self.comm.Abort(1)
            raise
        return self.finish(history)

    def finish(self, history):
        """Gather sharded state (the model's optimizer then holds all of it
        on every rank) and compare the parameters' hashes across ranks."""
        if self.sharded is not None:
            self.sharded.gather()
        identical, hashes = dist.compare_parameters(self.model.params, self.comm)
        history.distributed = {"ranks": self.size, "mode": "sharded" if self.sharded else
                               "allreduce", "parameters_identical": identical,
                               "parameter_hash": hashes[0]}
        if not identical:
            raise RuntimeError(f"the ranks' parameters differ at the end of training "
                               f"(hashes {hashes})")
        return history

    def report(self):
        h = self.model.history.distributed
        return (f"parameters identical on all {h['ranks']} ranks ({h['mode']}, "
                f"hash {h['parameter_hash']})")


def setup(model, distributed, data, rows, callbacks, verbose, settings):
    """``(parallel, callbacks, verbose)`` for a fit: parallel None when not
    ``distributed``; else a started :class:`DataParallel` (the ranks checked
    against each other) and this rank's callbacks and verbosity.  ``data``
    is ``(x, y, validation)``."""
    if not distributed:
        return None, callbacks, verbose
    par = DataParallel(model, distributed)
    par.start(*data, rows, {**settings, "mode": distributed})
    return (par, *par.callbacks(callbacks, verbose))


def validator(model, parallel, validation):
    """fit's validation: over the whole set here, or split across the ranks."""
    if parallel is None:
        return lambda: model._evaluate(*validation)
    return lambda: parallel.validate(*validation)


def epoch_sums(parallel, total_loss, sums, seen):
    """The epoch's loss sum, metric sums and row count over all ranks (or as
    they are without ``parallel``)."""
    if parallel is None:
        return total_loss, sums, seen
    total_loss, *sums, seen = parallel.reduce_sums(total_loss, *sums, seen)
    return total_loss, sums, int(round(seen))


__all__ = ["DataParallel", "MODES", "check_mode", "epoch_sums", "fingerprint", "setup",
           "validator"]
