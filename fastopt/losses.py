"""Keras-style loss objects for ``compile`` and for arrays (public
namespace; the code is in :mod:`fastopt.training.losses`)."""
from fastopt.training.losses import (BinaryCrossentropy, CategoricalCrossentropy, LossFunction,
                                     MeanSquaredError, SparseCategoricalCrossentropy)

__all__ = ["BinaryCrossentropy", "CategoricalCrossentropy", "LossFunction", "MeanSquaredError",
           "SparseCategoricalCrossentropy"]
