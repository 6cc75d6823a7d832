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
from fastopt._validate import check_int

_controller = None


def check_threads(threads):
    """``threads`` checked: 'auto' or an int >= 1."""
    if threads == "auto":
        return threads
    if isinstance(threads, str):
        raise ValueError(f"threads must be 'auto' or an int >= 1, got {threads!r}")
    return check_int(threads, "threads", minimum=1)


def blas_threads(threads):
    """A context manager in which BLAS uses ``threads`` threads (checked by
    :func:`check_threads`; 'auto' is one)."""
    global _controller
    n = 1 if check_threads(threads) == "auto" else threads
    if _controller is None:  # threadpoolctl finds the loaded BLAS libraries once
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=n, user_api="blas")
