"""Learning-rate schedules, in Keras' form and in PyTorch's.

Keras-style schedules are callables of the 0-based iteration count
(``optimizer.iterations``, 0 on the first update), with Keras 3's formulas:
pass one as ``learning_rate`` to a :mod:`fastopt.optim.keras` optimizer, or
drive any optimizer with :class:`ScheduleLR`.  As Keras', they take any
finite real step (negative and fractional ones too, computed by the same
formula in float64), a ``name``, and round-trip through ``get_config`` /
``from_config``; :func:`serialize` / :func:`deserialize` give and read
Keras' ``{"class_name": ..., "config": ...}`` form.

PyTorch-style schedulers (:class:`StepLR`, :class:`ExponentialLR`,
:class:`CosineAnnealingLR`) wrap an optimizer and set ``lr`` in every
parameter group each time their ``step()`` is called (usually once per
epoch; ``last_epoch`` counts those calls, 0 at construction), with PyTorch's
closed forms.  They work on both families.
"""
import bisect
import math

import numpy as np

from fastopt._validate import check_int, check_number

_BOUNDS = {None: {}, "positive": dict(minimum=0, min_open=True), "nonneg": dict(minimum=0),
           "unit": dict(minimum=0, maximum=1)}
_WORDS = {None: "finite", "positive": "> 0", "nonneg": ">= 0", "unit": "in [0, 1]"}


def _number(value, name, bound=None):
    """``check_number`` with ``bound`` (None, 'positive', 'nonneg' or
    'unit'), its ValueError in the schedules' wording: ``{name} must be
    finite`` or ``must be > 0`` / ``>= 0`` / ``in [0, 1]``."""
    try:
        return check_number(value, name, **_BOUNDS[bound])
    except ValueError:
        words = _WORDS[bound] if math.isfinite(value) else _WORDS[None]
        raise ValueError(f"{name} must be {words}, got {float(value)!r}") from None


def _epoch_count(epoch):
    return check_int(epoch, "last_epoch", minimum=0)


def _ratio(a, b):
    """``a / b`` in float64 as Keras' tensors compute it: a zero divisor
    gives inf or nan, not an exception (negative steps can reach it)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float64(a) / np.float64(b)


def _power(base, exponent):
    """``base ** exponent`` with C99's pow for infinite bases (as Keras'
    tensors: ``(-inf) ** 0.5`` is inf), nan for a negative base and a
    fractional exponent, inf on overflow."""
    try:
        return math.pow(base, exponent)
    except ValueError:
        return math.nan
    except OverflowError:
        return math.inf


class LearningRateSchedule:
    """A Keras-style schedule: ``schedule(step) -> learning rate``, for any
    finite real ``step`` (as Keras 3: negative and fractional steps follow
    the same formula)."""

    def __call__(self, step):
        step = check_number(step, "step")
        with np.errstate(all="ignore"):
            return float(self._lr(step))

    def _lr(self, step):
        raise NotImplementedError

    def get_config(self):
        """The constructor's arguments (Keras' keys, ``name`` included)."""
        return dict(self.__dict__)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """Keras: ``lr * decay_rate ** (step / decay_steps)``; with ``staircase``
    the exponent is floored."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate",
                                             "nonneg")
        self.decay_steps = _number(decay_steps, "decay_steps", "positive")
        self.decay_rate = _number(decay_rate, "decay_rate", "positive")
        self.staircase = bool(staircase)
        self.name = name

    def _lr(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * np.power(self.decay_rate, p)


class InverseTimeDecay(LearningRateSchedule):
    """Keras: ``lr / (1 + decay_rate * step / decay_steps)`` (floored with
    ``staircase``)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="InverseTimeDecay"):
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate",
                                             "nonneg")
        self.decay_steps = _number(decay_steps, "decay_steps", "positive")
        self.decay_rate = _number(decay_rate, "decay_rate", "nonneg")
        self.staircase = bool(staircase)
        self.name = name

    def _lr(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return _ratio(self.initial_learning_rate, 1 + self.decay_rate * p)


class CosineDecay(LearningRateSchedule):
    """Keras 3 ``CosineDecay``, with optional linear warm-up.

    Without warm-up: ``s = min(step, decay_steps)``,
    ``lr * ((1 - alpha) * (1 + cos(pi s / decay_steps)) / 2 + alpha)``.
    With ``warmup_steps`` and ``warmup_target``: rises linearly from
    ``initial_learning_rate`` to ``warmup_target`` over ``warmup_steps``,
    then decays from ``warmup_target`` over the next ``decay_steps``.
    ``alpha`` is a fraction of the peak rate.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate",
                                             "nonneg")
        self.decay_steps = _number(decay_steps, "decay_steps", "nonneg")
        self.alpha = _number(alpha, "alpha", "unit")
        self.warmup_target = (None if warmup_target is None
                              else _number(warmup_target, "warmup_target", "nonneg"))
        self.warmup_steps = _number(warmup_steps, "warmup_steps", "nonneg")
        if self.warmup_steps and self.warmup_target is None:
            raise ValueError("warmup_steps needs warmup_target (the rate reached at its end)")
        self.name = name

    def _decay(self, step, peak):
        s = min(step, self.decay_steps)
        fraction = s / self.decay_steps if self.decay_steps else 1.0
        cosine = 0.5 * (1.0 + np.cos(math.pi * fraction))
        return peak * ((1 - self.alpha) * cosine + self.alpha)

    def _lr(self, step):
        if self.warmup_target is None:
            return self._decay(step, self.initial_learning_rate)
        if step < self.warmup_steps:
            done = step / self.warmup_steps
            return self.initial_learning_rate + done * (self.warmup_target
                                                        - self.initial_learning_rate)
        return self._decay(step - self.warmup_steps, self.warmup_target)


