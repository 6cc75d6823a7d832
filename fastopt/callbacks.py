"""Keras-style training callbacks (public namespace; the code is in
:mod:`fastopt.training.callbacks`)."""
from fastopt.training.callbacks import (Callback, CallbackList, EarlyStopping, History,
                                        LearningRateScheduler, ModelCheckpoint, ProgbarLogger,
                                        ProgressBar)
from fastopt.training.monitors import CSVLogger, ReduceLROnPlateau, TerminateOnNaN

__all__ = ["CSVLogger", "Callback", "CallbackList", "EarlyStopping", "History",
           "LearningRateScheduler", "ModelCheckpoint", "ProgbarLogger", "ProgressBar",
           "ReduceLROnPlateau", "TerminateOnNaN"]
