"""Keras-style training callbacks (public namespace; the code is in
:mod:`fastopt.training.callbacks`)."""
from fastopt.training.callbacks import (Callback, CallbackList, EarlyStopping, History,
                                        LearningRateScheduler, ModelCheckpoint, ProgbarLogger,
                                        ProgressBar)

__all__ = ["Callback", "CallbackList", "EarlyStopping", "History", "LearningRateScheduler",
           "ModelCheckpoint", "ProgbarLogger", "ProgressBar"]
