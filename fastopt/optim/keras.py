"""Optimizer classes with Keras 3's names, defaults and update rules.

``SGD``, ``Adam``, ``AdamW``, ``RMSprop`` and ``Adagrad`` take Keras 3's
arguments (``learning_rate``, ``beta_1``, ``epsilon``, ``rho``,
``initial_accumulator_value``, ``weight_decay``, ``clipnorm``,
``clipvalue``, ``global_clipnorm``) and also the Keras 2 spellings that older
material uses: ``lr=`` for ``learning_rate``, and ``decay=``, with Keras 2's
rule ``lr / (1 + decay * iterations)``.  ``learning_rate`` may be a number
or a schedule (a callable of the 0-based iteration count, such as those in
:mod:`fastopt.schedules`).

The rules are Keras': Adam's epsilon before bias correction, epsilon inside
the square root for RMSprop and Adagrad, momentum buffers that carry the
learning rate, and weight decay always decoupled, ``p -= p * wd * lr``,
applied after clipping and before the update.  They run on the same kernels
as the PyTorch classes (``convention="keras"``).

Unlike Keras, these optimizers update arrays they were given once:
``opt.build(params)`` with a :class:`~fastopt.optim.flat.FlatParameters` or
``(param, grad)`` pairs, then ``opt.step()`` after each backward pass.
``apply_gradients(zip(grads, variables))`` works too.  Clipping writes the
clipped gradient back into the gradient arrays.
"""
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
    """Base of the Keras-compatible classes (see the module docstring).

    Built without parameters (``Optimizer.__init__`` with ``DEFERRED``): they
    are attached by :meth:`build` as the one parameter group.  ``step``'s
    hooks resolve the learning rate (schedule, legacy decay) and clip.
    """

    family = "keras"

    def __init__(self, learning_rate, hyper, *, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, lr=None, decay=None, name=None):
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
                                        weight_decay=weight_decay, **hyper))

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


class SGD(KerasOptimizer):
    """``keras.optimizers.SGD``: velocity ``m = momentum * m - lr * g``;
    ``p += m``, or ``p += momentum * m - lr * g`` with Nesterov."""

    _default_learning_rate = 0.01

    def __init__(self, learning_rate=None, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, *, lr=None,
                 decay=None):
        super().__init__(learning_rate, dict(momentum=momentum, nesterov=nesterov),
                         weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, lr=lr, decay=decay, name=name)

    def _state_names(self, group):
        return ["momentum"] if group["momentum"] != 0 else []

    def _update(self, param, grad, state, group, step, grad_scale):
        K.sgd_(param, grad, state.get("momentum"), lr=group["lr"], momentum=group["momentum"],
               nesterov=group["nesterov"], weight_decay=group["weight_decay"],
               decoupled_weight_decay=True, grad_scale=grad_scale, convention="keras")


class Adam(KerasOptimizer):
    """``keras.optimizers.Adam``: ``alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)``;
    ``p -= alpha * m / (sqrt(v) + epsilon)`` (epsilon before bias correction);
    AMSGrad over the raw ``v``."""

    _default_learning_rate = 0.001
    _default_weight_decay = None

    def __init__(self, learning_rate=None, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, *, lr=None, decay=None):
        if weight_decay is None:
            weight_decay = self._default_weight_decay
        super().__init__(learning_rate, dict(beta_1=beta_1, beta_2=beta_2,
                                             epsilon=1e-7 if epsilon is None else epsilon,
                                             amsgrad=amsgrad),
                         weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, lr=lr, decay=decay, name=name)

    def _state_names(self, group):
        return ["momentum", "velocity"] + (["velocity_hat"] if group["amsgrad"] else [])

    def _update(self, param, grad, state, group, step, grad_scale):
        K.adam_(param, grad, state["momentum"], state["velocity"], step=step, lr=group["lr"],
                beta1=group["beta_1"], beta2=group["beta_2"], eps=group["epsilon"],
                weight_decay=group["weight_decay"], decoupled_weight_decay=True,
                amsgrad=group["amsgrad"], max_exp_avg_sq=state.get("velocity_hat"),
                grad_scale=grad_scale, convention="keras")


class AdamW(Adam):
    """``keras.optimizers.AdamW``: Adam with ``weight_decay=0.004``."""

    _default_weight_decay = 0.004


class RMSprop(KerasOptimizer):
    """``keras.optimizers.RMSprop``: ``v = rho v + (1 - rho) g^2``;
    ``inc = lr g / sqrt(v [- a^2] + epsilon)``; momentum ``m = momentum m + inc``."""

    _default_learning_rate = 0.001

    def __init__(self, learning_rate=None, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, *, lr=None, decay=None):
        super().__init__(learning_rate, dict(rho=rho, momentum=momentum,
                                             epsilon=1e-7 if epsilon is None else epsilon,
                                             centered=centered),
                         weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, lr=lr, decay=decay, name=name)

    def _state_names(self, group):
        names = ["velocity"]
        if group["momentum"] != 0:
            names.append("momentum")
        if group["centered"]:
            names.append("average_gradient")
        return names

    def _update(self, param, grad, state, group, step, grad_scale):
        K.rmsprop_(param, grad, state["velocity"], lr=group["lr"], alpha=group["rho"],
                   eps=group["epsilon"], weight_decay=group["weight_decay"],
                   momentum=group["momentum"], momentum_buf=state.get("momentum"),
                   centered=group["centered"], grad_avg=state.get("average_gradient"),
                   decoupled_weight_decay=True, grad_scale=grad_scale, convention="keras")


class Adagrad(KerasOptimizer):
    """``keras.optimizers.Adagrad``: ``a += g^2``; ``p -= lr g / sqrt(a + epsilon)``,
    the accumulator starting at ``initial_accumulator_value``."""

    _default_learning_rate = 0.001

    def __init__(self, learning_rate=None, initial_accumulator_value=0.1, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name=None, *, lr=None, decay=None):
        super().__init__(learning_rate, dict(initial_accumulator_value=initial_accumulator_value,
                                             epsilon=1e-7 if epsilon is None else epsilon),
                         weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, lr=lr, decay=decay, name=name)

    _accumulator = "accumulator"

    def _state_names(self, group):
        return ["accumulator"]

    def _update(self, param, grad, state, group, step, grad_scale):
        K.adagrad_(param, grad, state["accumulator"], step=step, lr=group["lr"],
                   eps=group["epsilon"], weight_decay=group["weight_decay"],
                   decoupled_weight_decay=True, grad_scale=grad_scale, convention="keras")


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}


def names():
    """The names :func:`get` accepts, sorted: 'adagrad', 'adam', ..."""
    return sorted(_BY_NAME)


def get_class(name):
    """The Keras-compatible optimizer class called ``name`` (any case)."""
    try:
        return _BY_NAME[name.lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; expected one of "
                         f"{names()}") from None


def get(identifier, **kwargs):
    """A Keras-compatible optimizer from its name ('sgd', 'adam', 'adamw',
    'rmsprop', 'adagrad', any case) with Keras' defaults, or an optimizer
    instance returned as is."""
    if isinstance(identifier, Optimizer):
        if kwargs:
            raise TypeError("keyword arguments are only used with an optimizer name")
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(f"optimizer must be a name or an optimizer instance, "
                        f"got {type(identifier).__name__}")
    return get_class(identifier)(**kwargs)
