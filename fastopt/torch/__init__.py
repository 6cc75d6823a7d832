"""fastopt.torch: drop-in CPU optimizers for PyTorch models.

::

    import fastopt.torch as fot
    opt = fot.Adam(model.parameters(), lr=1e-3)     # instead of torch.optim.Adam

``SGD``, ``Adagrad``, ``RMSprop``, ``Adam``, ``AdamW``, ``NAdam``,
``Adamax`` and ``Adadelta`` are subclasses of the torch.optim classes of
the same name (same arguments, defaults,
parameter groups, ``state_dict``; any lr scheduler works) whose ``step``
runs fastopt's fused kernels directly on the tensors' memory.  ``Lion``
(not in torch) is a torch.optim.Optimizer with lion-pytorch's arguments
and the Keras/optax rule.
``Adam`` and ``AdamW`` also take bfloat16 and float16 models (float32
master weights in their state, the 16-bit parameter written in the same
pass) and ``state_dtype="bfloat16"`` or ``"int8"`` (see _lowp and
docs/low_precision.md).
:func:`flatten_` puts a model's parameters and gradients into one buffer
each, so a step is one kernel call.  :class:`ShardedOptimizer` keeps 1/N of
such an optimizer's state on each of N MPI ranks (ZeRO stage 1; mpi4py is
imported when one is made).  This module imports torch; ``import fastopt``
does not.
"""

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - needs an environment without torch
    raise ImportError("fastopt.torch needs PyTorch: pip install 'fastopt[torch]'") from exc

from fastopt.torch._flatten import FlatBuffers, flatten_
from fastopt.torch._optimizers import (
    SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Lion, NAdam, RMSprop)
from fastopt.torch._sharded import ShardedOptimizer

__all__ = ["Adadelta", "Adagrad", "Adam", "Adamax", "AdamW", "FlatBuffers", "Lion", "NAdam",
           "RMSprop", "SGD", "ShardedOptimizer", "flatten_"]
