"""fastopt.torch's optimizers: torch.optim's classes with fastopt's step.

Each class subclasses the torch.optim class of the same name, so its
arguments, defaults, checks, param_groups and state_dict are torch's own;
only ``step`` and ``zero_grad`` differ (see FastoptOptimizer).  Each class
names the group keys its kernel reads (``_args``, the kernel's own argument
names; ``betas`` is split into ``beta1`` and ``beta2``) and the other keys
whose change re-checks the group (``_watch``).
"""

import numpy as np
import torch

import fastopt
from fastopt._validate import check_bool, check_number
from fastopt.torch._engine import FastoptOptimizer
from fastopt.torch._lowp import LowPrecision, with_options

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
    _args = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")
    _watch = ("foreach", "fused", "differentiable")
    _scalars = ()

    @staticmethod
    def _state_specs(group):
        return (("momentum_buffer", "momentum_buf", 0.0),) if group["momentum"] != 0 else ()


class Adagrad(FastoptOptimizer, torch.optim.Adagrad):
    _kernel = staticmethod(fastopt.adagrad_)
    _args = ("lr", "lr_decay", "weight_decay", "eps", "maximize")
    _watch = ("initial_accumulator_value", "foreach", "fused", "differentiable")

    @staticmethod
    def _state_specs(group):
        return (("sum", "state_sum", float(group["initial_accumulator_value"])),)


class RMSprop(FastoptOptimizer, torch.optim.RMSprop):
    _kernel = staticmethod(fastopt.rmsprop_)
    _args = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")
    _watch = ("foreach", "capturable", "differentiable")
    _step_kw = False

    @staticmethod
    def _state_specs(group):
        specs = (("square_avg", "square_avg", 0.0),)
        if group["momentum"] > 0:
            specs += (("momentum_buffer", "momentum_buf", 0.0),)
        if group["centered"]:
            specs += (("grad_avg", "grad_avg", 0.0),)
        return specs


class Adam(LowPrecision, FastoptOptimizer, torch.optim.Adam):
    _kernel = staticmethod(fastopt.adam_)
    _args = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize",
             "decoupled_weight_decay")
    _watch = ("foreach", "fused", "capturable", "differentiable")

    @staticmethod
    def _state_specs(group):
        specs = (("exp_avg", "exp_avg", 0.0), ("exp_avg_sq", "exp_avg_sq", 0.0))
        if group["amsgrad"]:
            specs += (("max_exp_avg_sq", "max_exp_avg_sq", 0.0),)
        return specs


class AdamW(Adam, torch.optim.AdamW):
    pass


with_options(Adam, torch.optim.Adam)
with_options(AdamW, torch.optim.AdamW)


class NAdam(FastoptOptimizer, torch.optim.NAdam):
    _kernel = staticmethod(fastopt.nadam_)
    _args = ("lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay",
             "maximize")
    _watch = ("foreach", "capturable", "differentiable")
    _scalars = (("step", 0.0), ("mu_product", 1.0))

    @staticmethod
    def _state_specs(group):
        return (("exp_avg", "exp_avg", 0.0), ("exp_avg_sq", "exp_avg_sq", 0.0))

    @staticmethod
    def _advance(plan, hp):
        """state["mu_product"] *= mu(step), in float32 as torch keeps it (one
        scalar for a single run, such as a flatten_ed group: its parameters
        share the step)."""
        beta1, momentum_decay = hp[1][0], hp[4]
        prod = plan.scalars_np["mu_product"]
        if len(plan.runs) == 1:
            run = plan.runs[0]
            t = run.t - 1                   # the step just made
            prod[run.index[0]:run.index[-1] + 1] *= np.float32(
                beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay)))
            return
        which = slice(None) if plan.all_active else plan.active
        t = plan.steps_np[which].astype(np.float64)
        prod[which] *= (beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))).astype(np.float32)


class Adamax(FastoptOptimizer, torch.optim.Adamax):
    _kernel = staticmethod(fastopt.adamax_)
    _args = ("lr", "betas", "eps", "weight_decay", "maximize")
    _watch = ("foreach", "capturable", "differentiable")

    @staticmethod
    def _state_specs(group):
        return (("exp_avg", "exp_avg", 0.0), ("exp_inf", "exp_inf", 0.0))


