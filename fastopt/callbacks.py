"""Keras-style training callbacks (public namespace; the code is in
:mod:`fastopt.training.callbacks`)."""
from fastopt.training.callbacks import (Callback, EarlyStopping, LearningRateScheduler,
                                        ModelCheckpoint, ProgressBar)

__all__ = ["Callback", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint",
           "ProgressBar"]
