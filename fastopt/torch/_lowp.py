"""bfloat16 / float16 models and low-precision optimizer state for
fastopt.torch's Adam and AdamW (the rules whose kernel takes the formats).

Master weights (the DeepSpeed / apex mixed-precision pattern): for a
parameter of dtype bfloat16 or float16 the optimizer keeps a float32 copy,
``state[p]["master_param"]``, made from the parameter when its state is
created.  Each step reads the 16-bit gradient directly (widened exactly),
updates the float32 master and moments, and writes the master rounded to
nearest even into the parameter, in the same pass (``fastopt.adam_``'s
``param_copy``).  float32 parameters in the same optimizer are updated in
place as usual.

Low-precision state (``state_dtype``, as in :mod:`fastopt.optim._lowp`):
``"bfloat16"`` keeps ``exp_avg`` and ``exp_avg_sq`` as torch.bfloat16
tensors; ``"int8"`` as torch.uint8 codes plus ``state["state_scales"]``,
float32, the parameter's block scales (exp_avg's blocks, then
exp_avg_sq's; each parameter's blocks start at its first element, so with
int8 state each parameter is its own kernel call).  The kernels read the
tensors' memory: a bfloat16 tensor is seen by NumPy as int16 viewed as
``ml_dtypes.bfloat16`` (no copy; ml_dtypes is imported only then).
"""

import inspect

import torch

from fastopt.optim._lowp import SCALES, StateFormat
from fastopt.torch._flatten import LOW_DTYPES, aligned_zeros

MASTER = "master_param"
MOMENTS = ("exp_avg", "exp_avg_sq")
_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.uint8}
_LOW = (torch.bfloat16, torch.float16, torch.uint8)


def with_options(cls, torch_cls):
    """``cls``'s signature: ``torch_cls``'s and the three low-precision options."""
    sig = inspect.signature(torch_cls)
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
             for name, default in (("state_dtype", "float32"), ("state_rounding", "nearest"),
                                   ("seed", 0))]
    cls.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *extra])
    return cls


