"""The Keras-shaped trainer: :class:`MLP` with ``compile`` / ``fit`` /
``evaluate`` / ``predict``, its callbacks and its resumable checkpoints.

A training step is one call into the compiled ``Network`` pass
(``fastopt._kernels``) followed by one optimizer step from
:mod:`fastopt.optim`.  The loss and metric policy is one table,
:mod:`fastopt._objectives`.
"""
from fastopt.training import callbacks, checkpoint, layers, losses, metrics
from fastopt.training.model import MLP, History
from fastopt.training.sequential import Sequential

__all__ = ["History", "MLP", "Sequential", "callbacks", "checkpoint", "layers", "losses",
           "metrics"]
