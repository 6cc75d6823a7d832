"""The 2-parameter test functions ``fastopt paths`` runs the optimizers on: each
function's value and gradient (float64, vectorised over arrays of x and y), and
the defaults that make its first picture tell a story (start, steps, each
optimizer's learning rate, the plotted window)."""
from dataclasses import dataclass, field

import numpy as np

from fastopt._validate import check_choice


@dataclass(frozen=True)
class TestFunction:
    """One test function: ``value(x, y)`` and ``gradient(x, y) -> (gx, gy)``
    in float64; ``start`` (x, y), ``steps``, ``lrs`` (optimizer name -> its
    default learning rate here), ``window`` (xmin, xmax, ymin, ymax) and
    ``minimum`` (x, y) of the global minimum (None if unbounded)."""

    name: str
    title: str
    value: object
    gradient: object
    start: tuple
    steps: int
    lrs: dict
    window: tuple
    minimum: tuple = None
    log_levels: bool = True
    story: str = field(default="", compare=False)


def _rosenbrock(x, y):
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _rosenbrock_grad(x, y):
    return -2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)


_BEALE_C = (1.5, 2.25, 2.625)


def _beale(x, y):
    return sum((c - x + x * y ** (k + 1)) ** 2 for k, c in enumerate(_BEALE_C))


def _beale_grad(x, y):
    gx = gy = 0.0
    for k, c in enumerate(_BEALE_C):
        r = c - x + x * y ** (k + 1)
        gx = gx + 2 * r * (y ** (k + 1) - 1)
        gy = gy + 2 * r * (k + 1) * x * y ** k
    return gx, gy


def _saddle(x, y):
    return x * x - y * y + y ** 4 / 4


def _saddle_grad(x, y):
    return 2 * x, -2 * y + y ** 3


_BOWL_Y = 20.0  # the bowl's curvature across (1 along x): condition number 20


def _bowl(x, y):
    return 0.5 * (x * x + _BOWL_Y * y * y)


def _bowl_grad(x, y):
    return x + 0 * y, _BOWL_Y * y + 0 * x


# bumpy: a shallow bowl along x (minimum at 0) with Gaussian dips on the way down
_DIPS = (-3.0, -1.5)
_DIP_DEPTH, _DIP_WIDTH, _BUMPY_SLOPE = 0.25, 0.25, 0.05


def _bumpy(x, y):
    dips = sum(np.exp(-((x - c) ** 2 + y * y) / (2 * _DIP_WIDTH ** 2)) for c in _DIPS)
    return _BUMPY_SLOPE * x * x + 0.5 * y * y - _DIP_DEPTH * dips


def _bumpy_grad(x, y):
    gx, gy = 2 * _BUMPY_SLOPE * x, y
    for c in _DIPS:
        e = _DIP_DEPTH * np.exp(-((x - c) ** 2 + y * y) / (2 * _DIP_WIDTH ** 2)) \
            / _DIP_WIDTH ** 2
        gx, gy = gx + e * (x - c), gy + e * y
    return gx, gy


FUNCTIONS = {f.name: f for f in (
    TestFunction("rosenbrock", "Rosenbrock: (1-x)² + 100(y-x²)²", _rosenbrock,
                 _rosenbrock_grad, start=(-1.5, 2.0), steps=1000,
                 lrs=dict(sgd=1e-3, momentum=2e-4, nesterov=2e-4, adagrad=0.1, rmsprop=1e-2,
                          adam=5e-2, adamw=5e-2),
                 window=(-2.0, 2.0, -1.0, 3.0), minimum=(1.0, 1.0),
                 story="a curved valley: the valley floor is found fast, its minimum slowly"),
    TestFunction("beale", "Beale's function", _beale, _beale_grad, start=(1.0, 1.4),
                 steps=500, lrs=dict(sgd=1e-3, momentum=1e-4, nesterov=1e-4, adagrad=0.5,
                                     rmsprop=1e-2, adam=5e-2, adamw=5e-2),
                 window=(-1.0, 4.5, -1.5, 2.0), minimum=(3.0, 0.5),
                 story="flat plateaus and steep walls"),
    TestFunction("saddle", "Saddle: x² - y² + y⁴/4", _saddle, _saddle_grad,
                 start=(2.0, 1e-3), steps=200,
                 lrs=dict(sgd=2e-2, momentum=5e-3, nesterov=5e-3, adagrad=0.5, rmsprop=2e-2,
                          adam=5e-2, adamw=5e-2),
                 window=(-2.5, 2.5, -2.5, 2.5), minimum=(0.0, 2 ** 0.5), log_levels=False,
                 story="a saddle point at the origin: who escapes it, and how fast"),
    TestFunction("bowl", "Ill-conditioned bowl: (x² + 20y²)/2", _bowl, _bowl_grad,
                 start=(-4.5, 1.5), steps=100,
                 lrs=dict(sgd=9e-2, momentum=2e-2, nesterov=2e-2, adagrad=1.0, rmsprop=5e-2,
                          adam=1e-1, adamw=1e-1),
                 window=(-5.0, 5.0, -2.0, 2.0), minimum=(0.0, 0.0),
                 story="steep across, shallow along: SGD zig-zags across, momentum swings, "
                       "the adaptive rules scale each coordinate"),
    TestFunction("bumpy", "Bowl with small dips", _bumpy, _bumpy_grad, start=(-4.0, 0.05),
                 steps=100,
                 lrs=dict(sgd=0.1, momentum=0.1, nesterov=0.15, adagrad=0.3, rmsprop=1e-2,
                          adam=5e-2, adamw=5e-2),
                 window=(-4.5, 1.5, -1.0, 1.0), minimum=(0.0, 0.0), log_levels=False,
                 story="momentum rolls through the small dips where plain SGD stops"),
)}


def get(name):
    """The test function called ``name`` (TypeError if not a string, ValueError listing
    the names if no such function)."""
    return FUNCTIONS[check_choice(name, "function", tuple(FUNCTIONS))]
