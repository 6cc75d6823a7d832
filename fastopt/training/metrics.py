"""Keras' metric objects (public as :mod:`fastopt.metrics`), for
``compile(metrics=[...])``: each names an entry of the metric table of
:mod:`fastopt._objectives` (``identifier``), computed in the compiled
training pass, and is reported under Keras' default name (``name``)."""


class Metric:
    """A metric of ``compile``: ``identifier`` is its entry of
    ``fastopt._objectives.METRICS``, ``name`` the history key."""

    identifier = None

    def __init__(self):
        self.name = self.identifier

    def __repr__(self):
        return f"{type(self).__name__}()"


class BinaryAccuracy(Metric):
    """The fraction of outputs whose ``output > 0.5`` equals the 0/1 target
    (Keras' ``BinaryAccuracy`` with its threshold 0.5)."""
    identifier = "binary_accuracy"


class CategoricalAccuracy(Metric):
    """The fraction of samples whose output argmax is the one-hot target's
    (Keras' ``CategoricalAccuracy``; ties go to the first maximum)."""
    identifier = "categorical_accuracy"


class SparseCategoricalAccuracy(Metric):
    """The fraction of samples whose output argmax is the integer label
    (Keras' ``SparseCategoricalAccuracy``)."""
    identifier = "sparse_categorical_accuracy"


class MeanSquaredError(Metric):
    """The mean of the squared errors of the outputs (Keras'
    ``MeanSquaredError`` metric)."""
    identifier = "mean_squared_error"


class MeanAbsoluteError(Metric):
    """The mean of the absolute errors of the outputs (Keras'
    ``MeanAbsoluteError`` metric)."""
    identifier = "mean_absolute_error"


__all__ = ["BinaryAccuracy", "CategoricalAccuracy", "MeanAbsoluteError", "MeanSquaredError",
           "Metric", "SparseCategoricalAccuracy"]
