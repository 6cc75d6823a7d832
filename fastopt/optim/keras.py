"""Optimizer classes with Keras 3's names, defaults and update rules.

``SGD``, ``Adam``, ``AdamW``, ``RMSprop``, ``Adagrad``, ``Nadam``,
``Adamax``, ``Adadelta`` and ``Lion`` take Keras 3's
arguments (``learning_rate``, ``beta_1``, ``epsilon``, ``rho``,
``initial_accumulator_value``, ``weight_decay``, ``clipnorm``,
``clipvalue``, ``global_clipnorm``) and also the Keras 2 spellings that older
material uses: ``lr=`` for ``learning_rate``, and ``decay=``, with Keras 2's
rule ``lr / (1 + decay * iterations)``.  ``learning_rate`` may be a number
or a schedule (a callable of the 0-based iteration count, such as those in
:mod:`fastopt.schedules`), or, as Keras allows, a callable of no argument.

The rules are Keras': Adam's epsilon before bias correction, epsilon inside
the square root for RMSprop and Adagrad, momentum buffers that carry the
learning rate, and weight decay always decoupled, ``p -= p * wd * lr``,
applied after clipping and before the update.  They run on the same kernels
as the PyTorch classes (``convention="keras"``).

Keras 3's other arguments are taken too (keyword only): ``use_ema``,
``ema_momentum`` and ``ema_overwrite_frequency`` (a moving average of the
weights, as Keras'; see ``KerasOptimizer._ema_step``), ``name``, and
``loss_scale_factor`` / ``gradient_accumulation_steps`` when None.
``exclude_from_weight_decay(var_list=..., var_names=...)`` works as Keras',
and ``get_config`` / ``from_config`` round-trip (schedules included, in
Keras' serialised form).

Unlike Keras, these optimizers update arrays they were given once:
``opt.build(params)`` with a :class:`~fastopt.optim.flat.FlatParameters` or
``(param, grad)`` pairs, then ``opt.step()`` after each backward pass.
``apply_gradients(zip(grads, variables))`` works too.  Clipping writes the
clipped gradient back into the gradient arrays.
"""
import inspect

import fastopt._kernels as K
from fastopt._validate import check_number
from fastopt.optim._base import Optimizer
from fastopt.optim._keras_base import KerasOptimizer

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "Adamax", "AdamW", "KerasOptimizer", "Lion",
           "Nadam", "RMSprop", "get", "get_class", "names"]


def _keras_arguments(cls):
    """Show the arguments every Keras optimizer shares (``clipnorm`` ...
    ``name``, ``lr``, ``decay``: :class:`KerasOptimizer`'s own, which
    ``**options`` passes on) in ``cls``'s signature, keyword only."""
    if hasattr(cls.__init__, "__signature__"):  # an inherited constructor, already done
        return cls
    own = inspect.signature(cls.__init__).parameters.values()
    shared = [p for name, p in inspect.signature(KerasOptimizer.__init__).parameters.items()
              if p.kind is p.KEYWORD_ONLY and name != "weight_decay"]
    params = [p for p in own if p.kind is not p.VAR_KEYWORD]
    params += shared  # keyword only: ``**options`` takes them
    cls.__init__.__signature__ = inspect.Signature(params)
    return cls


@_keras_arguments
class SGD(KerasOptimizer):
    """``keras.optimizers.SGD``: velocity ``m = momentum * m - lr * g``;
    ``p += m``, or ``p += momentum * m - lr * g`` with Nesterov.  As in Keras,
    ``momentum`` is in [0, 1], and ``nesterov=True`` with ``momentum=0`` is
    plain SGD.  fastopt's low-precision options (the velocity in bfloat16:
    ``state_dtype``, ``state_rounding``, ``seed``; float16 / bfloat16
    gradients) are those of :class:`fastopt.optim.SGD`."""

    _default_learning_rate = 0.01
    _lowp_states = ("momentum",)
    _grad_dtypes = ("float32", "float16", "bfloat16")
    _state_dtypes = ("float32", "bfloat16")

    def __init__(self, learning_rate=None, momentum=0.0, nesterov=False, weight_decay=None,
                 **options):
        if check_number(momentum, "momentum", allow_inf=True) < 0 or momentum > 1:
            raise ValueError(f"`momentum` must be a float between [0, 1]. Received: "
                             f"momentum={momentum} (momentum must be in [0, 1])")
        super().__init__(learning_rate, dict(momentum=momentum, nesterov=nesterov),
                         weight_decay=weight_decay, **options)

    def _rule_state_names(self, group):
        return ["momentum"] if group["momentum"] != 0 else []

    def _update(self, param, grad, state, group, step, grad_scale):
        K.sgd_(param, grad, state.get("momentum"), lr=group["lr"], momentum=group["momentum"],
               nesterov=group["nesterov"] and group["momentum"] != 0, weight_decay=group["weight_decay"],
               decoupled_weight_decay=True, grad_scale=grad_scale, convention="keras",
               step=step, **self.state_format.kernel_args(state))


