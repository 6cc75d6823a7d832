"""fastopt.torch's optimizers: torch.optim's classes with fastopt's step.

Each class subclasses the torch.optim class of the same name, so its
arguments, defaults, checks, param_groups and state_dict are torch's own;
only ``step`` and ``zero_grad`` differ (see FastoptOptimizer).  Each rule's
kernel arguments are read from the group in one place, ``_kwargs``.
"""

import torch

import fastopt
from fastopt.torch._engine import FastoptOptimizer

_DOC = """{torch_name} with fastopt's fused CPU kernel (``fastopt.{kernel}``).

Same arguments, defaults, parameter groups, ``state_dict`` layout and
update rule as ``torch.optim.{torch_name}`` (an instance is one), for CPU
float32 dense parameters; the update runs in place on the tensors' memory,
one kernel call per run of parameters adjacent in memory (the whole model
after :func:`fastopt.torch.flatten_`).  ``foreach`` and ``fused`` must stay
None or False and ``{unsupported}`` False: the step is always fastopt's one
fused pass, outside autograd.  A parameter whose ``.grad`` is None is
skipped.  ``zero_grad()`` keeps flatten_ed gradient views (zeroed in
place); see :func:`fastopt.torch.flatten_`.
"""


def _doc(cls, kernel, unsupported):
    cls.__doc__ = _DOC.format(torch_name=cls.__name__, kernel=kernel, unsupported=unsupported)
    return cls


class SGD(FastoptOptimizer, torch.optim.SGD):
    _kernel = staticmethod(fastopt.sgd_)
    _hyper = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize",
              "foreach", "fused", "differentiable")
    _uses_step = False

    @staticmethod
    def _kwargs(hp):
        lr, momentum, dampening, weight_decay, nesterov, maximize = hp[:6]
        return {"lr": lr, "momentum": momentum, "dampening": dampening,
                "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize}

    @staticmethod
    def _state_specs(group):
        return (("momentum_buffer", "momentum_buf", 0.0),) if group["momentum"] != 0 else ()


class Adagrad(FastoptOptimizer, torch.optim.Adagrad):
    _kernel = staticmethod(fastopt.adagrad_)
    _hyper = ("lr", "lr_decay", "weight_decay", "eps", "maximize", "initial_accumulator_value",
              "foreach", "fused", "differentiable")

    @staticmethod
    def _kwargs(hp):
        lr, lr_decay, weight_decay, eps, maximize = hp[:5]
        return {"lr": lr, "lr_decay": lr_decay, "weight_decay": weight_decay, "eps": eps,
                "maximize": maximize}

    @staticmethod
    def _state_specs(group):
        return (("sum", "state_sum", float(group["initial_accumulator_value"])),)


class RMSprop(FastoptOptimizer, torch.optim.RMSprop):
    _kernel = staticmethod(fastopt.rmsprop_)
    _hyper = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize",
              "foreach", "capturable", "differentiable")
    _step_kw = False

    @staticmethod
    def _kwargs(hp):
        lr, alpha, eps, weight_decay, momentum, centered, maximize = hp[:7]
        return {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
                "momentum": momentum, "centered": centered, "maximize": maximize}

    @staticmethod
    def _state_specs(group):
        specs = (("square_avg", "square_avg", 0.0),)
        if group["momentum"] > 0:
            specs += (("momentum_buffer", "momentum_buf", 0.0),)
        if group["centered"]:
            specs += (("grad_avg", "grad_avg", 0.0),)
        return specs


class Adam(FastoptOptimizer, torch.optim.Adam):
    _kernel = staticmethod(fastopt.adam_)
    _hyper = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize",
              "decoupled_weight_decay", "foreach", "fused", "capturable", "differentiable")

    @staticmethod
    def _kwargs(hp):
        lr, (beta1, beta2), eps, weight_decay, amsgrad, maximize, decoupled = hp[:7]
        return {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps,
                "weight_decay": weight_decay, "amsgrad": amsgrad, "maximize": maximize,
                "decoupled_weight_decay": decoupled}

    @staticmethod
    def _state_specs(group):
        specs = (("exp_avg", "exp_avg", 0.0), ("exp_avg_sq", "exp_avg_sq", 0.0))
        if group["amsgrad"]:
            specs += (("max_exp_avg_sq", "max_exp_avg_sq", 0.0),)
        return specs


class AdamW(Adam, torch.optim.AdamW):
    pass


_doc(SGD, "sgd_", "differentiable")
_doc(Adagrad, "adagrad_", "differentiable")
_doc(RMSprop, "rmsprop_", "capturable and differentiable")
_doc(Adam, "adam_", "capturable and differentiable")
_doc(AdamW, "adam_ with decoupled_weight_decay=True", "capturable and differentiable")
