"""Optimizer paths over a 2-parameter test function, run by the real kernels.

Each step: the gradient of the test function is computed in float64 at the
current (float32) point, stored into a 2-element float32 grad buffer, and the
same fused kernel that trains networks (``fastopt.sgd_``, ``adagrad_``,
``rmsprop_``, ``adam_``, ``adamw_``) updates the 2-element float32 parameter
buffer and its state buffers in place.
"""
import numpy as np

import fastopt
from fastopt._validate import check_choice, check_int, check_number
from fastopt.viz import _specs
from fastopt.viz.functions import get as get_function

DEFAULT_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
_KERNELS = {"sgd": "sgd_", "adagrad": "adagrad_", "rmsprop": "rmsprop_", "adam": "adam_",
            "adamw": "adamw_"}
_ESCAPED = 1e6  # a path beyond this distance has diverged: it stops there


def paths(function="rosenbrock", optimizers=DEFAULT_OPTIMIZERS, *, steps=None, start=None,
          lr=None, convention="torch", draw=None):
    """Run each optimizer from the same start over the test ``function``.

    ``optimizers``: names or specs (``"adam:lr=3e-3"``) of
    :data:`fastopt.viz.OPTIMIZERS`; each starts from ``start`` (default: the
    function's) for ``steps`` steps, with the function's default learning rate
    for it unless the spec or ``lr`` (for all) sets one.  ``convention``:
    'torch' or 'keras' (the kernels' rule).  Returns a dict: 'function',
    'optimizers' (the labels, in order), and per label a dict of 'path'
    (steps+1, 2), 'loss' (steps+1,), 'effective_lr' (steps, 2: the step size
    each coordinate's gradient was multiplied by, read from the state after
    the step; the learning rate for SGD), 'settings' (the kernel's keyword arguments) and
    'diverged'.  'figure' holds the matplotlib figure when ``draw`` is True
    (ImportError without matplotlib) or None and matplotlib is installed.
    """
    fn = get_function(function)
    steps = fn.steps if steps is None else check_int(steps, "steps", minimum=1)
    start = _start(fn.start if start is None else start)
    lr = None if lr is None else check_number(lr, "lr", minimum=0, min_open=True)
    check_choice(convention, "convention", ("torch", "keras"))
    runs = [_run_spec(spec, fn, lr, convention) for spec in _as_specs(optimizers)]
    result = {"function": fn.name, "optimizers": [label for label, _ in runs],
              "convention": convention}
    for label, (family, settings) in runs:
        result[label] = run_path(fn, family, settings, start, steps)
    from fastopt.viz._plot import maybe_draw

    result["figure"] = maybe_draw("paths", result, draw)
    return result


def _as_specs(optimizers):
    specs = _specs.split(optimizers) if isinstance(optimizers, str) else list(optimizers)
    if not specs:
        raise ValueError("optimizers must name at least one optimizer")
    return specs


def _start(point):
    point = np.asarray(point, dtype=np.float64)
    if point.shape != (2,) or not np.all(np.isfinite(point)):
        raise ValueError(f"start must be two finite numbers (x, y), got {point.tolist()}")
    return point


def _run_spec(spec, fn, lr, convention):
    """(label, (kernel family, kernel keyword arguments)) of one spec."""
    name, options = _specs.parse(spec)
    family, settings = _specs.OPTIMIZERS[name]
    settings = {"lr": fn.lrs[name] if lr is None else lr, **settings, **options,
                "convention": convention}
    return spec, (family, settings)


def run_path(fn, family, settings, start, steps):
    """One path: ``steps`` calls of the ``family`` kernel from ``start``."""
    kernel = getattr(fastopt, _KERNELS[family])
    p = start.astype(np.float32)
    g = np.zeros(2, np.float32)
    state = _state(family, settings)
    path, eff = [p.astype(np.float64)], []
    for step in range(1, steps + 1):
        g[:] = fn.gradient(*p.astype(np.float64))  # float64 gradient, stored as float32
        _call(kernel, family, p, g, state, settings, step)
        if not np.all(np.isfinite(p)) or np.abs(p).max() > _ESCAPED:
            break
        path.append(p.astype(np.float64))
        eff.append(_effective_lr(family, settings, state, step))
    path = np.array(path)
    return {"path": path, "loss": fn.value(path[:, 0], path[:, 1]),
            "effective_lr": np.array(eff).reshape(-1, 2),
            "settings": settings, "diverged": len(path) < steps + 1}


def _state(family, settings):
    zeros = lambda: np.zeros(2, np.float32)  # noqa: E731
    if family == "sgd":
        return {"momentum_buf": zeros()} if settings.get("momentum") else {}
    if family == "adagrad":
        return {"state_sum": zeros()}
    if family == "rmsprop":
        state = {"square_avg": zeros()}
        if settings.get("momentum"):
            state["momentum_buf"] = zeros()
        if settings.get("centered"):
            state["grad_avg"] = zeros()
        return state
    state = {"exp_avg": zeros(), "exp_avg_sq": zeros()}
    if settings.get("amsgrad"):
        state["max_exp_avg_sq"] = zeros()
    return state


def _call(kernel, family, p, g, state, settings, step):
    kwargs = dict(settings, **state)
    if family != "rmsprop":
        kwargs["step"] = step
    try:
        kernel(p, g, **kwargs)
    except TypeError as exc:  # an option the rule does not have
        raise ValueError(f"{family}: {exc}") from None


def _effective_lr(family, settings, state, step):
    """Per coordinate, the factor the rule multiplied the gradient (Adam:
    the first moment) by at this step, computed from the state in float64."""
    lr, keras = settings["lr"], settings["convention"] == "keras"
    if family == "sgd":
        return np.full(2, lr)
    if family == "adagrad":
        s = state["state_sum"].astype(np.float64)
        eps = settings.get("eps", 1e-10)
        lr = lr / (1 + (step - 1) * settings.get("lr_decay", 0.0)) if not keras else lr
        return lr / np.sqrt(s + eps) if keras else lr / (np.sqrt(s) + eps)
    if family == "rmsprop":
        v = state["square_avg"].astype(np.float64)
        eps = settings.get("eps", 1e-8)
        return lr / np.sqrt(v + eps) if keras else lr / (np.sqrt(v) + eps)
    v = state.get("max_exp_avg_sq", state["exp_avg_sq"]).astype(np.float64)
    b1, b2, eps = settings.get("beta1", 0.9), settings.get("beta2", 0.999), \
        settings.get("eps", 1e-8)
    bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
    if keras:
        return lr * np.sqrt(bc2) / bc1 / (np.sqrt(v) + eps)
    return lr / bc1 / (np.sqrt(v) / np.sqrt(bc2) + eps)
