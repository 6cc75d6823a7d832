"""Keras' loss objects (public as :mod:`fastopt.losses`): accepted by
``compile``, where the compiled pass runs them (label smoothing and
``from_logits`` included), and callable on arrays as Keras' are.

Called as ``loss(y_true, y_pred)`` they return the mean loss (Keras'
default reduction, 'sum_over_batch_size') through fastopt's fused loss
kernels, matching Keras 3 within float32 rounding:

* :class:`MeanSquaredError`: ``mean((y_pred - y_true)**2)``.
* :class:`BinaryCrossentropy`: from logits, ``max(z, 0) - z t + log1p(exp(-|z|))``;
  from probabilities p clipped to [1e-7, 1 - 1e-7], ``-(t log p + (1 - t) log(1 - p))``;
  label smoothing s makes each target ``t (1 - s) + s / 2``.
* :class:`CategoricalCrossentropy` / :class:`SparseCategoricalCrossentropy`:
  from logits, ``logsumexp(z) - sum(t z)``; from probabilities, Keras'
  ``-sum(t log(clip(p / sum(p), 1e-7, 1 - 1e-7)))`` (the kernel takes the
  log of the clipped probabilities as logits); label smoothing s (categorical
  only) makes each target ``t (1 - s) + s / classes``.
"""
import numpy as np

import fastopt._kernels as K
from fastopt import _objectives as objectives

_EPSILON = 1e-7  # Keras' backend epsilon


class LossFunction:
    """A loss object: ``policy`` is its entry of :mod:`fastopt._objectives`
    (what ``compile`` runs), ``name`` Keras' name for it."""

    identifier = None  # the loss table's name

    def __init__(self, from_logits=False, label_smoothing=0.0):
        self.policy = objectives.configure(objectives.get(self.identifier), from_logits,
                                           label_smoothing)
        self.from_logits = from_logits
        self.label_smoothing = float(label_smoothing)
        self.name = self.identifier

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}

    def __call__(self, y_true, y_pred):
        """The mean loss of ``y_pred`` (the model's outputs) against
        ``y_true``, a float."""
        pred = _float32(y_pred, "y_pred")
        return float(self._value(y_true, pred))

    def _value(self, y_true, pred):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits}, " \
               f"label_smoothing={self.label_smoothing})"


def _float32(a, name):
    a = np.asarray(a)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers, got dtype {a.dtype}")
    return np.ascontiguousarray(a, np.float32)


def _log_probabilities(p):
    """Keras' cross-entropy on probabilities: normalised rows, clipped."""
    p = p / p.sum(axis=-1, keepdims=True)
    return np.log(np.clip(p, _EPSILON, 1 - _EPSILON)).astype(np.float32)


class MeanSquaredError(LossFunction):
    """Keras' ``MeanSquaredError``: the mean of the squared errors."""

    identifier = "mean_squared_error"

    def __init__(self):
        super().__init__()

    def _value(self, y_true, pred):
        target = _float32(y_true, "y_true")
        if target.shape != pred.shape and target.shape + (1,) == pred.shape:
            target = target[..., None]
        return K.mean_squared_error(pred, np.ascontiguousarray(target))


class BinaryCrossentropy(LossFunction):
    """Keras' ``BinaryCrossentropy(from_logits=False, label_smoothing=0.0)``."""

    identifier = "binary_crossentropy"

    def _value(self, y_true, pred):
        target = _float32(y_true, "y_true")
        if target.shape != pred.shape and target.shape + (1,) == pred.shape:
            target = target[..., None]
        if self.label_smoothing:
            target = target * np.float32(1 - self.label_smoothing) + \
                np.float32(0.5 * self.label_smoothing)
        return K.binary_cross_entropy(pred, np.ascontiguousarray(target),
                                      from_logits=self.from_logits)


class CategoricalCrossentropy(LossFunction):
    """Keras' ``CategoricalCrossentropy(from_logits=False, label_smoothing=0.0)``
    on one-hot (or probability) targets."""

    identifier = "categorical_crossentropy"

    def _value(self, y_true, pred):
        logits = pred if self.from_logits else _log_probabilities(pred)
        return K.softmax_cross_entropy(logits, _float32(y_true, "y_true"),
                                       label_smoothing=self.label_smoothing)


class SparseCategoricalCrossentropy(LossFunction):
    """Keras' ``SparseCategoricalCrossentropy(from_logits=False)`` on
    integer class labels."""

    identifier = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False):
        super().__init__(from_logits)

    def _value(self, y_true, pred):
        labels = np.asarray(y_true)
        if labels.ndim == pred.ndim and labels.shape[-1:] == (1,):
            labels = labels[..., 0]
        if labels.dtype.kind == "f" and np.all(np.mod(labels, 1) == 0):
            labels = labels.astype(np.int64)
        if labels.dtype.kind not in "iu":
            raise ValueError(f"y_true must be integer class labels, got dtype {labels.dtype}")
        if labels.size and labels.min() < 0:
            raise ValueError(f"y_true holds the negative label {labels.min()}")
        logits = pred if self.from_logits else _log_probabilities(pred)
        return K.softmax_cross_entropy(logits, labels, ignore_index=-1)


__all__ = ["BinaryCrossentropy", "CategoricalCrossentropy", "LossFunction",
           "MeanSquaredError", "SparseCategoricalCrossentropy"]