class PiecewiseConstantDecay(LearningRateSchedule):
    """Keras: ``values[i]`` while ``boundaries[i-1] < step <= boundaries[i]``."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        boundaries, values = list(boundaries), list(values)
        self.name = name
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"values must have one more entry than boundaries, got "
                             f"{len(values)} values for {len(boundaries)} boundaries")
        self.boundaries = [_number(b, "boundaries") for b in boundaries]
        self.values = [_number(v, "values", "nonneg") for v in values]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError("boundaries must be strictly increasing")

    def _lr(self, step):
        return self.values[bisect.bisect_left(self.boundaries, step)]


class PolynomialDecay(LearningRateSchedule):
    """Keras 3 ``PolynomialDecay``: ``(lr - end) * (1 - s / d) ** power + end``,
    where without ``cycle`` ``s = min(step, decay_steps)`` and ``d =
    decay_steps``; with ``cycle`` ``s = step`` and ``d = decay_steps *
    ceil(step / decay_steps)`` (``decay_steps`` at step 0)."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0,
                 cycle=False, name="PolynomialDecay"):
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate",
                                             "nonneg")
        self.decay_steps = _number(decay_steps, "decay_steps", "positive")
        self.end_learning_rate = _number(end_learning_rate, "end_learning_rate", "nonneg")
        self.power = _number(power, "power")
        self.cycle = bool(cycle)
        self.name = name

    def _lr(self, step):
        decay_steps = self.decay_steps
        if self.cycle:
            decay_steps *= 1.0 if step == 0 else np.ceil(step / self.decay_steps)
        else:
            step = min(step, decay_steps)
        p = _ratio(step, decay_steps)
        return ((self.initial_learning_rate - self.end_learning_rate)
                * _power(float(1 - p), self.power) + self.end_learning_rate)


class CosineDecayRestarts(LearningRateSchedule):
    """Keras 3 ``CosineDecayRestarts`` (SGDR): with ``f = step /
    first_decay_steps``, restart ``i = floor(log(1 - f (1 - t_mul)) /
    log(t_mul))`` (``floor(f)`` when ``t_mul == 1``) and the fraction of it
    done ``c = (f - (1 - t_mul^i) / (1 - t_mul)) / t_mul^i`` (``f - i``);
    ``lr * ((1 - alpha) * m_mul^i * (1 + cos(pi c)) / 2 + alpha)``."""

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0,
                 name="SGDRDecay"):
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate",
                                             "nonneg")
        self.first_decay_steps = _number(first_decay_steps, "first_decay_steps", "positive")
        self.t_mul = _number(t_mul, "t_mul", "positive")
        self.m_mul = _number(m_mul, "m_mul", "nonneg")
        self.alpha = _number(alpha, "alpha", "unit")
        self.name = name

    def _lr(self, step):
        fraction = np.float64(step) / self.first_decay_steps
        if self.t_mul == 1.0:
            restart = np.floor(fraction)
            fraction -= restart
        else:
            restart = np.floor(np.log(1.0 - fraction * (1.0 - self.t_mul)) / np.log(self.t_mul))
            done = (1.0 - np.power(self.t_mul, restart)) / (1.0 - self.t_mul)
            fraction = (fraction - done) / np.power(self.t_mul, restart)
        cosine = 0.5 * np.power(self.m_mul, restart) * (1.0 + np.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)


