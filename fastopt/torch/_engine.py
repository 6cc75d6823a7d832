"""The step engine behind fastopt.torch's optimizers.

Per parameter group a plan is kept: the group's optimizer state lives in one
flat float32 buffer per state key (``state[p][key]`` are views of it, so
``state_dict`` keeps torch's layout), and the parameters with a gradient
are cut into runs -- consecutive parameters whose data, gradients and state
are adjacent in memory.  Each run is one kernel call over NumPy views of
the tensors' memory (no copy).  The plan is rebuilt only when a
parameter's memory, the set of parameters with a gradient, the structure of
the state or the optimizer's ``state`` object changes.  While every
group's kernels are bound, a step checks one Guard (_plan): a data pointer
and a gradient identity per parameter; then it calls the kernels.
"""

from operator import itemgetter

import numpy as np
import torch
from torch._C import _increment_version

import fastopt
from fastopt.torch._flatten import aligned_zeros, check_tensor, grad_view, restore_grad_view
from fastopt.torch._hooks import hooked_step, wrapped
from fastopt.torch._plan import (Guard, Plan, Run, adjacent, data_ptr_of, follows, grad_of,
                                 numpy_view, span)


class FastoptOptimizer:
    """Mixin over a ``torch.optim`` class: its ``__init__``, argument checks,
    ``param_groups``, ``state_dict`` and ``load_state_dict`` are torch's;
    ``step`` and ``zero_grad`` run fastopt's kernels.

    A subclass sets ``_kernel`` (a fastopt functional kernel), ``_args``
    (the group keys the kernel reads, by the kernel's argument names;
    ``betas`` gives ``beta1`` and ``beta2``), ``_watch`` (other group keys
    whose change re-checks the group), implements ``_state_specs(group)``;
    ``_scalars`` lists the per-parameter scalar tensors torch keeps in the
    state (``"step"``; NAdam's ``"mu_product"``, kept current by its
    ``_advance``)."""

    _kernel = None
    _args = ()
    _watch = ()
    #: how many kernel calls the last step() made (1 per group after flatten_)
    last_step_calls = 0
    #: (key, initial value) of each scalar state tensor, in torch's key order
    _scalars = (("step", 0.0),)
    _step_kw = True
    #: a subclass's update of its other scalars after the step counts (or None)
    _advance = None
    _param_dtypes = (torch.float32,)   # Adam, AdamW: also bfloat16, float16 (_lowp)
    _buffer_dtypes = {}                # state key -> its buffer's dtype if not float32

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._hyper = cls._args + cls._watch
        if cls._hyper:
            cls._hp_of = itemgetter(*cls._hyper)     # group -> tuple of the values

    @classmethod
    def _kwargs(cls, hp):
        """The kernel's keyword arguments from the group's values ``hp``."""
        kwargs = dict(zip(cls._args, hp))
        if "betas" in kwargs:
            kwargs["beta1"], kwargs["beta2"] = kwargs.pop("betas")
        return kwargs

    # -- torch.optim.Optimizer hooks ----------------------------------------

    def _patch_step_function(self):
        # torch wraps step() in a profiler range that costs far more than the
        # update of a small model; step() does what the wrapper does itself,
        # when a hook or a profiler is there to see it (_hooks).
        self._zero_grad_profile_name = f"Optimizer.zero_grad#{type(self).__name__}.zero_grad"

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            self._check_group(group, len(self.param_groups) - 1)
            for j, p in enumerate(group["params"]):
                self._check_param(p, group, len(self.param_groups) - 1, j)
        except Exception:
            self.param_groups.pop()
            raise

    def step(self, closure=None):
        """One update of every parameter that has a gradient.

        ``closure`` (optional) re-evaluates the model and returns the loss;
        it runs under ``torch.enable_grad()`` and its result is returned.
        Step hooks and the profiler range are torch's (see _hooks)."""
        if wrapped(self):
            return hooked_step(self, self._step, closure)
        return self._step(closure)

    def _step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        guard = self.__dict__.get("_fastopt_guard")
        ready, updated = ((guard.ready, guard.updated) if guard is not None and guard.holds(self)
                          else self._plan_groups())
        # autograd's check that a saved tensor was not modified in place;
        # here, while the tensors just checked are still in cache (the
        # kernels stream the whole model through it)
        _increment_version(updated)
        calls = 0
        for plan, hp, bound in ready:
            calls += self._run(plan, hp, bound)
        self.last_step_calls = calls
        return loss

    def _plan_groups(self):
        """Check every group and update its plan before anything is written;
        returns ``[(plan, hp, bound)]`` and the parameters to update.  Once
        every group's kernels are bound, the next steps check a Guard."""
        plans = self.__dict__.setdefault("_fastopt_plans", {})
        ready = []
        for i, group in enumerate(self.param_groups):
            plan = plans.get(i)
            if plan is None or plan.group is not group:
                plan = plans[i] = Plan(group)
            ready.append((plan, *self._prepare(plan, group, i)))
        updated = [p for plan, _, _ in ready for p in plan.updated]
        bound = all(b for _, _, b in ready)
        self._fastopt_guard = Guard(self, ready, updated) if bound else None
        return ready, updated

    def zero_grad(self, set_to_none=True):
        """Reset the gradients.  A parameter flattened by
        :func:`fastopt.torch.flatten_` keeps its view of the flat gradient
        buffer, zeroed in place (one pass per buffer), whatever
        ``set_to_none`` says; the others follow torch: ``.grad = None`` by
        default, zeroed in place with ``set_to_none=False``."""
        views = []
        for group in self.param_groups:
            for p in group["params"]:
                view = grad_view(p)
                if view is not None:
                    views.append(view)
                    if p.grad is not view:
                        p.grad = view
                elif p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        if p.grad.grad_fn is not None:
                            p.grad.detach_()
                        else:
                            p.grad.requires_grad_(False)
                        p.grad.zero_()
        for run in adjacent(views):
            run.zero_()

    # -- checks ---------------------------------------------------------------

    def _name(self, group, gi, j):
        names = group.get("param_names")
        where = f"parameter {j} of param group {gi}"
        return f"{where} ({names[j]!r})" if names else where

    def _check_group(self, group, gi):
        who = f"fastopt.torch.{type(self).__name__}"
        for flag in ("capturable", "differentiable"):
            if group.get(flag):
                raise ValueError(f"{who}: {flag}=True is not supported (param group {gi}); "
                                 "the kernels update CPU memory outside autograd")
        for flag in ("foreach", "fused"):
            if group.get(flag):
                raise ValueError(f"{who}: {flag}=True (param group {gi}) selects one of "
                                 "torch's own implementations; fastopt's step is always one "
                                 f"fused kernel: leave {flag}=None")
        for key in self._hyper:
            if isinstance(group[key], torch.Tensor):
                raise TypeError(f"{who}: {key} must be a Python number, not a Tensor "
                                f"(param group {gi})")

    def _check_param(self, p, group, gi, j):
        who = f"fastopt.torch.{type(self).__name__}"
        name = self._name(group, gi, j)
        check_tensor(f"{who}: {name}", p, self._param_dtypes)
        if not p.is_contiguous():
            raise ValueError(f"{who}: {name} is not contiguous; the kernels update it in place "
                             "as one block")
        g = p.grad
        if g is not None and grad_view(p) is not g:
            if g.layout != torch.strided:
                raise TypeError(f"{who}: {name} has a sparse gradient; fastopt.torch needs "
                                "dense gradients")
            if not g.is_contiguous():
                raise ValueError(f"{who}: the gradient of {name} is not contiguous")

    # -- the step ---------------------------------------------------------------

    def _prepare(self, plan, group, gi):
        """Check the group and rebuild or refresh its plan; returns the
        group's hyperparameters and whether the bound kernels apply (while
        they do, steps check the Guard instead: _step)."""
        params = group["params"]
        gids = list(map(id, map(grad_of, params)))
        ptrs = list(map(data_ptr_of, params))
        hp = self._hp_of(group)
        if hp != plan.hp:
            self._check_group(group, gi)
            if self._state_specs(group) != plan.specs:
                plan.ptrs = None
            plan.hp = hp
        if ptrs != plan.ptrs or self.state is not plan.state:
            self._rebuild(plan, group, gi)
            gids = list(map(id, map(grad_of, params)))
        elif gids != plan.gids:
            none = id(None)
            if [g == none for g in gids] != [g == none for g in plan.gids]:
                self._rebuild(plan, group, gi)
            else:
                self._adopt_grads(plan, group, gi)
            gids = list(map(id, map(grad_of, params)))
        bound = gids == plan.bound_gids and hp == plan.bound_hp
        if not bound and gids == plan.last_gids and hp == plan.last_hp:
            self._bind(plan, hp, gids)
            bound = True
        plan.last_gids, plan.last_hp = gids, hp
        return hp, bound

    def _run(self, plan, hp, bound):
        runs = plan.runs
        if not runs:
            return 0
        if bound:
            for run in runs:
                run.bound(run.t)
                run.t += 1
        else:
            kernel, kwargs = self._kernel, self._kwargs(hp)
            for run in runs:
                kernel(**run.arrays, **kwargs, **self._step_arg(run))
                run.t += 1
        if self._scalars:
            plan.count_steps()
            if self._advance is not None:
                self._advance(plan, hp)
        return len(runs)

    def _step_arg(self, run):
        return {"step": run.t} if self._step_kw else {}

    def _bind(self, plan, hp, gids):
        kwargs = self._kwargs(hp)
        for run in plan.runs:
            run.bound = fastopt.bind(self._kernel, **run.arrays, **kwargs, **self._step_arg(run))
        plan.bound_gids, plan.bound_hp = gids, hp

    def _adopt_grads(self, plan, group, gi):
        """Gradients were replaced since the plan was built (the same
        parameters have one): a flatten_ed run gets the new values copied
        into its flat views, and the views back as ``.grad``; another run
        is pointed at the new tensors (rebuilt if they are not adjacent)."""
        params = group["params"]
        moved = False
        for run in plan.runs:
            if run.flat:
                self._restore_views(params, run.index, group, gi)
                continue
            for j in run.index:
                self._check_param(params[j], group, gi, j)
            if not all(follows(params[a].grad, params[b].grad)
                       for a, b in zip(run.index, run.index[1:])):
                self._rebuild(plan, group, gi)
                return
            run.arrays["grad"] = span(params[run.index[0]].grad, run.arrays["param"].size)
            moved = True
        if moved:
            plan.bound_gids = None
        plan.grads = [p.grad for p in params]
        plan.gids = [id(g) for g in plan.grads]

    def _restore_views(self, params, index, group, gi):
        for j in index:
            p = params[j]
            view = grad_view(p)
            if p.grad is not view:
                self._check_param(p, group, gi, j)
                restore_grad_view(p, view)

    # -- building a plan ------------------------------------------------------

    def _rebuild(self, plan, group, gi):
        params = group["params"]
        for j, p in enumerate(params):
            self._check_param(p, group, gi, j)
        specs = self._state_specs(group)
        shapes = [tuple(p.shape) for p in params]
        if shapes != plan.shapes or specs != plan.specs:
            self._allocate(plan, params, specs)
        plan.shapes, plan.specs = shapes, specs
        ages = [self._adopt_state(plan, group, gi, j) for j in range(len(params))]
        flat = [p.grad is not None and grad_view(p) is not None for p in params]
        if any(flat):
            self._restore_views(params, [j for j, f in enumerate(flat) if f], group, gi)
        plan.runs = self._cut_runs(plan, params, ages, flat)
        active = [j for j, p in enumerate(params) if p.grad is not None]
        plan.active = np.array(active, dtype=np.intp)
        plan.all_active = len(active) == len(params)
        plan.uniform = plan.all_active and len({run.t for run in plan.runs}) == 1
        plan.updated = [params[j] for j in active]
        plan.ptrs = [p.data_ptr() for p in params]
        plan.grads = [p.grad for p in params]   # held: their ids stay unique
        plan.gids = [id(g) for g in plan.grads]
        plan.state = self.state
        plan.bound_gids = plan.last_gids = None

    def _allocate(self, plan, params, specs):
        offsets, total = [], 0
        for p in params:
            offsets.append(total)
            total += p.numel()
        plan.offsets = offsets
        plan.buffers = {key: aligned_zeros(total, init, self._buffer_dtypes.get(key, torch.float32))
                        for key, _, init in specs}
        plan.buffers_np = {key: numpy_view(buf) for key, buf in plan.buffers.items()}
        plan.scalars = {key: torch.full((len(params),), init, dtype=torch.float32)
                        for key, init in self._scalars}
        plan.scalars_np = {key: t.numpy() for key, t in plan.scalars.items()}
        plan.steps_np = plan.scalars_np.get("step")
        plan.fresh = set(range(len(params)))

    def _adopt_state(self, plan, group, gi, j):
        """Make parameter j's state views of the plan's buffers (copying
        loaded or earlier state in); returns its step count, or None if it
        has no gradient and no state."""
        p = group["params"][j]
        st = self.state.get(p)
        if not st and (p.grad is None or not (plan.specs or self._scalars)):
            return None if p.grad is None else 0
        st = self.state[p]
        fresh = not st
        if fresh:      # torch's key order: the scalars ("step") first
            for key, init in self._scalars:
                plan.scalars_np[key][j] = init
                st[key] = plan.scalars[key][j]
        off, n = plan.offsets[j], p.numel()
        for key, _, init in plan.specs:
            view = plan.buffers[key][off:off + n].view(p.shape)
            cur = st.get(key)
            if cur is None:
                fresh = True
                if j not in plan.fresh:
                    view.fill_(init)
            elif cur.data_ptr() != view.data_ptr() or cur.shape != view.shape:
                if cur.numel() != n:
                    raise ValueError(
                        f"fastopt.torch.{type(self).__name__}: {self._name(group, gi, j)} has "
                        f"{n} elements but its optimizer state {key!r} has {cur.numel()}: "
                        "the parameter was resized after its state was created")
                view.copy_(cur.reshape(p.shape))
            st[key] = view
        plan.fresh.discard(j)
        return self._adopt_scalars(plan, st, j, fresh)

    def _adopt_scalars(self, plan, st, j, fresh):
        if not self._scalars:
            return 0 if fresh else 1
        for key, init in self._scalars:
            cur = st.get(key)
            view = plan.scalars[key][j]
            if cur is None:
                plan.scalars_np[key][j] = init
            elif not isinstance(cur, torch.Tensor) or cur.data_ptr() != view.data_ptr():
                plan.scalars_np[key][j] = float(cur)
            st[key] = view
        return int(plan.steps_np[j])

    def _cut_runs(self, plan, params, ages, flat):
        runs, start = [], None
        for j, p in enumerate(params):
            if p.grad is None:
                start = None
                continue
            if (start is not None and ages[j] == ages[j - 1] and flat[j] == flat[j - 1]
                    and follows(params[j - 1], p) and follows(params[j - 1].grad, p.grad)):
                runs[-1].append(j)
            else:
                runs.append([j])
            start = j
        return [self._make_run(plan, params, index, ages[index[0]], flat[index[0]])
                for index in runs]

    def _make_run(self, plan, params, index, age, flat):
        a, b = index[0], index[-1]
        lo, hi = plan.offsets[a], plan.offsets[b] + params[b].numel()
        arrays = {"param": span(params[a], hi - lo), "grad": span(params[a].grad, hi - lo)}
        for key, arg, _ in plan.specs:
            arrays[arg] = plan.buffers_np[key][lo:hi]
        return Run(index, age + 1, arrays, flat)
