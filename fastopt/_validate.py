"""Argument checks of fastopt's Python layer: the one home of each check.

Every check raises ``TypeError`` when the value has the wrong type and
``ValueError`` when it has the right type but a wrong value, with a message
that names the argument and says what was expected.  ``bool`` is never taken
for a number.  (The compiled kernels check their own arguments in C, with the
same policy and wording: ``fastopt/_ext/checks.pxi``.)
"""
import math
import numbers

import numpy as np

__all__ = ["check_bool", "check_choice", "check_int", "check_number"]


def _describe(value):
    if value is None or isinstance(value, (numbers.Number, str, np.generic)):
        return repr(value)
    return f"an object of type {type(value).__name__}"


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def check_number(value, name, *, minimum=None, maximum=None, min_open=False, max_open=False,
                 allow_inf=False):
    """``value`` as a float: a real number (not a bool), finite unless
    ``allow_inf``, within ``[minimum, maximum]`` (ends open where asked)."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {_describe(value)}")
    v = float(value)
    below = minimum is not None and (v <= minimum if min_open else v < minimum)
    above = maximum is not None and (v >= maximum if max_open else v > maximum)
    if math.isnan(v) or (math.isinf(v) and not allow_inf) or below or above:
        raise ValueError(f"{name} must be {_range_text(minimum, maximum, min_open, max_open, allow_inf)}, "
                         f"got {value!r}")
    return v


def _range_text(minimum, maximum, min_open, max_open, allow_inf):
    kind = "a number" if allow_inf else "a finite number"
    if minimum is not None and maximum is not None:
        return (f"a number in {'(' if min_open else '['}{minimum:g}, "
                f"{maximum:g}{')' if max_open else ']'}")
    if minimum is not None:
        return f"{kind} {'>' if min_open else '>='} {minimum:g}"
    if maximum is not None:
        return f"{kind} {'<' if max_open else '<='} {maximum:g}"
    return kind


def check_int(value, name, *, minimum=None, maximum=None):
    """``value`` as an int (Python or NumPy integer, not a bool) within
    ``[minimum, maximum]``."""
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_describe(value)}")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        if maximum is None:
            bound = f">= {minimum}"
        elif minimum is None:
            bound = f"<= {maximum}"
        else:
            bound = f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")
    return v


def check_bool(value, name):
    """``value`` as a bool: only ``True``/``False`` (or NumPy's)."""
    if not _is_bool(value):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return bool(value)


def check_choice(value, name, choices):
    """``value`` if it is one of ``choices`` (strings), else ValueError listing
    them (TypeError if it is not a string)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {', '.join(map(repr, choices))}; "
                        f"got {_describe(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; "
                         f"got {value!r}")
    return value


def check_real(value, name, expected="a number"):
    """``value`` as a float, checking its type only (a real number, not a
    bool: TypeError saying it must be ``expected``); for values whose range
    is checked elsewhere, such as a hyperparameter the kernel checks."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {_describe(value)}")
    return float(value)