class LowPrecision:
    """Mixin before FastoptOptimizer in Adam and AdamW: bfloat16 / float16
    parameters with float32 master weights, and ``state_dtype``."""

    _param_dtypes = LOW_DTYPES

    def __init__(self, params, *args, state_dtype="float32", state_rounding="nearest", seed=0,
                 **kwargs):
        self._set_format(state_dtype, state_rounding, seed)
        super().__init__(params, *args, **kwargs)

    def _set_format(self, state_dtype, state_rounding, seed):
        fmt = StateFormat(state_dtype, state_rounding, seed, MOMENTS, type(self).__name__)
        self._format = fmt
        self.state_dtype, self.state_rounding, self.seed = fmt.dtype_name, fmt.rounding, fmt.seed
        dtype = _TORCH_DTYPES[fmt.dtype_name]
        self._buffer_dtypes = {} if dtype == torch.float32 else dict.fromkeys(MOMENTS, dtype)

    def __getstate__(self):      # torch's keeps only defaults, state and param_groups
        state = super().__getstate__()
        state["_lowp"] = (self.state_dtype, self.state_rounding, self.seed)
        return state

    def __setstate__(self, state):
        lowp = state.pop("_lowp", None)
        super().__setstate__(state)
        if lowp is not None:
            self._set_format(*lowp)

    # -- checks ---------------------------------------------------------------

    def _check_group(self, group, gi):
        super()._check_group(group, gi)
        if group["amsgrad"] and self.state_dtype != "float32":
            raise ValueError(f"fastopt.torch.{type(self).__name__}: amsgrad=True (param group "
                             f"{gi}) needs state_dtype='float32', not {self.state_dtype!r}: "
                             "the kernel runs AMSGrad on float32 state only")

    def _check_param(self, p, group, gi, j):
        super()._check_param(p, group, gi, j)
        if group["amsgrad"] and p.dtype != torch.float32:
            raise ValueError(f"fastopt.torch.{type(self).__name__}: amsgrad=True and "
                             f"{self._name(group, gi, j)} has dtype {p.dtype}: the kernel runs "
                             "AMSGrad on float32 parameters only (no master weights)")

    # -- the plan: master weights, block scales --------------------------------

    def _rebuild(self, plan, group, gi):
        dtypes = [p.dtype for p in group["params"]]
        if dtypes != getattr(plan, "dtypes", None):
            plan.shapes, plan.dtypes = None, dtypes     # reallocate: the masters move
        super()._rebuild(plan, group, gi)

    def _allocate(self, plan, params, specs):
        super()._allocate(plan, params, specs)
        plan.master_at = _offsets(p.numel() if p.dtype != torch.float32 else None
                                  for p in params)
        plan.scales_at = _offsets(self._format.length(SCALES, p.numel())
                                  if self.state_dtype == "int8" else None for p in params)
        plan.master = aligned_zeros(sum(p.numel() for p in params if p.dtype != torch.float32))
        plan.scales = aligned_zeros(sum(self._format.length(SCALES, params[j].numel())
                                        for j in plan.scales_at))
        plan.master_np, plan.scales_np = plan.master.numpy(), plan.scales.numpy()

    def _adopt_state(self, plan, group, gi, j):
        age = super()._adopt_state(plan, group, gi, j)
        p = group["params"][j]
        st = self.state.get(p)
        if not st:
            return age
        if j in plan.master_at:
            off, n = plan.master_at[j], p.numel()
            st[MASTER] = _adopt(plan.master[off:off + n].view(p.shape), st.get(MASTER), p)
        else:
            st.pop(MASTER, None)
        if j in plan.scales_at:
            off = plan.scales_at[j]
            view = plan.scales[off:off + self._format.length(SCALES, p.numel())]
            st[SCALES] = _adopt(view, st.get(SCALES), None)
        return age

    def _cut_runs(self, plan, params, ages, flat):
        if self.state_dtype != "int8":
            return super()._cut_runs(plan, params, ages, flat)
        return [self._make_run(plan, params, [j], ages[j], flat[j])
                for j, p in enumerate(params) if p.grad is not None]

    def _make_run(self, plan, params, index, age, flat):
        run = super()._make_run(plan, params, index, age, flat)
        arrays, a = run.arrays, index[0]
        if a in plan.master_at:
            off, n = plan.master_at[a], arrays["param"].size
            arrays["param_copy"], arrays["param"] = arrays["param"], plan.master_np[off:off + n]
        scales = None
        if a in plan.scales_at:
            off = plan.scales_at[a]
            scales = plan.scales_np[off:off + self._format.length(SCALES, arrays["param"].size)]
        arrays.update(self._format.kernel_args({SCALES: scales}))
        return run

    # -- state_dict ---------------------------------------------------------------

    def load_state_dict(self, state_dict):
        """torch's ``load_state_dict``, keeping the saved state's formats:
        torch casts every floating state tensor to its parameter's dtype,
        which would round a bfloat16 model's float32 master weights and
        moments to bfloat16 and widen bfloat16 state; here they are kept as
        saved.  Each tensor is checked first (nothing is changed when one
        is rejected): the moments must have this optimizer's state format
        (no conversion between float32, bfloat16 and 8-bit state), 8-bit
        state its block scales (float32, finite, >= 0), and only 16-bit
        parameters a ``master_param`` (float32, the parameter's size)."""
        restore = self._checked_saved_state(state_dict)
        super().load_state_dict(state_dict)
        for p, saved in restore:
            self.state[p].update(saved)

    def _checked_saved_state(self, state_dict):
        """[(parameter, {key: tensor in this optimizer's format})] of the saved
        state, checked; [] when the groups do not match (torch then raises)."""
        saved_groups, state = state_dict.get("param_groups", ()), state_dict.get("state", {})
        if len(saved_groups) != len(self.param_groups) or any(
                len(s["params"]) != len(g["params"])
                for s, g in zip(saved_groups, self.param_groups)):
            return []
        out = []
        for gi, (g, s) in enumerate(zip(self.param_groups, saved_groups)):
            for j, (p, pid) in enumerate(zip(g["params"], s["params"])):
                if state.get(pid):
                    out.append((p, self._checked_entry(state[pid], p, self._name(g, gi, j))))
        return out

    def _checked_entry(self, st, p, name):
        who = f"fastopt.torch.{type(self).__name__}.load_state_dict: {name}"
        fmt, n, out = self._format, p.numel(), {}
        for key, t in st.items():
            if key == "step" or not isinstance(t, torch.Tensor):
                continue
            dtype = _TORCH_DTYPES[fmt.dtype_name] if key in MOMENTS else torch.float32
            if t.dtype != dtype and (dtype in _LOW or t.dtype in _LOW
                                     or not t.is_floating_point()):
                raise ValueError(
                    f"{who}: state {key!r} has dtype {t.dtype}, this optimizer keeps it as "
                    f"{dtype} (state_dtype={fmt.dtype_name!r}); fastopt.torch does not convert "
                    "optimizer state between formats: load it into an optimizer with the "
                    "state_dtype it was saved with")
            size = fmt.length(key, n)
            if t.numel() != size:
                raise ValueError(f"{who}: state {key!r} has {t.numel()} elements, "
                                 f"expected {size}")
            out[key] = t.detach().to(dtype, copy=True).reshape(-1 if key == SCALES else p.shape)
        if SCALES in out and fmt.dtype_name != "int8":
            raise ValueError(f"{who}: state has {SCALES!r} (8-bit state's block scales) but "
                             f"this optimizer's state_dtype is {fmt.dtype_name!r}")
        if fmt.dtype_name == "int8" and SCALES not in out and any(k in out for k in MOMENTS):
            raise ValueError(f"{who}: state has 8-bit moments but not their {SCALES!r}")
        if SCALES in out:
            fmt.check_saved(SCALES, out[SCALES].numpy(), name)
        if MASTER in out and p.dtype == torch.float32:
            raise ValueError(f"{who}: state has {MASTER!r} but the parameter is float32 "
                             "(master weights are kept for bfloat16 and float16 parameters)")
        return out


def _offsets(sizes):
    """{index: offset} of the entries whose size is not None, laid out in order."""
    at, total = {}, 0
    for j, n in enumerate(sizes):
        if n is not None:
            at[j], total = total, total + n
    return at


def _adopt(view, cur, p):
    """``view`` holding ``cur`` (earlier or loaded state), else ``p``'s values
    (a master weight made from its parameter) or zeros (block scales)."""
    if cur is None and p is not None:
        view.copy_(p.detach())
    elif cur is None:
        view.zero_()
    elif cur.data_ptr() != view.data_ptr():
        if cur.numel() != view.numel():
            raise ValueError(f"optimizer state of {cur.numel()} elements where {view.numel()} "
                             "are expected: the parameter was resized after its state was "
                             "created")
        view.copy_(cur.reshape(view.shape))
    return view
