"""Optimizer classes with PyTorch's names, defaults and update rules.

Each class is ``torch.optim.X``'s rule over fastopt's flat spans: the
arguments, defaults, parameter groups, ``state_dict`` keys (``exp_avg``,
``momentum_buffer``, ...) and the ``param_groups[k]["lr"]`` idiom for
changing hyperparameters between steps are PyTorch's.  ``params`` is a
:class:`~fastopt.optim.flat.FlatParameters`, an iterable of ``(param, grad)``
float32 array pairs, or a list of parameter-group dicts whose ``"params"``
are either of those.
"""
import fastopt._kernels as K
from fastopt.optim._base import Optimizer


def _betas(group):
    betas = group["betas"]
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise TypeError(f"betas must be a pair of numbers, got {betas!r}") from None
    return b1, b2


class SGD(Optimizer):
    """``torch.optim.SGD``: momentum, dampening, Nesterov, L2 weight decay.

    With momentum the first step sets the buffer to the gradient; later
    steps ``buf = momentum * buf + (1 - dampening) * g``;
    ``p -= lr * (g + momentum * buf if nesterov else buf)``.
    See :func:`fastopt.sgd_`.

    fastopt's own options (see :mod:`fastopt.optim._lowp`): gradients may be
    float16 or bfloat16 arrays; ``state_dtype="bfloat16"`` keeps the
    momentum buffer in bfloat16, rounded to nearest even or, with
    ``state_rounding="stochastic"`` and ``seed``, stochastically.
    """

    _lowp_states = ("momentum_buffer",)
    _grad_dtypes = ("float32", "float16", "bfloat16")
    _state_dtypes = ("float32", "bfloat16")

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False, **low_precision):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize), **low_precision)

    def _state_names(self, group):
        return ["momentum_buffer"] if group["momentum"] != 0 else []

    def _update(self, param, grad, state, group, step, grad_scale):
        K.sgd_(param, grad, state.get("momentum_buffer"), lr=group["lr"],
               momentum=group["momentum"], dampening=group["dampening"],
               nesterov=group["nesterov"], weight_decay=group["weight_decay"],
               maximize=group["maximize"], step=step, grad_scale=grad_scale,
               **self.state_format.kernel_args(state))


class Adagrad(Optimizer):
    """``torch.optim.Adagrad``: ``sum += g*g``;
    ``p -= lr / (1 + (t-1) lr_decay) * g / (sqrt(sum) + eps)``, the sum
    starting at ``initial_accumulator_value``.  See :func:`fastopt.adagrad_`;
    the low-precision options (the sum in bfloat16) are :class:`SGD`'s."""

    _lowp_states = ("sum",)
    _grad_dtypes = ("float32", "float16", "bfloat16")
    _state_dtypes = ("float32", "bfloat16")

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, *, maximize=False,
                 **low_precision):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize), **low_precision)

    _accumulator = "sum"

    def _state_names(self, group):
        return ["sum"]

    def _update(self, param, grad, state, group, step, grad_scale):
        K.adagrad_(param, grad, state["sum"], step=step, lr=group["lr"],
                   lr_decay=group["lr_decay"], weight_decay=group["weight_decay"],
                   eps=group["eps"], maximize=group["maximize"], grad_scale=grad_scale,
                   **self.state_format.kernel_args(state))


class RMSprop(Optimizer):
    """``torch.optim.RMSprop``: ``v = alpha v + (1-alpha) g^2``, centred
    variance on request, eps outside the root, optional momentum buffer.
    See :func:`fastopt.rmsprop_`; the low-precision options (all its state
    in bfloat16) are :class:`SGD`'s."""

    _lowp_states = ("square_avg", "momentum_buffer", "grad_avg")
    _grad_dtypes = ("float32", "float16", "bfloat16")
    _state_dtypes = ("float32", "bfloat16")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
                 momentum=0.0, centered=False, maximize=False, **low_precision):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered,
                                      maximize=maximize), **low_precision)

    def _state_names(self, group):
        names = ["square_avg"]
        if group["momentum"] != 0:
            names.append("momentum_buffer")
        if group["centered"]:
            names.append("grad_avg")
        return names

    def _update(self, param, grad, state, group, step, grad_scale):
        K.rmsprop_(param, grad, state["square_avg"], lr=group["lr"], alpha=group["alpha"],
                   eps=group["eps"], weight_decay=group["weight_decay"],
                   momentum=group["momentum"], momentum_buf=state.get("momentum_buffer"),
                   centered=group["centered"], grad_avg=state.get("grad_avg"),
                   maximize=group["maximize"], grad_scale=grad_scale, step=step,
                   **self.state_format.kernel_args(state))


