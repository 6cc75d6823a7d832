"""Learning-rate schedules, Keras and PyTorch conventions (public namespace;
the code is in :mod:`fastopt.optim.schedules`)."""
from fastopt.optim.schedules import (CosineAnnealingLR, CosineDecay, ExponentialDecay,
                                     ExponentialLR, InverseTimeDecay, LearningRateSchedule,
                                     PiecewiseConstantDecay, ScheduleLR, StepLR)

__all__ = ["CosineAnnealingLR", "CosineDecay", "ExponentialDecay", "ExponentialLR",
           "InverseTimeDecay", "LearningRateSchedule", "PiecewiseConstantDecay",
           "ScheduleLR", "StepLR"]
