"""One trial of a search: build the model a configuration describes, train
it on the training part, score it on the validation part.

A configuration is a dict of argument names.  Without a ``model_fn``,
``hidden``, ``activation``, ``output`` and ``kernel_initializer`` shape the
:class:`~fastopt.MLP`; ``optimizer`` (a name), ``loss`` and ``metrics`` go to
``compile``; ``batch_size``, ``epochs``, ``shuffle`` and ``threads`` to ``fit``; any other
name (``learning_rate``, or ``lr``, ``momentum``, ``beta_1``,
``weight_decay``, ...) is an argument of the Keras-family optimizer class,
given to those of the searched optimizers that take it.
"""
import inspect
import math
import time

import numpy as np

from fastopt import _objectives
from fastopt.optim import keras as keras_optimizers
from fastopt.training import MLP

FIT_ARGS = ("batch_size", "epochs", "shuffle", "threads")
ARCHITECTURE_ARGS = ("hidden", "activation", "output", "kernel_initializer")
COMPILE_ARGS = ("optimizer", "loss", "metrics")
_ALIASES = {"lr": "learning_rate"}


def optimizer_arguments(names, optimizers):
    """Check that each of ``names`` (not an MLP, compile or fit argument) is
    an argument of at least one of the ``optimizers`` (names) searched."""
    known = set(FIT_ARGS + ARCHITECTURE_ARGS + COMPILE_ARGS)
    accepted = set()
    for name in optimizers:
        if not isinstance(name, str):
            raise TypeError(f"optimizer must be searched by name (a new optimizer per trial), "
                            f"got {type(name).__name__}")
        accepted |= set(inspect.signature(keras_optimizers.get_class(name)).parameters)
    for name in names:
        if name not in known and _ALIASES.get(name, name) not in accepted:
            raise ValueError(f"{name!r} is not an MLP, compile or fit argument, nor an argument "
                             f"of the optimizer(s) {sorted(optimizers)}")


def build_mlp(params, x, y, seed):
    """The compiled MLP ``params`` describes, sized for ``x`` and ``y``."""
    loss = params.get("loss", "sparse_categorical_crossentropy")
    info = _objectives.get(loss)
    if info.labels:
        n_out = int(np.max(y)) + 1
    else:
        n_out = y.shape[1] if np.ndim(y) == 2 else 1
    hidden = params.get("hidden", (32,))
    hidden = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
    n_in = int(np.prod(np.shape(x)[1:]))  # images (N, 28, 28) are flattened, as fit does
    model = MLP([n_in, *hidden, n_out], activation=params.get("activation", "relu"),
                output=params.get("output", info.output or "linear"), seed=seed,
                kernel_initializer=params.get("kernel_initializer", "glorot_uniform"))
    cls = keras_optimizers.get_class(params.get("optimizer", "adam"))
    accepted = inspect.signature(cls).parameters
    kwargs = {_ALIASES.get(k, k): v for k, v in params.items()
              if _ALIASES.get(k, k) in accepted and k not in FIT_ARGS + ARCHITECTURE_ARGS
              + COMPILE_ARGS}
    default_metrics = ["accuracy"] if info.output in ("softmax", "sigmoid") else None
    model.compile(cls(**kwargs), loss=loss, metrics=params.get("metrics", default_metrics))
    return model


def fit_arguments(params):
    return dict(batch_size=params.get("batch_size", 32), epochs=params.get("epochs", 1),
                shuffle=params.get("shuffle", True), threads=params.get("threads", "auto"))


def run_trial(params, build, x, y, validation, monitor):
    """Train the model ``build(params)`` on ``x``, ``y`` and score it on
    ``validation`` (fit's ``validation_split`` or ``validation_data``
    arguments, as a dict): ``(row, model)``, the row holding the final
    epoch's validation logs and ``score`` (NaN, with ``error``, if training
    failed: a value no run could use, divergence)."""
    start = time.perf_counter()
    try:
        model = build(params)
        history = model.fit(x, y, verbose=0, **fit_arguments(params), **validation)
    except (ValueError, FloatingPointError) as exc:
        return {"score": math.nan, "status": "failed", "error": str(exc),
                "seconds": time.perf_counter() - start}, None
    logs = {k: v[-1] for k, v in history.history.items() if k.startswith("val_") and v}
    if monitor not in logs:
        raise ValueError(f"monitor {monitor!r} is not among the validation logs "
                         f"{sorted(logs)}; compile with the metric it names")
    score = float(logs[monitor])
    row = {"score": score, "status": "ok" if math.isfinite(score) else "failed", **logs,
           "seconds": time.perf_counter() - start}
    return row, model
