"""Parameters as ``(param, grad)`` pairs, and their coalescing into spans.

A *parameter* is a pair of arrays, its value (float32) and its gradient
(float32, or float16 / bfloat16 for the rules that read them).
Parameters of one group that lie next to each other in memory (both values
and gradients, as the views of a :class:`~fastopt.optim.flat.FlatParameters` do)
are coalesced into one *span*, updated by a single kernel call.
"""
import numpy as np

from fastopt.optim._lowp import grad_dtype_name
from fastopt.optim.flat import FlatParameters


def _root(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _check_pair(i, pair):
    try:
        p, g = pair
    except (TypeError, ValueError):
        raise TypeError(f"params[{i}] must be a (param, grad) pair of float32 arrays, "
                        f"got {type(pair).__name__}") from None
    for what, a in (("param", p), ("grad", g)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"params[{i}] {what} must be a numpy.ndarray, got {type(a).__name__}")
        if a.dtype != np.float32 and (what == "param" or grad_dtype_name(a.dtype) is None):
            raise TypeError(f"params[{i}] {what} must have dtype float32"
                            f"{'' if what == 'param' else ', float16 or bfloat16'}, "
                            f"got {a.dtype}")
        if not a.flags.c_contiguous:
            raise ValueError(f"params[{i}] {what} must be C-contiguous")
    if not p.flags.writeable:
        raise ValueError(f"params[{i}] param is read-only")
    if p.shape != g.shape:
        raise ValueError(f"params[{i}]: grad has shape {g.shape} but param has {p.shape}")
    return p, g


def as_pairs(params):
    """A FlatParameters, or an iterable of (param, grad) pairs, as a list of pairs."""
    if isinstance(params, FlatParameters):
        return list(params)
    if isinstance(params, np.ndarray):
        raise TypeError("params must be a FlatParameters or (param, grad) pairs, got a single "
                        "array (an optimizer also needs the gradient)")
    try:
        items = list(params)
    except TypeError:
        raise TypeError(f"params must be a FlatParameters or an iterable of (param, grad) "
                        f"pairs, got {type(params).__name__}") from None
    return [_check_pair(i, pair) for i, pair in enumerate(items)]


def _follows(a, b):
    """True if ``b`` starts where ``a`` ends, inside one contiguous buffer."""
    root = _root(a)
    return (a.dtype == b.dtype and a.ctypes.data + a.nbytes == b.ctypes.data
            and _root(b) is root
            and root.flags.c_contiguous)


def _span_view(first, last):
    """One flat view (of ``first``'s dtype) from the start of ``first`` to
    the end of ``last``, which lie in order in one contiguous buffer
    (``_follows``)."""
    root = _root(first)
    start = first.ctypes.data - root.ctypes.data
    n = (last.ctypes.data + last.nbytes - first.ctypes.data) // first.itemsize
    return np.ndarray((n,), first.dtype, buffer=root, offset=start)


class Span:
    """Parameters adjacent in memory, updated by one kernel call."""

    __slots__ = ("param", "grad", "indices", "sizes", "state", "step")

    def __init__(self, param, grad, indices, sizes):
        self.param, self.grad, self.indices, self.sizes = param, grad, indices, sizes
        self.state = {}
        self.step = 0

    def views(self, flat):
        """Per-parameter views (index -> array) of a span-sized flat array."""
        out, lo = {}, 0
        for i, size in zip(self.indices, self.sizes):
            out[i] = flat[lo:lo + size]
            lo += size
        return out


def coalesce(pairs, indices):
    """Group consecutive parameters whose values and grads are adjacent."""
    spans, run = [], []

    def flush():
        if not run:
            return
        ps, gs = [pairs[k][0] for k in run], [pairs[k][1] for k in run]
        p = _span_view(ps[0], ps[-1]) if len(run) > 1 else ps[0].reshape(-1)
        g = _span_view(gs[0], gs[-1]) if len(run) > 1 else gs[0].reshape(-1)
        spans.append(Span(p, g, [indices[k] for k in run], [a.size for a in ps]))
        run.clear()

    for k, (p, g) in enumerate(pairs):
        if run:
            pp, pg = pairs[run[-1]]
            if not (_follows(pp, p) and _follows(pg, g)):
                flush()
        run.append(k)
    flush()
    return spans


def is_group_list(params):
    """True for a list of dicts (parameter groups), as torch accepts."""
    if isinstance(params, (list, tuple)) and params:
        return all(isinstance(g, dict) for g in params)
    return False
