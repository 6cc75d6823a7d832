"""Keras-style metric objects for ``compile`` (public namespace; the code
is in :mod:`fastopt.training.metrics`)."""
from fastopt.training.metrics import (BinaryAccuracy, CategoricalAccuracy, MeanAbsoluteError,
                                      MeanSquaredError, Metric, SparseCategoricalAccuracy)

__all__ = ["BinaryAccuracy", "CategoricalAccuracy", "MeanAbsoluteError", "MeanSquaredError",
           "Metric", "SparseCategoricalAccuracy"]
