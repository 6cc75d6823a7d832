"""fastopt: fused, in-place optimizer kernels for NumPy float32 buffers.

The update rules are compiled (``fastopt._kernels``); there is no pure-Python
fallback.  Each function updates ``param`` and its state arrays in place,
following PyTorch's rule by default and Keras' with ``convention='keras'``.
"""

__version__ = "0.1.0"

from fastopt._openmp import passive_while_loading

try:
    with passive_while_loading():  # the OpenMP workers sleep when idle: see _openmp
        from fastopt import _kernels
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "fastopt's compiled extension fastopt._kernels could not be imported "
        f"({exc}). fastopt has no pure-Python fallback: install it with "
        "`pip install .` from the source tree (this compiles the extension; "
        "it needs a C compiler), and do not import it from inside an unbuilt "
        "source checkout."
    ) from exc

from fastopt._kernels import (BoundUpdate, adadelta_, adagrad_, adam_, adamax_, adamw_,
                              all_finite, bind, binary_cross_entropy, build_info, lion_,
                              mean_squared_error, nadam_, rmsprop_, sgd_,
                              softmax_cross_entropy, sum_squares)
from fastopt import callbacks, checkpoint, datasets, optim, schedules  # noqa: E402
from fastopt import layers, losses, metrics  # noqa: E402
from fastopt.optim.flat import FlatParameters, aligned_empty, aligned_zeros
from fastopt.training import MLP, History, Sequential
from fastopt import search  # noqa: E402  (after MLP: it builds MLPs)

__all__ = ["BoundUpdate", "FlatParameters", "History", "MLP", "Sequential", "__version__",
           "adadelta_", "adagrad_", "adam_", "adamax_", "adamw_", "aligned_empty",
           "aligned_zeros", "all_finite", "binary_cross_entropy", "bind", "build_info",
           "callbacks", "checkpoint", "datasets", "layers", "lion_", "losses",
           "mean_squared_error", "metrics", "nadam_", "optim", "rmsprop_", "schedules", "search",
           "sgd_", "softmax_cross_entropy", "sum_squares"]
