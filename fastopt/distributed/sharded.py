"""Sharded optimizer state (ZeRO stage 1) over any fastopt optimizer.

The model's flat buffer is cut into ``comm.size`` 64-byte-aligned shards
(:func:`~fastopt.distributed.collectives.shard_bounds`).  Each rank keeps an
optimizer of the same class and hyperparameters over its shard only, so it
holds 1/N of the optimizer state.  One step is: reduce-scatter of the flat
gradient (each rank receives its shard of the sum), the fused update of the
shard, an all-gather of the parameters.  The arithmetic per element is the
unsharded optimizer's, so the result is the same as an unsharded run given
the same summed gradient.
"""
import copy

import numpy as np

from fastopt._kernels import all_finite
from fastopt.distributed._env import mpi, world
from fastopt.distributed.collectives import _allgather, _gather_to, reduce_scatter_gradients, \
    shard_bounds
from fastopt.optim._base import Optimizer
from fastopt.optim.flat import FlatParameters, aligned_zeros


def _offset(array, base):
    return (array.ctypes.data - base.ctypes.data) // base.itemsize


def _check_covers(optimizer, params):
    """The optimizer must update exactly ``params``' buffer, grads from its grad buffer."""
    spans = [s for group in optimizer._spans for s in group]
    n, data, grad = params.size, params.data, params.grad
    inside = all(0 <= _offset(s.param, data) <= n - s.param.size
                 and _offset(s.grad, grad) == _offset(s.param, data)
                 and np.shares_memory(s.param, data) and np.shares_memory(s.grad, grad)
                 for s in spans)
    if not inside or sum(s.param.size for s in spans) != n:
        raise ValueError("optimizer must update exactly params' buffer (construct it over "
                         "the FlatParameters, or compile the model first)")


