"""Sharded optimizer state (ZeRO stage 1) for a fastopt.torch optimizer over
a model flattened by :func:`~fastopt.torch.flatten_`.

The flat parameter buffer is cut into ``comm.size`` 64-byte-aligned shards
(:func:`fastopt.distributed.shard_bounds`).  Each rank keeps an optimizer of
the wrapped one's class over its shard only -- one ``Parameter`` per piece
of a parameter that falls in the shard, viewing the flat buffer -- so it
holds 1/N of the optimizer state.  A step is: reduce-scatter of the flat
gradient, the fused update of the shard, an all-gather of the parameters.
Each element's arithmetic is the unsharded optimizer's.
"""
import torch

from fastopt.distributed import allgather_params_, reduce_scatter_gradients, shard_bounds
from fastopt.distributed._env import world
from fastopt.torch._engine import FastoptOptimizer
from fastopt.torch._flatten import FlatBuffers, aligned_zeros, grad_view, restore_grad_view


def _layout(optimizer, flat):
    """``[(group index, parameter, offset)]`` of every parameter of
    ``optimizer``, which must cover ``flat``'s buffer exactly, once each."""
    base, n = flat.params.data_ptr(), flat.params.numel()
    where, covered = [], 0
    for g, group in enumerate(optimizer.param_groups):
        for p in group["params"]:
            offset = (p.data_ptr() - base) // 4
            inside = (p.untyped_storage().data_ptr() == flat.params.untyped_storage().data_ptr()
                      and 0 <= offset <= n - p.numel() and grad_view(p) is not None)
            if not inside:
                raise ValueError("optimizer must update the parameters of flat (call "
                                 "fastopt.torch.flatten_ on the model, then build the optimizer "
                                 "over its parameters); a parameter lies outside flat.params")
            where.append((g, p, offset))
            covered += p.numel()
    if covered != n or len({off for _, _, off in where}) != len(where):
        raise ValueError(f"optimizer must update all of flat.params once: its parameters hold "
                         f"{covered} elements, flat.params {n}")
    return sorted(where, key=lambda t: t[2])


def _per_element(value):
    """True for a state entry with one value per element (not ``step``)."""
    return isinstance(value, torch.Tensor) and value.dim() > 0