@_keras_arguments
class Adam(KerasOptimizer):
    """``keras.optimizers.Adam``: ``alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)``;
    ``p -= alpha * m / (sqrt(v) + epsilon)`` (epsilon before bias correction);
    AMSGrad over the raw ``v``.  fastopt's low-precision options
    (``state_dtype``, ``state_rounding``, ``seed``; float16 / bfloat16
    gradients) are those of :class:`fastopt.optim.Adam`."""

    _default_learning_rate = 0.001
    _default_weight_decay = None
    _lowp_states = ("momentum", "velocity")
    _grad_dtypes = ("float32", "float16", "bfloat16")

    def __init__(self, learning_rate=None, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, weight_decay=None, **options):
        if weight_decay is None:
            weight_decay = self._default_weight_decay
        super().__init__(learning_rate, dict(beta_1=beta_1, beta_2=beta_2,
                                             epsilon=1e-7 if epsilon is None else epsilon,
                                             amsgrad=amsgrad),
                         weight_decay=weight_decay, **options)

    def _rule_state_names(self, group):
        return ["momentum", "velocity"] + (["velocity_hat"] if group["amsgrad"] else [])

    def _update(self, param, grad, state, group, step, grad_scale):
        K.adam_(param, grad, state["momentum"], state["velocity"], step=step, lr=group["lr"],
                beta1=group["beta_1"], beta2=group["beta_2"], eps=group["epsilon"],
                weight_decay=group["weight_decay"], decoupled_weight_decay=True,
                amsgrad=group["amsgrad"], max_exp_avg_sq=state.get("velocity_hat"),
                grad_scale=grad_scale, convention="keras", **self.state_format.kernel_args(state))


@_keras_arguments
class AdamW(Adam):
    """``keras.optimizers.AdamW``: Adam with ``weight_decay=0.004``; as in
    Keras, ``weight_decay=None`` is refused (AdamW is Adam with decay)."""

    _default_weight_decay = 0.004

    def __init__(self, learning_rate=None, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, **options):
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: "
                             "weight_decay=None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, **options)


@_keras_arguments
class RMSprop(KerasOptimizer):
    """``keras.optimizers.RMSprop``: ``v = rho v + (1 - rho) g^2``;
    ``inc = lr g / sqrt(v [- a^2] + epsilon)``; momentum ``m = momentum m + inc``.
    The low-precision options (all its state in bfloat16) are :class:`SGD`'s."""

    _default_learning_rate = 0.001
    _lowp_states = ("velocity", "momentum", "average_gradient")
    _grad_dtypes = ("float32", "float16", "bfloat16")
    _state_dtypes = ("float32", "bfloat16")

    def __init__(self, learning_rate=None, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, weight_decay=None, **options):
        super().__init__(learning_rate, dict(rho=rho, momentum=momentum,
                                             epsilon=1e-7 if epsilon is None else epsilon,
                                             centered=centered),
                         weight_decay=weight_decay, **options)

    def _rule_state_names(self, group):
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
                   decoupled_weight_decay=True, grad_scale=grad_scale, convention="keras",
                   step=step, **self.state_format.kernel_args(state))


@_keras_arguments
class Adagrad(KerasOptimizer):
    """``keras.optimizers.Adagrad``: ``a += g^2``; ``p -= lr g / sqrt(a + epsilon)``,
    the accumulator starting at ``initial_accumulator_value``.  The
    low-precision options (the accumulator in bfloat16) are :class:`SGD`'s."""

    _default_learning_rate = 0.001
    _lowp_states = ("accumulator",)
    _grad_dtypes = ("float32", "float16", "bfloat16")
    _state_dtypes = ("float32", "bfloat16")

    def __init__(self, learning_rate=None, initial_accumulator_value=0.1, epsilon=1e-7,
                 weight_decay=None, **options):
        super().__init__(learning_rate, dict(initial_accumulator_value=initial_accumulator_value,
                                             epsilon=1e-7 if epsilon is None else epsilon),
                         weight_decay=weight_decay, **options)

    _accumulator = "accumulator"

    def _rule_state_names(self, group):
        return ["accumulator"]

    def _update(self, param, grad, state, group, step, grad_scale):
        K.adagrad_(param, grad, state["accumulator"], step=step, lr=group["lr"],
                   eps=group["epsilon"], weight_decay=group["weight_decay"],
                   decoupled_weight_decay=True, grad_scale=grad_scale, convention="keras",
                   **self.state_format.kernel_args(state))


class _BetasEpsilon(KerasOptimizer):
    """The constructor of Nadam and Adamax: ``beta_1``, ``beta_2``, ``epsilon``."""

    _default_learning_rate = 0.001

    def __init__(self, learning_rate=None, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, **options):
        super().__init__(learning_rate, dict(beta_1=beta_1, beta_2=beta_2,
                                             epsilon=1e-7 if epsilon is None else epsilon),
                         weight_decay=weight_decay, **options)


