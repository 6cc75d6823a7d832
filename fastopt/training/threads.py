"""How many threads the trainer's matrix products may use.

A training step multiplies matrices of a mini-batch's size (32 x 784 by
784 x 32, ...), one after another, a dozen times per step.  That is too
little work for a second BLAS thread to pay for waking it, and between two
products OpenBLAS's idle worker threads spin (busy-wait) on their cores.
On an idle machine the second thread gains a little; on a machine where
other programs run, the spinning worker takes the core another process
needs and the main thread waits for a worker that is descheduled, and a
step becomes many times slower (BENCHMARKS.md has the measurements).  So by
default (``threads='auto'``) ``fit``, ``evaluate`` and ``predict`` run BLAS
on the calling thread only, which never spins and gives the same bits
whatever the machine's load; ``threads=n`` asks for ``n``.
"""
import contextlib

from fastopt._validate import check_int

_blas = None


def check_threads(threads):
    """``threads`` checked: 'auto' or an int >= 1."""
    if threads == "auto":
        return threads
    if isinstance(threads, str):
        raise ValueError(f"threads must be 'auto' or an int >= 1, got {threads!r}")
    return check_int(threads, "threads", minimum=1)


def _blas_libraries():
    """threadpoolctl's controllers of the loaded BLAS libraries, found once."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController().select(user_api="blas").lib_controllers
    return _blas


@contextlib.contextmanager
def blas_threads(threads):
    """Run the block with BLAS on ``threads`` threads (checked by
    :func:`check_threads`; 'auto' is one), and restore each library's own
    count afterwards.  Cheap enough for every call of ``train_on_batch``:
    a library already at that count is left alone."""
    n = 1 if check_threads(threads) == "auto" else threads
    changed = []
    for lib in _blas_libraries():
        before = lib.get_num_threads()
        if before != n:
            lib.set_num_threads(n)
            changed.append((lib, before))
    try:
        yield
    finally:
        for lib, before in changed:
            lib.set_num_threads(before)
