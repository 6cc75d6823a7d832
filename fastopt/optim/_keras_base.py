"""The base of the Keras-compatible optimizer classes (:mod:`fastopt.optim.keras`):
Keras' learning rate (schedule, legacy decay), clipping, weight-decay
exclusion, the moving average of the weights (EMA), ``build``,
``apply_gradients`` and ``get_config`` over
:class:`~fastopt.optim._base.Optimizer`."""
import inspect
import math
import re

import numpy as np

import fastopt._kernels as K
from fastopt._validate import check_bool, check_int, check_number, check_real
from fastopt.optim import schedules
from fastopt.optim.flat import FlatParameters, aligned_zeros
from fastopt.optim._base import DEFERRED, Optimizer
from fastopt.optim._spans import as_pairs
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
                 clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, lr=None, decay=None,
                 **low_precision):
        for arg, value in (("loss_scale_factor", loss_scale_factor),
                           ("gradient_accumulation_steps", gradient_accumulation_steps)):
            if value is not None:  # accepted as None so that Keras' configs load
                raise ValueError(f"{arg} is not supported by fastopt's Keras optimizers; "
                                 f"leave it None")
        self.use_ema = check_bool(use_ema, "use_ema")
        self.ema_momentum = check_number(ema_momentum, "ema_momentum", minimum=0, maximum=1)
        self.ema_overwrite_frequency = (None if ema_overwrite_frequency is None else check_int(
            ema_overwrite_frequency, "ema_overwrite_frequency", minimum=1))
        self._exclude_ids, self._exclude_pattern, self._no_decay_group = set(), None, None
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
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be "
                             "set (set at most one of clipnorm, clipvalue and global_clipnorm)")
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
        groups = self.param_groups or [self.defaults]
        old = [group["lr"] for group in groups]
        try:
            for group in groups:
                group["lr"] = value
                self._check_group(group)
        except Exception:
            for group, lr in zip(groups, old):
                group["lr"] = lr
            raise

    def _current_lr(self, group):
        lr = group["lr"]
        if callable(lr):
            lr = lr(self.iterations) if _takes_step(lr) else lr()
        lr = check_real(lr, "learning_rate", "a number or a schedule returning one")
        decay = check_number(group["decay"], "decay", minimum=0)
        return lr / (1.0 + decay * self.iterations) if decay else lr

    def _resolve(self, group):
        return dict(group, lr=self._current_lr(group))

    # -- building and stepping ----------------------------------------------
    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Keras' exclusion, before ``build``: no weight decay for the arrays
        in ``var_list`` (the same objects), nor for parameters whose name
        contains any of ``var_names`` (regular expressions, as Keras).  A
        parameter's name is its FlatParameters name (an MLP's are
        ``dense_<k>/kernel`` and ``dense_<k>/bias``) or its ``name``
        attribute.  Excluded parameters form a second parameter group with
        ``weight_decay=0``; without exclusions there is one group."""
        if self.built:
            raise ValueError("`exclude_from_weight_decay()` can only be configured before the "
                             "optimizer is built.")
        names = [] if var_names is None else list(var_names)
        if not all(isinstance(n, str) for n in names):
            raise TypeError("var_names must be a list of strings")
        self._exclude_ids = {id(v) for v in (var_list or [])}
        self._exclude_pattern = re.compile("|".join(sorted(set(names)))) if names else None

    def _excluded(self, param, name):
        return id(param) in self._exclude_ids or (
            self._exclude_pattern is not None and name is not None
            and self._exclude_pattern.search(name) is not None)

    def build(self, params):
        """Attach the parameters this optimizer updates: a FlatParameters or
        ``(param, grad)`` pairs.  A model's ``compile`` calls this."""
        if self.param_groups:
            raise RuntimeError(f"{type(self).__name__} is already built")
        if not (self._exclude_ids or self._exclude_pattern):
            self.add_param_group({"params": params})
            return
        pairs = as_pairs(params)
        names = (params.names if isinstance(params, FlatParameters)
                 else [getattr(p, "name", None) for p, _ in pairs])
        out = [self._excluded(p, n) for (p, _), n in zip(pairs, names)]
        kept = [pair for pair, o in zip(pairs, out) if not o]
        if kept:
            self.add_param_group({"params": kept})
        if len(kept) < len(pairs):
            self.add_param_group({"params": [pair for pair, o in zip(pairs, out) if o],
                                  "weight_decay": 0.0})
            self._no_decay_group = self.param_groups[-1]

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
        Keras clips through the constructor's arguments.)  With ``use_ema``
        the moving average follows each applied update (:meth:`_ema_step`)."""
        skipped = super().step(skip_nonfinite=skip_nonfinite)
        if self.use_ema and not skipped:
            self._ema_step()
        return skipped

    # -- the moving average of the weights (Keras' use_ema) ------------------
    def _state_names(self, group):
        names = self._rule_state_names(group)
        return names + ["average"] if self.use_ema else names

    def _ema_step(self):
        """Keras 3, after the update of iteration ``t`` (0-based):
        ``average = m * average + (1 - m) * param`` with ``m = ema_momentum``
        (``m = 0`` at ``t = 0``: the average starts at the updated weights),
        in float32; every ``ema_overwrite_frequency`` iterations (when
        ``(t + 1) % frequency == 0``) the weights are overwritten with it."""
        t = self.iterations - 1
        m = np.float32(self.ema_momentum if t else 0.0)
        for spans in self._spans:
            for span in spans:
                average = span.state["average"]
                average *= m
                average += (np.float32(1) - m) * span.param
        if self.ema_overwrite_frequency and (t + 1) % self.ema_overwrite_frequency == 0:
            self.finalize_variable_values()

    @property
    def moving_averages(self):
        """With ``use_ema``, the moving average of each parameter, in the
        order of :attr:`parameters` (views of the optimizer's state)."""
        if not self.use_ema:
            raise ValueError("this optimizer has no moving averages: use_ema is False")
        if not self.built or not self.iterations:
            raise ValueError("the moving averages start with the first update")
        views = {}
        for spans in self._spans:
            for span in spans:
                views.update(span.views(span.state["average"]))
        return [views[i].reshape(p.shape) for i, (p, _) in enumerate(self._params)]

    def finalize_variable_values(self, var_list=None):
        """Keras' ``finalize_variable_values``: with ``use_ema``, overwrite
        the parameters with their moving averages (``fit`` calls this at its
        end, as Keras' does); without, nothing.  ``var_list`` is accepted
        for Keras' signature; the parameters are those this optimizer was
        built over."""
        if not (self.use_ema and self.built and self.iterations):
            return
        for spans in self._spans:
            for span in spans:
                span.param[...] = span.state["average"]

    # -- Keras' apply_gradients ---------------------------------------------
    def apply_gradients(self, grads_and_vars):
        """Keras' ``apply_gradients``: one update from ``(grad, variable)``
        pairs.  The first call builds the optimizer over these variables;
        later calls must pass the same variables in the same order.  A
        gradient of None is refused (the update covers every variable)."""
        pairs = list(grads_and_vars)
        if all(g is None for g, _ in pairs):
            raise ValueError("No gradients provided for any variable.")
        if not self.param_groups:
            self._applied = [(v, aligned_zeros(np.size(v)).reshape(np.shape(v)))
                             for _, v in pairs]
            self.build(self._applied)
        params = getattr(self, "_applied", None) or self.param_groups[0]["params"]
        if len(pairs) != len(params) or any(v is not p for (_, v), (p, _) in zip(pairs, params)):
            raise ValueError("apply_gradients got different variables than it was built with")
        for k, ((g, _), (p, staged)) in enumerate(zip(pairs, params)):
            if g is None:
                raise ValueError(f"the gradient of variable {k} is None")
            g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"a gradient has shape {g.shape}, its variable {p.shape}")
            staged[...] = g
        self.step()

    # -- configuration ------------------------------------------------------
    def get_config(self):
        """Keras 3's config: ``name``, ``learning_rate`` (a number, or a
        schedule serialised as Keras does), ``weight_decay``, the clipping
        and EMA arguments and the rule's hyperparameters; ``decay``, and
        fastopt's ``state_dtype`` / ``state_rounding`` / ``seed``, only when
        set.  ``from_config(get_config())`` builds an equal optimizer."""
        group = self._group
        config = {"name": self.name, "learning_rate": _lr_config(group["lr"])}
        config.update({k: v for k, v in group.items() if k not in ("params", "lr", "decay")})
        if group is self._no_decay_group:  # every parameter excluded from weight decay
            config["weight_decay"] = self.defaults["weight_decay"]
        config.update(clipnorm=self.clipnorm, global_clipnorm=self.global_clipnorm,
                      clipvalue=self.clipvalue, use_ema=self.use_ema,
                      ema_momentum=self.ema_momentum,
                      ema_overwrite_frequency=self.ema_overwrite_frequency,
                      loss_scale_factor=None, gradient_accumulation_steps=None)
        if group["decay"]:
            config["decay"] = group["decay"]
        fmt = self.state_format
        if fmt.dtype_name != "float32":      # fastopt's own option: only when used
            config.update(state_dtype=fmt.dtype_name, state_rounding=fmt.rounding,
                          seed=fmt.seed)
        return config

    @classmethod
    def from_config(cls, config):
        """The optimizer a :meth:`get_config` (or Keras 3) config describes;
        ``lr``, the key of fastopt's earlier configs, is read too."""
        config = dict(config)
        rate = config.pop("learning_rate", None)
        if "lr" in config:
            rate = config.pop("lr")
        if isinstance(rate, dict):
            rate = schedules.deserialize(rate)
        return cls(learning_rate=rate, **config)


def _takes_step(rate):
    """Whether a callable learning rate takes the iteration count: a
    schedule does; a callable of no argument (Keras accepts one) does not."""
    if isinstance(rate, schedules.LearningRateSchedule):
        return True
    try:
        inspect.signature(rate).bind(0)
    except TypeError:
        return False
    except ValueError:  # no signature to read (some builtins): pass the step
        return True
    return True


def _lr_config(rate):
    if isinstance(rate, schedules.LearningRateSchedule):
        return schedules.serialize(rate)
    return rate