@_keras_arguments
class Nadam(_BetasEpsilon):
    """``keras.optimizers.Nadam``: Adam with Nesterov momentum and Keras'
    schedule ``u_t = beta_1 (1 - 0.5 * 0.96^t)``, ``u_product`` their product
    (recomputed from the step count); ``m_hat = u_{t+1} m / (1 - u_product_{t+1})
    + (1 - u_t) g / (1 - u_product_t)``; ``p -= lr m_hat / (sqrt(v / (1 -
    beta_2^t)) + epsilon)``."""

    def _rule_state_names(self, group):
        return ["momentum", "velocity"]

    def _update(self, param, grad, state, group, step, grad_scale):
        K.nadam_(param, grad, state["momentum"], state["velocity"], step=step, lr=group["lr"],
                 beta1=group["beta_1"], beta2=group["beta_2"], eps=group["epsilon"],
                 weight_decay=group["weight_decay"], decoupled_weight_decay=True,
                 grad_scale=grad_scale, convention="keras")


@_keras_arguments
class Adamax(_BetasEpsilon):
    """``keras.optimizers.Adamax``: ``u = max(beta_2 u, |g|)``;
    ``p -= lr m / ((1 - beta_1^t) (u + epsilon))`` (epsilon outside the max)."""

    def _rule_state_names(self, group):
        return ["m", "u"]

    def _update(self, param, grad, state, group, step, grad_scale):
        K.adamax_(param, grad, state["m"], state["u"], step=step, lr=group["lr"],
                  beta1=group["beta_1"], beta2=group["beta_2"], eps=group["epsilon"],
                  weight_decay=group["weight_decay"], decoupled_weight_decay=True,
                  grad_scale=grad_scale, convention="keras")


@_keras_arguments
class Adadelta(KerasOptimizer):
    """``keras.optimizers.Adadelta``: ``a = rho a + (1 - rho) g^2``;
    ``delta = sqrt(d + epsilon) / sqrt(a + epsilon) g``;
    ``d = rho d + (1 - rho) delta^2``; ``p -= lr delta``."""

    _default_learning_rate = 0.001

    def __init__(self, learning_rate=None, rho=0.95, epsilon=1e-7, weight_decay=None, **options):
        super().__init__(learning_rate, dict(rho=rho, epsilon=1e-7 if epsilon is None else epsilon),
                         weight_decay=weight_decay, **options)

    def _rule_state_names(self, group):
        return ["accumulated_grad", "accumulated_delta_var"]

    def _update(self, param, grad, state, group, step, grad_scale):
        K.adadelta_(param, grad, state["accumulated_grad"], state["accumulated_delta_var"],
                    lr=group["lr"], rho=group["rho"], eps=group["epsilon"],
                    weight_decay=group["weight_decay"], decoupled_weight_decay=True,
                    grad_scale=grad_scale, convention="keras")


@_keras_arguments
class Lion(KerasOptimizer):
    """``keras.optimizers.Lion``: ``p -= lr sign(beta_1 m + (1 - beta_1) g)``;
    ``m = beta_2 m + (1 - beta_2) g``; ``beta_1`` in (0, 1] as Keras
    requires (0 would make it SignSGD)."""

    _default_learning_rate = 0.001

    def __init__(self, learning_rate=None, beta_1=0.9, beta_2=0.99, weight_decay=None, **options):
        if not 0 < check_number(beta_1, "beta_1") <= 1:
            raise ValueError(f"Argument `beta_1` must be in the [0, 1] range. Otherwise, the "
                             f"optimizer degenerates to SignSGD. Received: beta_1={beta_1}.")
        super().__init__(learning_rate, dict(beta_1=beta_1, beta_2=beta_2),
                         weight_decay=weight_decay, **options)

    def _rule_state_names(self, group):
        return ["momentum"]

    def _update(self, param, grad, state, group, step, grad_scale):
        K.lion_(param, grad, state["momentum"], lr=group["lr"], beta1=group["beta_1"],
                beta2=group["beta_2"], weight_decay=group["weight_decay"],
                decoupled_weight_decay=True, grad_scale=grad_scale, convention="keras")


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad,
            "nadam": Nadam, "adamax": Adamax, "adadelta": Adadelta, "lion": Lion}


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
    """A Keras-compatible optimizer from its name (one of :func:`names`, any
    case) with Keras' defaults, or an optimizer
    instance returned as is."""
    if isinstance(identifier, Optimizer):
        if kwargs:
            raise TypeError("keyword arguments are only used with an optimizer name")
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(f"optimizer must be a name or an optimizer instance, "
                        f"got {type(identifier).__name__}")
    return get_class(identifier)(**kwargs)
