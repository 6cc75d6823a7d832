"""Low-precision optimizer state and gradients (the ``state_dtype`` option).

``state_dtype="float32"`` (the default), ``"bfloat16"`` (both moments in
``ml_dtypes.bfloat16``, rounded to nearest even or, with
``state_rounding="stochastic"``, stochastically from ``seed``) or
``"int8"`` (8-bit block-wise state: uint8 codes plus one float32 scale per
block of each moment, kept as the state buffer ``state_scales``).  Only the
rules whose kernel takes these formats offer them: bfloat16 and int8 Adam
and AdamW; bfloat16 SGD (its momentum buffer), RMSprop (all its state) and
Adagrad (its sum), in both families.  The gradient's dtype (float32,
float16 or bfloat16) is taken from the gradient arrays.  The formats and
their rounding are documented in :func:`fastopt.adam_` (and
docs/low_precision.md).

A state_dict holds the state in its format; loading one of another format
(float32 state into a bfloat16 optimizer, or back) is rejected with a
ValueError naming the buffer and both dtypes: convert explicitly (the
arrays' ``astype``) if that is what you mean.
"""
import numpy as np

from fastopt._kernels import build_info
from fastopt._validate import check_choice, check_int

STATE_DTYPES = ("float32", "bfloat16", "int8")
ROUNDINGS = ("nearest", "stochastic")
SCALES = "state_scales"  # the state buffer of 8-bit state's block scales


def bfloat16():
    """numpy's dtype of ``ml_dtypes.bfloat16`` (an optional dependency)."""
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError("bfloat16 needs the optional package ml_dtypes "
                          "(pip install ml_dtypes)") from None
    return np.dtype(ml_dtypes.bfloat16)


def is_bfloat16(dtype):
    """Recognised by name and size, as the extension does (no import)."""
    return dtype.name == "bfloat16" and dtype.itemsize == 2


def grad_dtype_name(dtype):
    """'float32', 'float16' or 'bfloat16' for a gradient's dtype, else None."""
    if dtype == np.float32 or dtype == np.float16:
        return dtype.name
    return "bfloat16" if is_bfloat16(dtype) else None


class StateFormat:
    """An optimizer's state format: which dtype its low-precision state
    buffers (``names``) have, and the kernel arguments that go with it."""

    def __init__(self, state_dtype, state_rounding, seed, names, owner, dtypes=STATE_DTYPES):
        self.dtype_name = check_choice(state_dtype, "state_dtype", STATE_DTYPES)
        self.rounding = check_choice(state_rounding, "state_rounding", ROUNDINGS)
        self.seed = check_int(seed, "seed", minimum=0, maximum=2**32 - 1)
        takes = dtypes if names else ("float32",)
        if self.dtype_name not in takes:
            raise ValueError(f"state_dtype={state_dtype!r} is not available for {owner}; "
                             f"it takes {' or '.join(map(repr, takes))}")
        if self.rounding == "stochastic" and self.dtype_name != "bfloat16":
            raise ValueError("state_rounding='stochastic' rounds bfloat16 state; "
                             f"state_dtype is {state_dtype!r}")
        self.names = tuple(names)
        self.dtype = {"float32": np.dtype(np.float32), "int8": np.dtype(np.uint8)}.get(
            self.dtype_name) or bfloat16()

    def extra_names(self):
        """State buffers the format adds: the block scales of 8-bit state."""
        return [SCALES] if self.dtype_name == "int8" else []

    def length(self, name, n):
        """Elements of state buffer ``name`` for a span of ``n`` elements."""
        if name != SCALES:
            return n
        block = build_info()["q8_block_elements"]
        return 2 * (-(-n // block))

    def dtype_of(self, name):
        return self.dtype if name in self.names else np.dtype(np.float32)

    def kernel_args(self, state):
        """The low-precision arguments of the kernel call (none for float32)."""
        if self.dtype_name == "float32":
            return {}
        scales = {"state_scales": state.get(SCALES)} if self.dtype_name == "int8" else {}
        return {**scales, "rounding": self.rounding, "seed": self.seed}

    def check_saved(self, name, a, where):
        """A saved state array (state_dict) in this format: its dtype is the
        format's, and block scales are finite and >= 0."""
        want = self.dtype_of(name)
        if (want != np.float32 and a.dtype != want) or (
                want == np.float32 and name in self.names and is_bfloat16(a.dtype)):
            raise ValueError(f"state_dict {name!r} of {where} has dtype {a.dtype}, "
                             f"this optimizer's state_dtype is {self.dtype_name!r} (convert "
                             f"the arrays explicitly, or make the optimizer with the "
                             f"state_dtype they were saved with)")
        if want == np.float32 and not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"state_dict {name!r} of {where} has dtype {a.dtype}, "
                             f"expected floats")
        if name == SCALES and not np.all(np.isfinite(a) & (a >= 0)):
            raise ValueError(f"state_dict {name!r} of {where} holds block scales that are "
                             f"not finite and >= 0")
