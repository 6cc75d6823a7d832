"""Gradient clipping over flat buffers (PyTorch's ``clip_grad_*_`` names).

Each takes the gradients as a :class:`~fastopt.optim.flat.FlatParameters`, an
optimizer, or an iterable of float32 arrays, and clips them in place.  The
norm is accumulated in double in one read pass; the scaling is a second pass
only when clipping actually happens.  For clipping fused into the update
itself, use the Keras optimizers' ``global_clipnorm`` or an optimizer's
``step(grad_scale=...)``.
"""
import math

import numpy as np

from fastopt._kernels import sum_squares
from fastopt._validate import check_bool, check_number
from fastopt.optim._base import Optimizer
from fastopt.optim.flat import FlatParameters


def _grads(grads):
    if isinstance(grads, FlatParameters):
        return [grads.grad]
    if isinstance(grads, Optimizer):
        return grads.grad_buffers()
    if isinstance(grads, np.ndarray):
        grads = [grads]
    out = list(grads)
    for i, g in enumerate(out):
        if not isinstance(g, np.ndarray) or g.dtype != np.float32:
            raise TypeError(f"grads[{i}] must be a float32 numpy.ndarray")
        if not g.flags.writeable:
            raise ValueError(f"grads[{i}] is read-only; clipping writes in place")
    return out


def global_grad_norm(grads):
    """The L2 norm of all gradients together (a FlatParameters, an
    optimizer's gradients, or float32 arrays), accumulated in double."""
    return math.sqrt(sum(sum_squares(g) for g in _grads(grads)))


def clip_grad_norm_(grads, max_norm, error_if_nonfinite=True):
    """Scale all gradients together so their global L2 norm is at most
    ``max_norm``; returns the norm before clipping.

    As ``torch.nn.utils.clip_grad_norm_`` (factor ``max_norm / (norm + 1e-6)``
    when the norm exceeds ``max_norm``), except that a non-finite norm raises
    FloatingPointError by default, with the gradients untouched, instead of
    spreading NaN into every parameter.
    """
    check_number(max_norm, "max_norm", minimum=0, min_open=True)
    check_bool(error_if_nonfinite, "error_if_nonfinite")
    arrays = _grads(grads)
    norm = global_grad_norm(arrays)
    if not math.isfinite(norm):
        if error_if_nonfinite:
            raise FloatingPointError(f"the global gradient norm is {norm}; the gradients "
                                     f"hold nan or inf (left unchanged)")
        return norm
    coef = max_norm / (norm + 1e-6)
    if coef < 1:
        for g in arrays:
            g *= np.float32(coef)
    return norm


def clip_grad_value_(grads, clip_value):
    """Clip every gradient element to ``[-clip_value, clip_value]`` in place
    (``torch.nn.utils.clip_grad_value_``)."""
    check_number(clip_value, "clip_value", minimum=0)
    for g in _grads(grads):
        np.clip(g, -clip_value, clip_value, out=g)
