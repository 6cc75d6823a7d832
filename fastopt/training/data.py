"""The data side of ``fit`` / ``evaluate`` / ``predict``: inputs and targets
checked and converted once, the validation split, and the batches of an
epoch."""
import math

import numpy as np

import fastopt._kernels as K
from fastopt import _objectives as objectives
from fastopt._validate import check_number


def as_inputs(x, inputs, name="x"):
    """``x`` as a C-contiguous, aligned float32 (N, inputs) array, converted
    once; (N, ...) with ``inputs`` values per sample is flattened."""
    if x is None:
        raise TypeError(f"{name} must be an array of inputs, got None")
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)) \
            or x.dtype == np.bool_:
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.ndim < 2 or math.prod(x.shape[1:]) != inputs:
        raise ValueError(f"{name} must have shape (N, {inputs}) or (N, ...) with {inputs} "
                         f"values per sample, got {x.shape}")
    # aligned too, for the kernels; all_finite scans without a temporary
    x = np.require(x.reshape(len(x), -1), np.float32, ["C", "A"])
    if not K.all_finite(x):
        raise ValueError(f"{name} holds nan or inf")
    return x


def _as_labels(y, n, outputs, name):
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer)
                           or (np.issubdtype(y.dtype, np.floating)
                               and np.all(np.mod(y, 1) == 0))):
        hint = (" (one-hot targets need loss='categorical_crossentropy')"
                if y.ndim == 2 and y.shape[1] == outputs else "")
        raise ValueError(f"{name} must be integer class labels of shape ({n},) for "
                         f"sparse_categorical_crossentropy, got {y.dtype} {y.shape}{hint}")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= outputs):
        bad = int(np.flatnonzero((y < 0) | (y >= outputs))[0])
        raise ValueError(f"{name}[{bad}] = {y[bad]} is not a class label in [0, {outputs})")
    return np.ascontiguousarray(y)


def as_targets(y, n, loss, outputs, name="y"):
    """``y`` in the form ``loss`` (a :class:`~fastopt._objectives.Loss`)
    takes: int64 labels (n,), or float32 (n, outputs); converted once."""
    if y is None:
        raise TypeError(f"{name} must be an array of targets, got None")
    y = np.asarray(y)
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} samples but the inputs have {n}")
    if loss.labels:
        return _as_labels(y, n, outputs, name)
    if y.ndim == 1 and outputs == 1:
        y = y[:, None]
    if y.shape != (n, outputs):
        hint = (" (integer labels need loss='sparse_categorical_crossentropy')"
                if y.ndim == 1 else "")
        raise ValueError(f"{name} must have shape ({n}, {outputs}) for {loss.name}, "
                         f"got {y.shape}{hint}")
    y = np.require(y, np.float32, ["C", "A"])
    if not K.all_finite(y):
        raise ValueError(f"{name} holds nan or inf")
    if loss.code in (objectives.BCE, objectives.CATEGORICAL_CE) and n and (
            y.min() < 0 or y.max() > 1):
        bad = np.unravel_index(int(np.argmax((y < 0) | (y > 1))), y.shape)
        raise ValueError(f"{name}{list(bad)} = {y[bad]}: {loss.name} needs targets in [0, 1] "
                         f"(probabilities{', one-hot rows' if loss.code != objectives.BCE else ''})")
    return y


def training_and_validation(x, y, validation_split, validation_data, convert):
    """``(x, y, validation)``: the training set and ``(x_val, y_val)`` or
    None.  ``validation_split`` takes the *last* fraction of the samples,
    before any shuffling (Keras: the split is at ``ceil(N * (1 - split))``);
    ``validation_data`` gives the set explicitly and is converted with
    ``convert(x, y, prefix)``."""
    validation_split = check_number(validation_split, "validation_split", minimum=0,
                                    maximum=1, max_open=True)
    if validation_data is not None:
        if validation_split:
            raise ValueError("pass validation_split or validation_data, not both")
        try:
            x_val, y_val = validation_data
        except (TypeError, ValueError):
            raise TypeError("validation_data must be a pair (x_val, y_val)") from None
        return x, y, convert(x_val, y_val, "validation_data ")
    if not validation_split:
        return x, y, None
    split_at = int(math.ceil(len(x) * (1.0 - validation_split)))
    if split_at == len(x) or split_at == 0:
        raise ValueError(f"validation_split={validation_split} leaves an empty training or "
                         f"validation set for {len(x)} samples")
    return x[:split_at], y[:split_at], (x[split_at:], y[split_at:])


def epoch_order(rng, n, shuffle):
    """The order of an epoch's samples: a permutation from ``rng`` (whose
    state alone decides it, so a resumed run shuffles exactly as it would
    have), or 0..n-1."""
    return rng.permutation(n) if shuffle else np.arange(n)


def batches(order, rows):
    """The index arrays of an epoch's batches: ``rows`` samples each, the
    last one possibly fewer."""
    return (order[lo:lo + rows] for lo in range(0, len(order), rows))
