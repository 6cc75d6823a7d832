"""The collectives of data-parallel training, on one contiguous float32
buffer each: allreduce of a gradient, reduce-scatter into 64-byte-aligned
shards, all-gather of parameters, and the comparisons that keep ranks honest
(a hash of the parameters, a fingerprint of a run's settings).

Every function takes ``comm`` (an mpi4py intracommunicator; default
``MPI.COMM_WORLD``) and is collective: every rank of ``comm`` must call it,
in the same order.
"""
import hashlib

import numpy as np

from fastopt._placement import ALIGNMENT
from fastopt._validate import check_int
from fastopt.distributed._env import mpi, world
from fastopt.optim.flat import FlatParameters

_FLOATS_PER_LINE = ALIGNMENT // 4


def _buffer(buf, name, what="gradient"):
    """The float32 buffer of ``buf``: a FlatParameters' ``grad`` (or
    ``data`` for parameters), or a C-contiguous writable float32 array."""
    if isinstance(buf, FlatParameters):
        return buf.grad if what == "gradient" else buf.data
    if not isinstance(buf, np.ndarray):
        raise TypeError(f"{name} must be a FlatParameters or a float32 array, "
                        f"got {type(buf).__name__}")
    if buf.dtype != np.float32:
        raise TypeError(f"{name} must have dtype float32, got {buf.dtype}")
    if not buf.flags.c_contiguous or not buf.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writable")
    return buf.reshape(-1)


def shard_bounds(n, size):
    """The ``size + 1`` offsets that cut ``n`` floats into ``size`` shards,
    shard ``k`` being ``[b[k], b[k+1])``: every offset but the last is a
    multiple of 16 floats (64 bytes), so a shard of a 64-byte-aligned buffer
    starts on a cache line, and shards differ by at most 16 floats (+ the
    last one's remainder).  Shards are empty when ``n`` < 16 x ``size``."""
    n = check_int(n, "n", minimum=0)
    size = check_int(size, "size", minimum=1)
    lines = -(-n // _FLOATS_PER_LINE)
    return [min(n, (lines * k // size) * _FLOATS_PER_LINE) for k in range(size + 1)]


def _weigh(grad, rows, total_rows):
    """Scale this rank's mean-loss gradient by ``rows / total_rows`` in place."""
    if rows is None and total_rows is None:
        return
    if rows is None or total_rows is None:
        raise TypeError("pass both rows and total_rows, or neither")
    total_rows = check_int(total_rows, "total_rows", minimum=1)
    rows = check_int(rows, "rows", minimum=0, maximum=total_rows)
    if rows == 0:
        grad.fill(0)
    elif rows != total_rows:
        np.multiply(grad, np.float32(rows / total_rows), out=grad)


def allreduce_gradients_(grads, rows=None, total_rows=None, comm=None):
    """Sum the gradient buffer over the ranks of ``comm``, in place: one
    ``MPI_Allreduce(MPI_IN_PLACE, ..., MPI_SUM)`` over the whole buffer.

    ``grads``: a FlatParameters (its ``grad``) or a float32 array.  With
    ``rows`` and ``total_rows``, each rank's gradient (of the mean loss over
    its ``rows`` samples) is first multiplied by ``rows / total_rows``, so the
    sum is the gradient of the mean over all ``total_rows`` samples of the
    global batch, however unevenly they were split (a rank with no rows
    contributes zeros).  Every rank ends with the same buffer.
    """
    grad = _buffer(grads, "grads")
    comm = world(comm)
    _weigh(grad, rows, total_rows)
    comm.Allreduce(mpi().IN_PLACE, grad, op=mpi().SUM)


def reduce_scatter_gradients(grads, out, rows=None, total_rows=None, comm=None):
    """Sum the gradient buffer over the ranks and leave on each rank only
    its shard of the sum, in ``out`` (float32, of the rank's shard size
    ``b[r+1] - b[r]`` with ``b = shard_bounds(grads.size, comm.size)``): one
    ``MPI_Reduce_scatter``.  ``rows`` / ``total_rows`` weigh as in
    :func:`allreduce_gradients_` (``grads`` is then scaled in place)."""
    grad = _buffer(grads, "grads")
    out = _buffer(out, "out")
    comm = world(comm)
    bounds = shard_bounds(grad.size, comm.size)
    counts = np.diff(bounds)
    if out.size != counts[comm.rank]:
        raise ValueError(f"out must hold this rank's shard of {counts[comm.rank]} floats, "
                         f"got {out.size}")
    _weigh(grad, rows, total_rows)
    comm.Reduce_scatter(grad, out, recvcounts=counts.tolist(), op=mpi().SUM)


def allgather_params_(params, comm=None):
    """Each rank's shard of the parameter buffer (``params``: a
    FlatParameters' ``data`` or a float32 array; shards by
    :func:`shard_bounds`) copied to every rank, in place: one
    ``MPI_Allgatherv(MPI_IN_PLACE, ...)``."""
    data = _buffer(params, "params", what="params")
    comm = world(comm)
    _allgather(data, comm)


def _allgather(data, comm):
    bounds = shard_bounds(data.size, comm.size)
    counts, displs = np.diff(bounds).tolist(), bounds[:-1]
    MPI = mpi()
    comm.Allgatherv(MPI.IN_PLACE, [data, (counts, displs), MPI.FLOAT])


def _gather_to(data, comm, root):
    """Like :func:`_allgather`, but only ``root``'s buffer is completed."""
    bounds = shard_bounds(data.size, comm.size)
    counts, displs = np.diff(bounds).tolist(), bounds[:-1]
    MPI = mpi()
    if comm.rank == root:
        comm.Gatherv(MPI.IN_PLACE, [data, (counts, displs), MPI.FLOAT], root=root)
    else:
        mine = data[bounds[comm.rank]:bounds[comm.rank + 1]]
        comm.Gatherv([mine, MPI.FLOAT], None, root=root)


def parameter_hash(array):
    """A short hex digest (BLAKE2b, 16 bytes) of an array's bytes."""
    a = np.ascontiguousarray(array)
    return hashlib.blake2b(a.view(np.uint8).reshape(-1), digest_size=16).hexdigest()


def compare_parameters(params, comm=None):
    """``(identical, hashes)``: the hash of this rank's parameter buffer
    (``params``: FlatParameters or array) gathered from every rank, and
    whether all are equal (bit for bit)."""
    data = _buffer(params, "params", what="params")
    hashes = world(comm).allgather(parameter_hash(data))
    return len(set(hashes)) == 1, hashes


def check_same(fingerprint, comm=None):
    """Raise the same ValueError on every rank if the ranks' ``fingerprint``
    dicts (what must agree: shapes, hyperparameters, data hashes, seeds)
    differ, naming each differing key and its value on rank 0 and on the
    first rank that differs."""
    if not isinstance(fingerprint, dict):
        raise TypeError(f"fingerprint must be a dict, got {type(fingerprint).__name__}")
    comm = world(comm)
    everyone = comm.allgather({k: repr(v) for k, v in fingerprint.items()})
    differ = []
    for key in sorted(set().union(*everyone)):
        values = [f.get(key, "<missing>") for f in everyone]
        bad = next((r for r, v in enumerate(values) if v != values[0]), None)
        if bad is not None:
            differ.append(f"{key} (rank 0: {values[0]}, rank {bad}: {values[bad]})")
    if differ:
        raise ValueError(f"the {comm.size} ranks were not given the same run: they differ in "
                         + "; ".join(differ))