class ShardedOptimizer:
    """Wrap a fastopt.torch ``optimizer`` built over the parameters of a model
    flattened by :func:`~fastopt.torch.flatten_` (``flat``, what it returned)
    so that each rank of ``comm`` keeps the optimizer state of its shard
    only (ZeRO stage 1).

    :meth:`step` is collective.  Every rank first runs its backward pass
    (the gradients land in ``flat.grads``); ``step(rows, total_rows)`` then
    sums the ranks' gradients, each weighted by ``rows / total_rows`` when
    given (so that per-rank mean-loss gradients sum to the global batch's),
    updates this rank's shard and gathers the parameters: every rank ends
    with the same parameters, equal to the unsharded optimizer's given the
    same summed gradient.  Hyperparameters are read from the wrapped
    optimizer's ``param_groups`` at every step, so lr schedulers on it work.
    :meth:`state_dict` gathers torch's layout (it loads into the unsharded
    optimizer, fastopt's or torch's); :meth:`load_state_dict` takes one.
    """

    def __init__(self, optimizer, flat, comm=None):
        if not isinstance(optimizer, FastoptOptimizer):
            raise TypeError(f"optimizer must be a fastopt.torch optimizer, got "
                            f"{type(optimizer).__name__}")
        if not isinstance(flat, FlatBuffers):
            raise TypeError(f"flat must be the FlatBuffers fastopt.torch.flatten_ returned, "
                            f"got {type(flat).__name__}")
        if flat.params.dtype != torch.float32:
            raise TypeError(f"flat.params has dtype {flat.params.dtype}; the sharded optimizer "
                            "takes float32 models (the collectives sum float32)")
        if getattr(optimizer, "state_dtype", "float32") != "float32":
            raise ValueError(f"optimizer has state_dtype={optimizer.state_dtype!r}; the sharded "
                             "optimizer keeps float32 state (8-bit blocks and stochastic "
                             "rounding follow each kernel call's elements, which sharding cuts)")
        self.layout = _layout(optimizer, flat)     # checked before MPI is started
        self.comm = world(comm)
        self.optimizer, self.flat = optimizer, flat
        n = flat.params.numel()
        if n < 16 * self.comm.size:
            raise ValueError(f"the model has {n} parameters, too few for {self.comm.size} "
                             "shards of at least one 64-byte line each")
        bounds = shard_bounds(n, self.comm.size)
        self.lo, self.hi = bounds[self.comm.rank], bounds[self.comm.rank + 1]
        self.shard_grad = aligned_zeros(self.hi - self.lo)
        self.inner, self.pieces = self._shard_optimizer()
        self.load_state_dict(optimizer.state_dict())

    def _shard_optimizer(self):
        """The optimizer over this rank's pieces, and ``[(piece, parameter,
        its group index, its first element in the parameter, in flat)]``."""
        pieces, groups = [], {}
        for g, p, offset in self.layout:
            a, b = max(offset, self.lo), min(offset + p.numel(), self.hi)
            if a < b:
                piece = torch.nn.Parameter(self.flat.params[a:b])
                piece.grad = self.shard_grad[a - self.lo:b - self.lo]
                pieces.append((piece, p, g, a - offset, a))
                groups.setdefault(g, []).append(piece)
        outer = self.optimizer.param_groups
        inner = type(self.optimizer)([{**outer[g], "params": ps} for g, ps in groups.items()])
        self._group_of = list(groups)
        return inner, pieces

    def step(self, rows=None, total_rows=None):
        """Reduce-scatter the flat gradient (weighted by ``rows / total_rows``
        if given), update this rank's shard, all-gather the parameters."""
        for _, p, _ in self.layout:   # a .grad replaced since flatten_: back into the buffer
            view = grad_view(p)
            if p.grad is not view:
                restore_grad_view(p, view)
        reduce_scatter_gradients(self.flat.grads.numpy(), self.shard_grad.numpy(), rows,
                                 total_rows, self.comm)
        for group, g in zip(self.inner.param_groups, self._group_of):
            group.update((k, v) for k, v in self.optimizer.param_groups[g].items()
                         if k != "params")
        self.inner.step()
        allgather_params_(self.flat.params.numpy(), self.comm)

    def zero_grad(self, set_to_none=True):
        """Zero the flat gradient buffer (the views stay, see flatten_)."""
        self.optimizer.zero_grad(set_to_none)

    # -- state ------------------------------------------------------------------
    def state_dict(self):
        """The wrapped optimizer's state_dict in torch's layout, gathered from
        every shard (collective; every rank gets it)."""
        keys = self._state_keys()
        # sorted: every rank must run the collectives in the same order
        full = {key: self._gather(key) for key in sorted(set().union(*keys.values()))}
        scalars = self.comm.bcast(self._scalars(), root=0)
        out = {}
        for g, p, offset in self.layout:
            if scalars:
                out[p] = {k: torch.tensor(v) for k, v in scalars.items()}
                out[p].update((key, full[key][offset:offset + p.numel()].view(p.shape).clone())
                              for key in keys.get(g, ()))
        self.optimizer.state.clear()
        self.optimizer.state.update(out)
        try:
            return self.optimizer.state_dict()
        finally:
            self.optimizer.state.clear()      # 1/N of the state stays, in the shard

    def _gather(self, key):
        """State tensor ``key`` over the whole flat buffer (zeros where a group has none)."""
        buf = aligned_zeros(self.flat.params.numel())
        for piece, _, _, _, at in self.pieces:
            st = self.inner.state.get(piece, {})
            if key in st:
                buf[at:at + piece.numel()] = st[key].reshape(-1)
        allgather_params_(buf.numpy(), self.comm)
        return buf

    def _state_keys(self):
        """Group index -> the names of its per-element state tensors, from every rank."""
        mine = {}
        for piece, _, g, _, _ in self.pieces:
            mine.setdefault(g, set()).update(
                k for k, v in self.inner.state.get(piece, {}).items() if _per_element(v))
        keys = {}
        for theirs in self.comm.allgather(mine):
            for g, names in theirs.items():
                keys.setdefault(g, set()).update(names)
        return {g: sorted(names) for g, names in keys.items()}

    def load_state_dict(self, state_dict):
        """Load an (unsharded, torch-layout) state_dict; each rank keeps its shard."""
        self.optimizer.load_state_dict(state_dict)
        state = {}
        for piece, p, _, start, _ in self.pieces:
            st = self.optimizer.state.get(p)
            if st:
                state[piece] = {k: (v.reshape(-1)[start:start + piece.numel()].clone()
                                    if isinstance(v, torch.Tensor) and v.shape == p.shape
                                    else v) for k, v in st.items()}
        inner = self.inner.state_dict()
        order = [q for group in self.inner.param_groups for q in group["params"]]
        ids = {id(q): i for i, q in enumerate(order)}
        inner["state"] = {ids[id(piece)]: st for piece, st in state.items()}
        self.inner.load_state_dict(inner)
        self.optimizer.state.clear()

    def _scalars(self):
        if not self._stepped():
            return {}
        return {k: float(v) for k, v in self.inner.state[self.pieces[0][0]].items()
                if not _per_element(v)}

    def _stepped(self):
        return bool(self.pieces) and bool(self.inner.state.get(self.pieces[0][0]))

    def __repr__(self):
        return (f"ShardedOptimizer({type(self.optimizer).__name__}, rank {self.comm.rank} of "
                f"{self.comm.size}, shard [{self.lo}, {self.hi}))")
