"""The machinery shared by every optimizer class: groups, stepping, state.

Each parameter group's ``(param, grad)`` pairs are coalesced into *spans*
(:mod:`fastopt.optim._spans`), each updated by a single kernel call; a model
held in one flat buffer is therefore one call per step.

Optimizer state lives per span, in flat buffers; each parameter's state is a
view into them, which is what ``state_dict`` exposes, keyed by parameter
index like PyTorch's.

Subclasses say which state buffers a group needs (``_state_names``) and how
one span is updated (``_update``); they never loop over elements.
"""
import copy

import numpy as np

from fastopt._kernels import all_finite
from fastopt._validate import check_int, check_number
from fastopt.optim._lowp import SCALES, StateFormat, grad_dtype_name
from fastopt.optim._spans import as_pairs, coalesce, is_group_list
from fastopt.optim.flat import FlatParameters, aligned_zeros

_EMPTY = np.empty(0, np.float32)

DEFERRED = object()
"""``params`` of an optimizer whose parameters come later (Keras' ``build``):
``Optimizer.__init__`` then checks the defaults and binds nothing; the
subclass attaches the parameters with ``add_param_group`` when it is built."""

_UNBUILT = "the optimizer is not built yet: call build(params) (or apply_gradients) first"


class Optimizer:
    """Base class: parameter groups over flat spans, ``step``, ``zero_grad``,
    ``state_dict`` and ``load_state_dict`` (PyTorch's protocol)."""

    family = "torch"  # which library's rules and names: "torch" or "keras"
    _accumulator = None  # Adagrad's sum: starts at initial_accumulator_value
    _lowp_states = ()  # the state buffers its kernel takes in bfloat16 / 8 bits
    _state_dtypes = ("float32", "bfloat16", "int8")  # the formats they may have
    _grad_dtypes = ("float32",)  # the gradient dtypes its kernel reads

    def __init__(self, params, defaults, *, state_dtype="float32", state_rounding="nearest",
                 seed=0):
        self.state_format = StateFormat(state_dtype, state_rounding, seed, self._lowp_states,
                                        type(self).__name__, self._state_dtypes)
        self.defaults = dict(defaults)
        self.param_groups = []
        self._params = []       # every (param, grad) pair, by global index
        self._spans = []        # per group: list of Span
        if params is DEFERRED:
            self._check_group(self.defaults)
            return
        if isinstance(params, FlatParameters) or not is_group_list(params):
            groups = [{"params": params}]
        else:
            groups = list(params)
        for group in groups:
            self.add_param_group(group)

    # -- the two things a rule defines --------------------------------------
    def _state_names(self, group):
        raise NotImplementedError

    def _update(self, param, grad, state, group, step, grad_scale):
        """Run the rule's kernel over one span (``step`` 1-based)."""
        raise NotImplementedError

    def _all_state_names(self, group):
        """The rule's state buffers and those of the state format."""
        return self._state_names(group) + self.state_format.extra_names()

    def _init_state(self, name, group, n):
        fmt = self.state_format
        out = aligned_zeros(fmt.length(name, n), fmt.dtype_of(name))
        if name == self._accumulator:
            out.fill(group["initial_accumulator_value"])
        return out

    # -- groups --------------------------------------------------------------
    def _resolve(self, group):
        """The group as the kernel takes it (hook: the Keras classes resolve
        a schedule and legacy decay into ``lr``); here the group itself."""
        return group

    def _scale(self, grad_scale):
        """The gradient factor the kernels apply this step (hook: the Keras
        classes clip here); here ``grad_scale`` itself."""
        return grad_scale

    def _check_group(self, group):
        """Validate a group's hyperparameters (after ``_resolve``)."""
        self._check_resolved(self._resolve(group))

    def _check_resolved(self, group):
        """Validate a resolved group with a zero-length kernel call: the
        kernel's own checks, so messages are identical and nothing is
        written."""
        if self._accumulator is not None:
            check_number(group["initial_accumulator_value"], "initial_accumulator_value",
                         minimum=0)
        state = {name: self._init_state(name, group, 0) for name in self._all_state_names(group)}
        self._update(_EMPTY, _EMPTY, state, group, 1, 1.0)

    def add_param_group(self, group):
        if not isinstance(group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(group).__name__}")
        if "params" not in group:
            raise ValueError("a parameter group needs a 'params' entry")
        unknown = sorted(set(group) - set(self.defaults) - {"params"})
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown hyperparameter(s) {unknown}; "
                            f"expected some of {sorted(self.defaults)}")
        pairs = as_pairs(group["params"])
        if not pairs:
            raise ValueError("a parameter group has no parameters")
        for i, (_, g) in enumerate(pairs):
            if grad_dtype_name(g.dtype) not in self._grad_dtypes:
                raise TypeError(f"params[{i}] grad has dtype {g.dtype}; "
                                f"{type(self).__name__} reads gradients of dtype "
                                f"{' or '.join(self._grad_dtypes)}")
        seen = {id(p) for p, _ in self._params}
        for p, _ in pairs:
            if id(p) in seen or any(np.shares_memory(p, q) for q, _ in self._params):
                raise ValueError("some parameters appear in more than one parameter group")
        new = {k: v for k, v in group.items() if k != "params"}
        full = {**self.defaults, **new}
        self._check_group(full)
        first = len(self._params)
        indices = list(range(first, first + len(pairs)))
        self._params.extend(pairs)
        full["params"] = pairs
        self.param_groups.append(full)
        self._spans.append(coalesce(pairs, indices))

    @property
    def parameters(self):
        """Every ``(param, grad)`` pair this optimizer updates, in order
        (a new list; the arrays are the optimizer's own)."""
        return list(self._params)

    def grad_buffers(self):
        """The gradient arrays the kernel calls read, one flat array per span
        (clipping them in place clips what the next ``step`` uses)."""
        return [span.grad for spans in self._spans for span in spans]

    @property
    def n_kernel_calls(self):
        """Kernel calls one ``step()`` makes (one per span)."""
        return sum(len(s) for s in self._spans)

    # -- stepping ------------------------------------------------------------
    def _live_state(self, span, group):
        """The state buffers of ``span`` that the group's rule reads now,
        created on first use.  A buffer that a changed hyperparameter no
        longer reads (momentum set to 0) is kept, as torch keeps it, but not
        passed: the kernels reject a buffer they would not read."""
        names = self._all_state_names(group)
        for name in names:
            if name not in span.state:
                span.state[name] = self._init_state(name, group, span.param.size)
        if len(span.state) == len(names):
            return span.state
        return {name: span.state[name] for name in names}

    def _grads_finite(self):
        return all(all_finite(g) for g in self.grad_buffers())

    def step(self, grad_scale=1.0, skip_nonfinite=False):
        """One update of every parameter from its current gradient.

        ``grad_scale`` multiplies every gradient inside the kernel (used for
        clipping by global norm at no extra pass).  Every group's
        hyperparameters are checked before any parameter is written.  With
        ``skip_nonfinite=True`` every gradient is scanned first; if any holds
        nan or inf nothing is updated and step returns True (else False).
        """
        if not self.param_groups:
            raise RuntimeError(_UNBUILT)
        groups = [self._resolve(group) for group in self.param_groups]
        for group in groups:
            self._check_resolved(group)
        if skip_nonfinite and not self._grads_finite():
            return True
        grad_scale = self._scale(grad_scale)
        for group, spans in zip(groups, self._spans):
            for span in spans:
                state = self._live_state(span, group)
                self._update(span.param, span.grad, state, group, span.step + 1, grad_scale)
                span.step += 1
        return False if skip_nonfinite else None

    def zero_grad(self):
        for g in self.grad_buffers():
            g.fill(0)

    # -- state_dict ----------------------------------------------------------
    def state_dict(self):
        """A deep copy of the state, keyed by parameter index (as PyTorch's)."""
        state = {}
        for spans in self._spans:
            for span in spans:
                if span.step == 0:
                    continue
                per_param = {name: span.views(flat) for name, flat in span.state.items()
                             if name != SCALES}
                for i in span.indices:
                    entry = {"step": span.step}
                    entry.update({name: views[i].copy() for name, views in per_param.items()})
                    state[i] = entry
                if SCALES in span.state:  # the span's block scales, with its first parameter
                    state[span.indices[0]][SCALES] = span.state[SCALES].copy()
        groups = []
        for group, spans in zip(self.param_groups, self._spans):
            g = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            g["params"] = [i for span in spans for i in span.indices]
            groups.append(g)
        return {"state": state, "param_groups": groups, "optimizer": self._kind()}

    def _kind(self):
        return f"{self.family}.{type(self).__name__}"

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict``.  Everything is checked first; on any
        error the optimizer is left unchanged."""
        if not isinstance(state_dict, dict) or "state" not in state_dict \
                or "param_groups" not in state_dict:
            raise ValueError("state_dict must be a dict with 'state' and 'param_groups'")
        kind = state_dict.get("optimizer", self._kind())
        if kind != self._kind():
            raise ValueError(f"state_dict is from a {kind} optimizer, not {self._kind()}")
        new_groups = self._saved_groups(state_dict["param_groups"])
        plan = [(span, *_saved_span_state(span, self._all_state_names(group),
                                          state_dict["state"], self.state_format))
                for group, spans in zip(new_groups, self._spans) for span in spans]
        # Everything checked: apply.
        for group, new in zip(self.param_groups, new_groups):
            params = group["params"]
            group.clear()
            group.update(new)
            group["params"] = params
        for span, step, flats in plan:
            span.step = step
            span.state = flats

    def _saved_groups(self, groups):
        """A state_dict's parameter groups, checked, as full groups without
        ``params`` (nothing is changed)."""
        if len(groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(groups)} parameter groups, "
                             f"this optimizer has {len(self.param_groups)}")
        new_groups = []
        for k, (saved, spans) in enumerate(zip(groups, self._spans)):
            ids = [i for span in spans for i in span.indices]
            if list(saved.get("params", [])) != ids:
                raise ValueError(f"parameter group {k} of state_dict holds parameters "
                                 f"{saved.get('params')}, this optimizer's holds {ids}")
            unknown = sorted(set(saved) - set(self.defaults) - {"params"})
            if unknown:
                raise ValueError(f"state_dict group {k} has unknown hyperparameter(s) {unknown}")
            group = {**self.defaults, **{key: copy.deepcopy(v) for key, v in saved.items()
                                          if key != "params"}}
            self._check_group(group)
            new_groups.append(group)
        return new_groups

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for k, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {k}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _saved_span_state(span, names, saved_state, fmt):
    """``(step, {name: flat array})`` of one span from a state_dict's
    per-parameter ``saved_state``, checked; ``(0, {})`` if it has none."""
    entries = [saved_state.get(i) for i in span.indices]
    if all(e is None for e in entries):
        return 0, {}
    if any(e is None for e in entries):
        raise ValueError(f"state_dict has state for some but not all of "
                         f"parameters {span.indices}")
    steps = {e.get("step") for e in entries}
    if len(steps) != 1:
        raise ValueError(f"parameters {span.indices} have different step "
                         f"counts {sorted(steps)}; they are updated together")
    step = check_int(steps.pop(), "state_dict step", minimum=0)
    return step, {name: _saved_flat(span, name, entries, fmt) for name in names}


def _saved_flat(span, name, entries, fmt):
    """The state buffer ``name`` of ``span``, concatenated from the saved
    per-parameter arrays (checked for size and dtype: see
    StateFormat.check_saved); the block scales of 8-bit state are saved
    whole with the span's first parameter."""
    parts = []
    saved = zip(span.indices[:1], [fmt.length(name, span.param.size)], entries[:1]) \
        if name == SCALES else zip(span.indices, span.sizes, entries)
    for i, size, e in saved:
        if name not in e:
            raise ValueError(f"state_dict state of parameter {i} has no {name!r}")
        a = np.asarray(e[name])
        if a.size != size:
            raise ValueError(f"state_dict {name!r} of parameter {i} has "
                             f"{a.size} elements, expected {size}")
        fmt.check_saved(name, a, f"parameter {i}")
        parts.append(a.reshape(-1))
    flat = aligned_zeros(fmt.length(name, span.param.size), fmt.dtype_of(name))
    if parts:
        np.concatenate(parts, out=flat, casting="same_kind")
    return flat