class ShardedOptimizer:
    """Wrap a built fastopt ``optimizer`` over the FlatParameters ``params``
    (NumPy/PyTorch family or Keras family) so that each rank of ``comm``
    keeps the optimizer state of its shard only (ZeRO stage 1).

    :meth:`step` is collective: every rank first writes its weighted
    contribution into ``params.grad`` (the gradients of all ranks sum to the
    batch gradient; :func:`~fastopt.distributed.reduce_scatter_gradients`
    explains the weights), then calls ``step(rows, total_rows)``.  After it,
    every rank holds the same updated parameters.  :meth:`state_dict`
    gathers the shards into the wrapped optimizer's ordinary state_dict
    (which loads into the unsharded optimizer too); :meth:`load_state_dict`
    takes one.  Keras' ``clipnorm`` and ``global_clipnorm`` need whole
    tensors or the whole gradient and are rejected; ``clipvalue`` works.
    """

    def __init__(self, optimizer, params, comm=None):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastopt optimizer, got "
                            f"{type(optimizer).__name__}")
        if not isinstance(params, FlatParameters):
            raise TypeError(f"params must be a FlatParameters, got {type(params).__name__}")
        if not optimizer.param_groups:
            raise ValueError("optimizer is not built: build it over params first")
        for clip in ("clipnorm", "global_clipnorm"):
            if getattr(optimizer, clip, None) is not None:
                raise ValueError(f"a sharded optimizer cannot apply Keras' {clip} (it needs "
                                 f"norms over whole tensors); use clipvalue or no clipping")
        _check_covers(optimizer, params)
        self.comm = world(comm)
        self.optimizer, self.params = optimizer, params
        self.bounds = shard_bounds(params.size, self.comm.size)
        self.lo, self.hi = self.bounds[self.comm.rank], self.bounds[self.comm.rank + 1]
        self.shard_grad = aligned_zeros(self.hi - self.lo)
        self._full_spans = [(g, s) for g, spans in enumerate(optimizer._spans) for s in spans]
        self.inner, self._pieces = self._shard_optimizer()
        self._scatter_state()

    # -- the shard's optimizer -------------------------------------------------
    def _shard_optimizer(self):
        """An optimizer like the wrapped one over this rank's shard, and for
        each of its spans the index of the full span and the offset range
        ``[a, b)`` it covers (None when this rank's shard is empty)."""
        opt, data = self.optimizer, self.params.data
        groups, pieces, self._group_of = [], [], []
        for g, group in enumerate(opt.param_groups):
            pairs = []
            for k, (gk, span) in enumerate(self._full_spans):
                start = _offset(span.param, data)
                a, b = max(start, self.lo), min(start + span.param.size, self.hi)
                if gk == g and a < b:
                    pairs.append((data[a:b], self.shard_grad[a - self.lo:b - self.lo]))
                    pieces.append((k, a, b))
            if pairs:
                self._group_of.append(g)  # the wrapped group each shard group follows
                groups.append({**{key: v for key, v in group.items() if key != "params"},
                               "params": pairs})
        if not groups:
            return None, []
        inner = copy.copy(opt)  # same class, hyperparameters, clipping, name
        inner.param_groups, inner._params, inner._spans = [], [], []
        for group in groups:
            inner.add_param_group(group)
        spans = [s for group in inner._spans for s in group]
        if len(spans) != len(pieces):  # pieces of distinct spans never touch
            raise RuntimeError("internal: shard spans do not match the optimizer's spans")
        return inner, list(zip(spans, pieces))

    def _scatter_state(self):
        """Copy this rank's shard of the wrapped optimizer's state (if any:
        after a checkpoint load) into the shard optimizer; drop the full copy."""
        for inner_span, (k, a, b) in self._pieces:
            span = self._full_spans[k][1]
            start = _offset(span.param, self.params.data)
            inner_span.step = span.step
            inner_span.state = {name: _aligned_copy(full[a - start:b - start])
                                for name, full in span.state.items()}
        self.steps = [span.step for _, span in self._full_spans]
        for _, span in self._full_spans:
            span.state = {}

    # -- stepping ----------------------------------------------------------------
    def step(self, rows=None, total_rows=None, skip_nonfinite=False):
        """Reduce-scatter ``params.grad`` (weighted by ``rows / total_rows``
        if given), update this rank's shard with the fused kernel, all-gather
        the parameters.  With ``skip_nonfinite``, if the summed gradient holds
        nan or inf on any rank's shard, nothing is updated anywhere and True
        is returned (one more tiny allreduce decides it)."""
        reduce_scatter_gradients(self.params.grad, self.shard_grad, rows, total_rows,
                                 self.comm)
        if skip_nonfinite:
            bad = 0 if all_finite(self.shard_grad) else 1
            if self.comm.allreduce(bad, op=mpi().MAX):
                return True
        if self.inner is not None:
            self._sync_hyperparameters()
            self.inner.step()
        self.steps = [s + 1 for s in self.steps]
        _allgather(self.params.data, self.comm)
        return False if skip_nonfinite else None

    def _sync_hyperparameters(self):
        """The wrapped optimizer's current hyperparameters (a scheduler may
        have changed ``param_groups[k]['lr']``) into the shard's groups."""
        for group, g in zip(self.inner.param_groups, self._group_of):
            group.update((k, v) for k, v in self.optimizer.param_groups[g].items()
                         if k != "params")

    # -- state -------------------------------------------------------------------
    def gather(self, root=None):
        """Fill the wrapped optimizer's state from every rank's shard
        (collective): on every rank, or with ``root`` only on that rank."""
        mine = sorted({name for s, _ in self._pieces for name in s.state})
        names = sorted(set().union(*self.comm.allgather(mine)))
        data, n = self.params.data, self.params.size
        for name in names:
            full = aligned_zeros(n)
            for inner_span, (_, a, b) in self._pieces:
                if name in inner_span.state:
                    full[a:b] = inner_span.state[name]
            if root is None:
                _allgather(full, self.comm)
            else:
                _gather_to(full, self.comm, root)
            if root is not None and self.comm.rank != root:
                continue
            for (g, span), step in zip(self._full_spans, self.steps):
                span.step = step
                start = _offset(span.param, data)
                if step and name in self.optimizer._state_names(self.optimizer.param_groups[g]):
                    span.state[name] = _aligned_copy(full[start:start + span.param.size])

    def state_dict(self):
        """The wrapped optimizer's state_dict, gathered from every shard
        (collective; every rank gets it)."""
        self.gather()
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict):
        """Load an (unsharded) state_dict; each rank keeps its shard."""
        self.optimizer.load_state_dict(state_dict)
        self._scatter_state()

    def zero_grad(self):
        self.params.zero_grad()

    def __repr__(self):
        return (f"ShardedOptimizer({type(self.optimizer).__name__}, rank {self.comm.rank} of "
                f"{self.comm.size}, shard [{self.lo}, {self.hi}))")


def _aligned_copy(a):
    out = aligned_zeros(a.size)
    out[:] = a
    return out
