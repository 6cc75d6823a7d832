"""The data behind a fastopt.torch step: runs of adjacent memory and the
per-group plan that caches them (see _engine)."""

from operator import attrgetter, is_

import torch

from fastopt._kernels import unchanged
from fastopt.optim._lowp import bfloat16

#: the largest step count float32 holds exactly (torch's count stalls there)
_EXACT_STEPS = 2 ** 24
grad_of = attrgetter("grad")
data_ptr_of = torch.Tensor.data_ptr


def numpy_view(t):
    """A NumPy view (no copy) of a CPU tensor; bfloat16, which has no
    ``.numpy()``, is seen as int16 and viewed as ml_dtypes.bfloat16 (imported
    only then)."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(bfloat16())
    return t.numpy()


def span(t, n):
    """A NumPy view of ``n`` elements of ``t``'s storage from ``t``'s first."""
    base = torch.empty(0, dtype=t.dtype)
    base.set_(t.untyped_storage(), t.storage_offset(), (n,))
    return numpy_view(base)


def follows(a, b):
    """True if ``b``'s memory starts where ``a``'s ends, in the same storage
    (and they have one dtype)."""
    return (a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
            and a.data_ptr() + a.element_size() * a.numel() == b.data_ptr()
            and a.dtype == b.dtype)


def adjacent(views):
    """The views merged into 1-D tensors over runs of adjacent memory (only
    this optimizer's own slices of a flat buffer another may share)."""
    merged = []
    for v in sorted(views, key=lambda v: v.data_ptr()):
        last = merged[-1] if merged else None
        if last is not None and follows(last, v):
            merged[-1] = last.new_empty(0).set_(last.untyped_storage(), last.storage_offset(),
                                                (last.numel() + v.numel(),))
        else:
            merged.append(v.reshape(-1))
    return merged


class Run:
    """One kernel call: parameters ``index[0]..index[-1]`` of a group."""
    __slots__ = ("index", "t", "arrays", "flat", "bound")

    def __init__(self, index, t, arrays, flat):
        self.index = index        # positions in group["params"]
        self.t = t                # the 1-based step number of the next update
        self.arrays = arrays      # kernel keyword -> ndarray (param, grad, state)
        self.flat = flat          # gradients are flatten_ views
        self.bound = None


class Plan:
    """What a group's step needs, and the keys that say it is still valid."""

    def __init__(self, group):
        self.group = group
        self.shapes = None
        self.specs = None
        self.buffers = {}         # state key -> flat tensor over the group's layout
        self.scalars = {}         # scalar state key -> float32 tensor, one per parameter
        self.ptrs = None
        self.gids = None
        self.hp = None
        self.state = None
        self.runs = []
        self.active = None        # indices of the parameters with a gradient
        self.all_active = False
        self.uniform = False      # all_active, and one step count for all (see count_steps)
        self.last_gids = None
        self.last_hp = None
        self.bound_gids = None
        self.bound_hp = None
        self.grads = []
        self.offsets = []
        self.buffers_np = {}
        self.scalars_np = {}
        self.steps_np = None      # scalars_np["step"]
        self.fresh = set()
        self.updated = []

    def count_steps(self):
        """state["step"] += 1 for every parameter just updated (torch's
        float32 count).  When every parameter was updated and all had the
        same count, that is the number of the step just made (exact up to
        2**24, where float32 counting stalls): one fill, a quarter of the
        cost of an add on this small array."""
        steps, t = self.steps_np, self.runs[0].t - 1
        if self.uniform and t <= _EXACT_STEPS:
            steps.fill(t)
        elif self.all_active:
            steps += 1
        else:
            steps[self.active] += 1


class Guard:
    """The keys under which every group's bound kernels still apply, checked
    once per step, mostly in one C loop (see FastoptOptimizer._step): the
    same ``state`` and group objects, and in each group the same parameter
    memory, gradient objects and hyperparameters as when it was made.  Made
    only when every group's kernels are bound; any difference sends the step
    through the plans again, which rebuild what changed."""
    __slots__ = ("state", "groups", "checks", "ready", "updated")

    def __init__(self, opt, ready, updated):
        self.state = opt.state
        self.groups = list(opt.param_groups)
        self.checks = [(list(map(data_ptr_of, g["params"])), list(map(grad_of, g["params"])),
                        opt._hp_of(g)) for g in self.groups]
        self.ready = ready                      # [(plan, hp, True)], one per group
        self.updated = updated                  # the parameters with a gradient

    def holds(self, opt):
        """True if nothing the bound kernels depend on has changed."""
        groups = opt.param_groups
        if (opt.state is not self.state or len(groups) != len(self.groups)
                or not all(map(is_, groups, self.groups))):
            return False
        for group, (ptrs, grads, hp) in zip(groups, self.checks):
            params = group["params"]
            if not (type(params) is list and opt._hp_of(group) == hp
                    and unchanged(params, "grad", grads, data_ptr_of, ptrs)):
                return False
        return True
