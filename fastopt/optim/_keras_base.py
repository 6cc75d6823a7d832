"""The base of the Keras-compatible optimizer classes (:mod:`fastopt.optim.keras`):
Keras' learning rate (schedule, legacy decay), clipping, ``build`` and
``apply_gradients`` over :class:`~fastopt.optim._base.Optimizer`."""
import math

import numpy as np

import fastopt._kernels as K
from fastopt._validate import check_number, check_real
from fastopt.optim.flat import aligned_zeros
from fastopt.optim._base import DEFERRED, Optimizer
from fastopt.optim.clip import clip_grad_value_, global_grad_norm


def _positive_or_none(value, name):
    return None if value is None else check_number(value, name, minimum=0, min_open=True)


class KerasOptimizer(Optimizer):
    """Base of the Keras-compatible classes (see :mod:`fastopt.optim.keras`).

    Built without parameters (``Optimizer.__init__`` with ``DEFERRED``): they
    are attached by :meth:`build` as the one parameter group.  ``step``'s
    hooks resolve the learning rate (schedule, legacy decay) and clip.
    """

    family = "keras"

    def __init__(self, learning_rate, hyper, *, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, lr=None, decay=None, name=None,
                 **low_precision):
        if lr is not None:
            if learning_rate is not None:
                raise TypeError("pass learning_rate or its legacy name lr, not both")
            learning_rate = lr
        if learning_rate is None:
            learning_rate = self._default_learning_rate
        if weight_decay is None:
            weight_decay = 0.0
        self.clipnorm = _positive_or_none(clipnorm, "clipnorm")
        self.clipvalue = _positive_or_none(clipvalue, "clipvalue")
        self.global_clipnorm = _positive_or_none(global_clipnorm, "global_clipnorm")
        if sum(c is not None for c in (self.clipnorm, self.clipvalue, self.global_clipnorm)) > 1:
            raise ValueError("set at most one of clipnorm, clipvalue and global_clipnorm")
        self.name = name or type(self).__name__.lower()
        super().__init__(DEFERRED, dict(lr=learning_rate, decay=0.0 if decay is None else decay,
                                        weight_decay=weight_decay, **hyper), **low_precision)

    # -- learning rate -------------------------------------------------------
    @property
    def _group(self):
        """The one parameter group once built, the defaults before."""
        return self.param_groups[0] if self.param_groups else self.defaults

    @property
    def iterations(self):
        """Updates applied so far (Keras' ``optimizer.iterations``)."""
        return self._spans[0][0].step if self._spans else 0

    @property
    def learning_rate(self):
        """The current learning rate, after schedule and legacy decay."""
        return self._current_lr(self._group)

    @learning_rate.setter
    def learning_rate(self, value):
        group = self._group
        old = group["lr"]
        group["lr"] = value
        try:
            self._check_group(group)
        except Exception:
            group["lr"] = old
            raise

    def _current_lr(self, group):
        lr = group["lr"]
        if callable(lr):
            lr = lr(self.iterations)
        lr = check_real(lr, "learning_rate", "a number or a schedule returning one")
        decay = check_number(group["decay"], "decay", minimum=0)
        return lr / (1.0 + decay * self.iterations) if decay else lr

    def _resolve(self, group):
        return dict(group, lr=self._current_lr(group))

    # -- building and stepping ----------------------------------------------
    def build(self, params):
        """Attach the parameters this optimizer updates: a FlatParameters or
        ``(param, grad)`` pairs.  A model's ``compile`` calls this."""
        if self.param_groups:
            raise RuntimeError(f"{type(self).__name__} is already built")
        self.add_param_group({"params": params})

    @property
    def built(self):
        return bool(self.param_groups)

    def _scale(self, grad_scale):
        """Keras' clipping, before the update.  ``clipvalue``: every gradient
        element clipped to ``[-clipvalue, clipvalue]`` in place.  ``clipnorm``:
        each parameter's gradient whose L2 norm exceeds ``clipnorm`` scaled in
        place by ``clipnorm / norm``.  ``global_clipnorm``: nothing written;
        returns ``grad_scale * global_clipnorm / max(norm, global_clipnorm)``
        for the kernels to apply.  A non-finite norm raises FloatingPointError
        before any parameter is written."""
        if self.clipvalue is not None:
            clip_grad_value_(self, self.clipvalue)
        elif self.clipnorm is not None:
            for span in self._spans[0]:
                for i, view in span.views(span.grad).items():
                    norm = math.sqrt(K.sum_squares(view))
                    if not math.isfinite(norm):
                        raise FloatingPointError(
                            f"the gradient of parameter {i} has a non-finite norm ({norm}); "
                            f"step skipped, parameters unchanged")
                    if norm > self.clipnorm:
                        view *= np.float32(self.clipnorm / norm)
        elif self.global_clipnorm is not None:
            norm = global_grad_norm(self)
            if not math.isfinite(norm):
                raise FloatingPointError(f"the global gradient norm is {norm}; step skipped, "
                                         f"parameters unchanged")
            return grad_scale * (self.global_clipnorm / max(norm, self.global_clipnorm))
        return grad_scale

    def step(self, skip_nonfinite=False):
        """Apply one update from the gradients now in the grad arrays; with
        ``skip_nonfinite=True``, skip it (returning True) if any gradient
        holds nan or inf.  (:meth:`Optimizer.step` without ``grad_scale``:
        Keras clips through the constructor's arguments.)"""
        return super().step(skip_nonfinite=skip_nonfinite)

    def apply_gradients(self, grads_and_vars):
        """Keras' ``apply_gradients``: one update from ``(grad, variable)``
        pairs.  The first call builds the optimizer over these variables;
        later calls must pass the same variables in the same order."""
        pairs = list(grads_and_vars)
        if not self.param_groups:
            staging = [(v, aligned_zeros(np.size(v)).reshape(np.shape(v))) for _, v in pairs]
            self.build(staging)
        params = self.param_groups[0]["params"]
        if len(pairs) != len(params) or any(v is not p for (_, v), (p, _) in zip(pairs, params)):
            raise ValueError("apply_gradients got different variables than it was built with")
        for (g, _), (p, staged) in zip(pairs, params):
            g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"a gradient has shape {g.shape}, its variable {p.shape}")
            staged[...] = g
        self.step()

    def get_config(self):
        """The constructor's arguments (``lr`` is ``learning_rate``)."""
        config = {k: v for k, v in self._group.items() if k != "params"}
        config.update(name=self.name, clipnorm=self.clipnorm, clipvalue=self.clipvalue,
                      global_clipnorm=self.global_clipnorm)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(learning_rate=config.pop("lr"), **config)