KERAS_SCHEDULES = {cls.__name__: cls for cls in (ExponentialDecay, InverseTimeDecay, CosineDecay,
                                                 PiecewiseConstantDecay, PolynomialDecay,
                                                 CosineDecayRestarts)}


def serialize(schedule):
    """A Keras-style schedule as Keras 3 serialises one:
    ``{"module", "class_name", "config", "registered_name"}``."""
    if not isinstance(schedule, LearningRateSchedule):
        raise TypeError(f"schedule must be a LearningRateSchedule, got {type(schedule).__name__}")
    return {"module": "keras.optimizers.schedules", "class_name": type(schedule).__name__,
            "config": schedule.get_config(), "registered_name": None}


def deserialize(config):
    """The schedule :func:`serialize` (or Keras 3) described: a dict with
    ``class_name`` one of :data:`KERAS_SCHEDULES` and ``config``."""
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        raise ValueError("a serialised schedule is a dict with 'class_name' and 'config'")
    cls = KERAS_SCHEDULES.get(config["class_name"])
    if cls is None:
        raise ValueError(f"unknown schedule {config['class_name']!r}; expected one of "
                         f"{sorted(KERAS_SCHEDULES)}")
    return cls.from_config(config["config"])


# ---------------------------------------------------------------------------
# PyTorch-style schedulers


class _Scheduler:
    """Sets ``lr`` of every parameter group from ``base_lrs`` and
    ``last_epoch`` (0 after construction, +1 per ``step()``)."""

    def __init__(self, optimizer):
        groups = getattr(optimizer, "param_groups", None)
        if not groups:
            raise TypeError("a scheduler needs a built optimizer with param_groups")
        for k, group in enumerate(groups):
            if callable(group["lr"]):
                raise TypeError(f"parameter group {k} already has a schedule as its lr")
        self.optimizer = optimizer
        self.base_lrs = [float(g["lr"]) for g in groups]
        self.last_epoch = 0
        self._apply()

    def _lr(self, base_lr, epoch):
        raise NotImplementedError

    def _apply(self):
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self._lr(base, self.last_epoch)

    def step(self):
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self):
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state):
        self.last_epoch = _epoch_count(state["last_epoch"])
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        self._apply()


class StepLR(_Scheduler):
    """PyTorch: ``lr * gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = check_int(step_size, "step_size", minimum=1)
        self.gamma = _number(gamma, "gamma", "nonneg")
        super().__init__(optimizer)

    def _lr(self, base, epoch):
        return base * self.gamma ** (epoch // self.step_size)


class ExponentialLR(_Scheduler):
    """PyTorch: ``lr * gamma ** epoch``."""

    def __init__(self, optimizer, gamma):
        self.gamma = _number(gamma, "gamma", "nonneg")
        super().__init__(optimizer)

    def _lr(self, base, epoch):
        return base * self.gamma ** epoch


class CosineAnnealingLR(_Scheduler):
    """PyTorch: ``eta_min + (lr - eta_min) (1 + cos(pi epoch / T_max)) / 2``;
    ``eta_min`` is absolute, and past ``T_max`` the cosine goes on (PyTorch
    does not clamp)."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = _number(T_max, "T_max", "positive")
        self.eta_min = _number(eta_min, "eta_min", "nonneg")
        super().__init__(optimizer)

    def _lr(self, base, epoch):
        return self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * epoch
                                                                    / self.T_max)) / 2


class ScheduleLR(_Scheduler):
    """Drive any optimizer with a Keras-style schedule: each ``step()`` sets
    ``lr = schedule(last_epoch)``; call it once per update (or per epoch)."""

    def __init__(self, optimizer, schedule):
        if not callable(schedule):
            raise TypeError(f"schedule must be callable, got {type(schedule).__name__}")
        self.schedule = schedule
        super().__init__(optimizer)

    def _lr(self, base, epoch):
        return float(self.schedule(epoch))
