"""Keras-style layers for :class:`fastopt.Sequential` (public namespace; the
code is in :mod:`fastopt.training.layers`)."""
from fastopt.training.layers import Dense, Dropout, Flatten, Input, Layer

__all__ = ["Dense", "Dropout", "Flatten", "Input", "Layer"]
