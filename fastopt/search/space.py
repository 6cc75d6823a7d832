"""The search space: a dict of names to distributions.

``LogUniform(low, high)`` and ``Uniform(low, high)`` are floats, ``Int(low,
high)`` integers (both ends included; ``log=True`` for a log scale),
``Choice(values)`` any values (tuples of hidden sizes, names, ...).  In a
space, a list is a ``Choice`` and any other value is fixed.  Each
distribution draws from a NumPy generator (random search), lists its grid
(grid search: ``Choice`` values and every ``Int``), and asks an Optuna trial
(Bayesian search: ``suggest_float`` / ``suggest_int`` / ``suggest_categorical``
over the index of a choice, so that any value can be a choice).
"""
import math

from fastopt._validate import check_bool, check_int, check_number


class Distribution:
    """One hyperparameter's values."""

    def sample(self, rng):
        raise NotImplementedError

    def grid(self, name):
        raise ValueError(f"grid search needs listed values: {name} is {self!r}; give a "
                         f"Choice (or a list), or use method='random' or 'bayes'")

    def suggest(self, trial, name):
        raise NotImplementedError


class Uniform(Distribution):
    """A float uniform in ``[low, high]``."""

    log = False

    def __init__(self, low, high):
        minimum = 0 if self.log else None
        self.low = check_number(low, "low", minimum=minimum, min_open=self.log)
        self.high = check_number(high, "high", minimum=self.low)

    def sample(self, rng):
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def suggest(self, trial, name):
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def __repr__(self):
        return f"{type(self).__name__}({self.low!r}, {self.high!r})"


class LogUniform(Uniform):
    """A float whose logarithm is uniform: ``exp(U(log low, log high))``,
    ``0 < low <= high`` (learning rates, weight decay)."""

    log = True


class Int(Distribution):
    """An int uniform in ``[low, high]`` (both included); with ``log=True``
    uniform on a log scale (Optuna's meaning; random search rounds
    ``exp(U(log low, log high + 1))`` down)."""

    def __init__(self, low, high, log=False):
        self.log = check_bool(log, "log")
        self.low = check_int(low, "low", minimum=1 if self.log else None)
        self.high = check_int(high, "high", minimum=self.low)

    def sample(self, rng):
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))
            return min(int(value), self.high)
        return int(rng.integers(self.low, self.high + 1))

    def grid(self, name):
        return list(range(self.low, self.high + 1))

    def suggest(self, trial, name):
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    def __repr__(self):
        return f"Int({self.low}, {self.high}{', log=True' if self.log else ''})"


class Choice(Distribution):
    """One of ``values`` (any objects), each equally likely."""

    def __init__(self, values):
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TypeError(f"a Choice takes a list of values, got {values!r}")
        self.values = list(values)
        if not self.values:
            raise ValueError(f"a Choice needs at least one value, got {values!r}")

    def sample(self, rng):
        return self.values[int(rng.integers(len(self.values)))]

    def grid(self, name):
        return list(self.values)

    def suggest(self, trial, name):
        return self.values[trial.suggest_categorical(name, list(range(len(self.values))))]

    def __repr__(self):
        return f"Choice({self.values!r})"


def as_space(space):
    """``space`` checked: {name: Distribution}, lists made Choices; the fixed
    values (anything else) returned apart as a second dict."""
    if not isinstance(space, dict) or not space:
        raise TypeError(f"space must be a non-empty dict of names to distributions, lists "
                        f"or fixed values, got {type(space).__name__}")
    searched, fixed = {}, {}
    for name, value in space.items():
        if not isinstance(name, str):
            raise TypeError(f"space keys must be argument names (str), got {name!r}")
        if isinstance(value, list):
            value = Choice(value)
        (searched if isinstance(value, Distribution) else fixed)[name] = value
    return searched, fixed
