"""fastopt: fused, in-place optimizer kernels for NumPy float32 buffers.

The update rules are compiled (``fastopt._kernels``); there is no pure-Python
fallback.  Each function updates ``param`` and its state arrays in place,
following PyTorch's rule by default and Keras' with ``convention='keras'``.
"""

__version__ = "0.1.0"

try:
    from fastopt import _kernels
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "fastopt's compiled extension fastopt._kernels could not be imported "
        f"({exc}). fastopt has no pure-Python fallback: install it with "
        "`pip install .` from the source tree (this compiles the extension; "
        "it needs a C compiler), and do not import it from inside an unbuilt "
        "source checkout."
    ) from exc

from fastopt._kernels import adagrad_, adam_, adamw_, build_info, rmsprop_, sgd_

__all__ = ["adagrad_", "adam_", "adamw_", "build_info", "rmsprop_", "sgd_", "__version__"]