class Adadelta(FastoptOptimizer, torch.optim.Adadelta):
    _kernel = staticmethod(fastopt.adadelta_)
    _args = ("lr", "rho", "eps", "weight_decay", "maximize")
    _watch = ("foreach", "capturable", "differentiable")
    _step_kw = False

    @staticmethod
    def _state_specs(group):
        return (("square_avg", "square_avg", 0.0), ("acc_delta", "acc_delta", 0.0))


class Lion(FastoptOptimizer, torch.optim.Optimizer):
    """Lion (EvoLved Sign Momentum; Chen et al. 2023) with fastopt's fused CPU
    kernel (``fastopt.lion_``).  PyTorch has no Lion: this is a
    ``torch.optim.Optimizer`` in torch's style, with lion-pytorch's names and
    defaults, and the rule of ``keras.optimizers.Lion`` and optax's
    ``lion``, for each parameter ``p`` with gradient ``g``::

        g = -g if maximize else g
        p = p * (1 - lr * weight_decay)                 (decoupled decay)
        c = beta1 * exp_avg + (1 - beta1) * g
        p = p - lr * sign(c)                            (sign(0) = 0)
        exp_avg = beta2 * exp_avg + (1 - beta2) * g

    ``betas=(beta1, beta2)``; Keras' ``learning_rate=1e-3, beta_1=0.9,
    beta_2=0.99`` differ only in lr (lion-pytorch's 1e-4 is the default
    here).  Its state is ``state[p]["exp_avg"]`` (no step count); parameter
    groups, ``state_dict``, lr schedulers, ``step(closure)``, ``flatten_``
    and ``zero_grad`` work as for the other fastopt.torch optimizers
    (CPU float32 dense parameters).
    """

    _kernel = staticmethod(fastopt.lion_)
    _args = ("lr", "betas", "weight_decay", "maximize")
    _scalars = ()
    _step_kw = False

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *,
                 maximize=False):
        check_number(lr, "lr", minimum=0.0)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            check_number(beta, f"betas[{i}]", minimum=0.0, maximum=1.0)
        check_number(weight_decay, "weight_decay", minimum=0.0)
        check_bool(maximize, "maximize")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay,
                                      maximize=maximize))

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("maximize", False)

    @staticmethod
    def _state_specs(group):
        return (("exp_avg", "exp_avg", 0.0),)


_doc(SGD, "sgd_", "differentiable")
_doc(Adagrad, "adagrad_", "differentiable")
_doc(RMSprop, "rmsprop_", "capturable and differentiable")
_doc(Adam, "adam_", "capturable and differentiable")
_doc(AdamW, "adam_ with decoupled_weight_decay=True", "capturable and differentiable")
_doc(NAdam, "nadam_", "capturable and differentiable")
_doc(Adamax, "adamax_", "capturable and differentiable")
_doc(Adadelta, "adadelta_", "capturable and differentiable")
_LOWP_DOC = """
fastopt's own options (keyword-only; see docs/low_precision.md):

* bfloat16 and float16 parameters (``model.to(torch.bfloat16)``) get float32
  master weights, ``state[p]["master_param"]``, made from the parameter
  when its state is created: each step reads the 16-bit gradient, updates
  the float32 master and moments and writes the master rounded to nearest
  even into the parameter, in one pass (DeepSpeed's / apex's master-weights
  pattern).  The result is bit for bit this optimizer run on float32 copies
  of the parameters fed ``grad.float()``, then ``p.copy_(master)``.  Not
  with ``amsgrad``.  A 16-bit parameter's values changed outside the
  optimizer are overwritten from its master at the next step: delete
  ``state[p]["master_param"]`` to remake it from the parameter.
* ``state_dtype="bfloat16"``: both moments as torch.bfloat16 (rounded to
  nearest even, or ``state_rounding="stochastic"`` from ``seed``);
  ``"int8"``: 8-bit block-wise moments (torch.uint8 codes) and
  ``state["state_scales"]`` (float32 block scales).  Not with ``amsgrad``.
  ``state_dict`` holds them in that format; ``load_state_dict`` accepts
  only state of this optimizer's format.
"""
Adam.__doc__ += _LOWP_DOC
AdamW.__doc__ += _LOWP_DOC
NAdam.__doc__ += """
``state["mu_product"]`` (torch's float32 product of the momentum
schedule) is kept and advanced as torch does, so checkpoints move both
ways; the kernel derives the product it uses from ``step`` and
``momentum_decay`` in double, which is the same unless ``momentum_decay``
is changed during training.
"""
