"""Optimizer classes over fastopt's fused kernels.

``fastopt.optim.SGD``, ``Adagrad``, ``RMSprop``, ``Adam``, ``AdamW``,
``NAdam``, ``Adamax``, ``Adadelta`` and ``Lion``
follow PyTorch (names, defaults, rules, parameter groups, ``state_dict``);
:mod:`fastopt.optim.keras` has the Keras 3 counterparts.  Both update a
:class:`~fastopt.optim.flat.FlatParameters` with one kernel call per parameter
group per step, or plain ``(param, grad)`` array pairs.
"""
from fastopt.optim import keras
from fastopt.optim._base import Optimizer
from fastopt.optim._torch_like import (SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Lion, NAdam,
                                       RMSprop)
from fastopt.optim.clip import clip_grad_norm_, clip_grad_value_, global_grad_norm

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "Adamax", "AdamW", "Lion", "NAdam", "Optimizer",
           "RMSprop", "clip_grad_norm_",
           "clip_grad_value_", "global_grad_norm", "keras"]