class Adam(Optimizer):
    """``torch.optim.Adam``: L2 weight decay (or decoupled, as AdamW, with
    ``decoupled_weight_decay=True``), AMSGrad over the raw second moment, eps
    after bias correction.  See :func:`fastopt.adam_`.

    fastopt's own options (see :mod:`fastopt.optim._lowp`): gradients may be
    float16 or bfloat16 arrays; ``state_dtype="bfloat16"`` or ``"int8"``
    keeps both moments in bfloat16 or in 8-bit blocks (``state_dict`` holds
    them so, with ``state_scales``); ``state_rounding="stochastic"`` and
    ``seed`` round bfloat16 state stochastically."""

    _lowp_states = ("exp_avg", "exp_avg_sq")
    _grad_dtypes = ("float32", "float16", "bfloat16")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False,
                 state_dtype="float32", state_rounding="nearest", seed=0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay),
                         state_dtype=state_dtype, state_rounding=state_rounding, seed=seed)

    def _state_names(self, group):
        names = ["exp_avg", "exp_avg_sq"]
        if group["amsgrad"]:
            names.append("max_exp_avg_sq")
        return names

    def _update(self, param, grad, state, group, step, grad_scale):
        beta1, beta2 = _betas(group)
        K.adam_(param, grad, state["exp_avg"], state["exp_avg_sq"], step=step, lr=group["lr"],
                beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                decoupled_weight_decay=group["decoupled_weight_decay"],
                amsgrad=group["amsgrad"], max_exp_avg_sq=state.get("max_exp_avg_sq"),
                maximize=group["maximize"], grad_scale=grad_scale,
                **self.state_format.kernel_args(state))


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay
    ``p *= 1 - lr * weight_decay`` and ``weight_decay=1e-2`` by default
    (and Adam's low-precision options)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, **low_precision):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True,
                         **low_precision)


class NAdam(Optimizer):
    """``torch.optim.NAdam``: Adam with Nesterov momentum and the momentum
    schedule ``mu_t = beta1 (1 - 0.5 * 0.96^(t * momentum_decay))``; L2
    weight decay, or decoupled with ``decoupled_weight_decay=True``.
    PyTorch's ``mu_product`` is recomputed from the step count, so it is not
    in ``state_dict``.  See :func:`fastopt.nadam_`."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _state_names(self, group):
        return ["exp_avg", "exp_avg_sq"]

    def _update(self, param, grad, state, group, step, grad_scale):
        beta1, beta2 = _betas(group)
        K.nadam_(param, grad, state["exp_avg"], state["exp_avg_sq"], step=step, lr=group["lr"],
                 beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                 momentum_decay=group["momentum_decay"],
                 decoupled_weight_decay=group["decoupled_weight_decay"],
                 maximize=group["maximize"], grad_scale=grad_scale)


class Adamax(Optimizer):
    """``torch.optim.Adamax``: ``exp_inf = max(beta2 exp_inf, |g| + eps)``;
    ``p -= lr / (1 - beta1^t) * exp_avg / exp_inf``.  See :func:`fastopt.adamax_`."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def _state_names(self, group):
        return ["exp_avg", "exp_inf"]

    def _update(self, param, grad, state, group, step, grad_scale):
        beta1, beta2 = _betas(group)
        K.adamax_(param, grad, state["exp_avg"], state["exp_inf"], step=step, lr=group["lr"],
                  beta1=beta1, beta2=beta2, eps=group["eps"],
                  weight_decay=group["weight_decay"], maximize=group["maximize"],
                  grad_scale=grad_scale)


class Adadelta(Optimizer):
    """``torch.optim.Adadelta``: ``delta = sqrt(acc_delta + eps) /
    sqrt(square_avg + eps) * g``, ``p -= lr * delta``.  See :func:`fastopt.adadelta_`."""

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, *, maximize=False):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def _state_names(self, group):
        return ["square_avg", "acc_delta"]

    def _update(self, param, grad, state, group, step, grad_scale):
        K.adadelta_(param, grad, state["square_avg"], state["acc_delta"], lr=group["lr"],
                    rho=group["rho"], eps=group["eps"], weight_decay=group["weight_decay"],
                    maximize=group["maximize"], grad_scale=grad_scale)


class Lion(Optimizer):
    """Lion in PyTorch's style (PyTorch itself has none; names and defaults
    of lion-pytorch): ``p *= 1 - lr * weight_decay``;
    ``p -= lr * sign(beta1 m + (1 - beta1) g)``; ``m = beta2 m + (1 - beta2) g``.
    See :func:`fastopt.lion_`."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay,
                                      maximize=maximize))

    def _state_names(self, group):
        return ["exp_avg"]

    def _update(self, param, grad, state, group, step, grad_scale):
        beta1, beta2 = _betas(group)
        K.lion_(param, grad, state["exp_avg"], lr=group["lr"], beta1=beta1, beta2=beta2,
                weight_decay=group["weight_decay"], maximize=group["maximize"],
                grad_scale=grad_scale)
