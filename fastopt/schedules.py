"""Learning-rate schedules, Keras and PyTorch conventions (public namespace;
the code is in :mod:`fastopt.optim.schedules`)."""
from fastopt.optim.schedules import (CosineAnnealingLR, CosineDecay, CosineDecayRestarts,
                                     ExponentialDecay, ExponentialLR, InverseTimeDecay,
                                     LearningRateSchedule, PiecewiseConstantDecay,
                                     PolynomialDecay, ScheduleLR, StepLR, deserialize, serialize)

__all__ = ["CosineAnnealingLR", "CosineDecay", "CosineDecayRestarts", "ExponentialDecay",
           "ExponentialLR", "InverseTimeDecay", "LearningRateSchedule", "PiecewiseConstantDecay",
           "PolynomialDecay", "ScheduleLR", "StepLR", "deserialize", "serialize"]
