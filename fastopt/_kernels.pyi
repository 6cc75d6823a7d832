"""Type stubs for the compiled extension fastopt._kernels."""
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

_F32 = npt.NDArray[np.float32]
_Real = float | int | np.floating[Any] | np.integer[Any]
_Bool = bool | np.bool_
_Convention = Literal["torch", "keras"]

def sgd_(
    param: _F32,
    grad: _F32,
    momentum_buf: _F32 | None = None,
    *,
    lr: _Real,
    momentum: _Real = 0.0,
    dampening: _Real = 0.0,
    nesterov: _Bool = False,
    weight_decay: _Real = 0.0,
    maximize: _Bool = False,
    step: int = 1,
    decoupled_weight_decay: _Bool = False,
    grad_scale: _Real = 1.0,
    skip_nonfinite: _Bool = False,
    convention: _Convention = "torch",
) -> bool | None: ...
def adagrad_(
    param: _F32,
    grad: _F32,
    state_sum: _F32,
    *,
    step: int,
    lr: _Real = 1e-2,
    lr_decay: _Real = 0.0,
    weight_decay: _Real = 0.0,
    eps: _Real = 1e-10,
    maximize: _Bool = False,
    decoupled_weight_decay: _Bool = False,
    grad_scale: _Real = 1.0,
    skip_nonfinite: _Bool = False,
    convention: _Convention = "torch",
) -> bool | None: ...
def rmsprop_(
    param: _F32,
    grad: _F32,
    square_avg: _F32,
    *,
    lr: _Real = 1e-2,
    alpha: _Real = 0.99,
    eps: _Real = 1e-8,
    weight_decay: _Real = 0.0,
    momentum: _Real = 0.0,
    momentum_buf: _F32 | None = None,
    centered: _Bool = False,
    grad_avg: _F32 | None = None,
    maximize: _Bool = False,
    decoupled_weight_decay: _Bool = False,
    grad_scale: _Real = 1.0,
    skip_nonfinite: _Bool = False,
    convention: _Convention = "torch",
) -> bool | None: ...
def adam_(
    param: _F32,
    grad: _F32,
    exp_avg: _F32,
    exp_avg_sq: _F32,
    *,
    step: int,
    lr: _Real = 1e-3,
    beta1: _Real = 0.9,
    beta2: _Real = 0.999,
    eps: _Real = 1e-8,
    weight_decay: _Real = 0.0,
    decoupled_weight_decay: _Bool = False,
    amsgrad: _Bool = False,
    max_exp_avg_sq: _F32 | None = None,
    maximize: _Bool = False,
    grad_scale: _Real = 1.0,
    skip_nonfinite: _Bool = False,
    convention: _Convention = "torch",
) -> bool | None: ...
def adamw_(
    param: _F32,
    grad: _F32,
    exp_avg: _F32,
    exp_avg_sq: _F32,
    *,
    step: int,
    lr: _Real = 1e-3,
    beta1: _Real = 0.9,
    beta2: _Real = 0.999,
    eps: _Real = 1e-8,
    weight_decay: _Real = 1e-2,
    amsgrad: _Bool = False,
    max_exp_avg_sq: _F32 | None = None,
    maximize: _Bool = False,
    grad_scale: _Real = 1.0,
    skip_nonfinite: _Bool = False,
    convention: _Convention = "torch",
) -> bool | None: ...
class BoundUpdate:
    def __call__(self, step: int | None = None, grad_scale: _Real | None = None) -> bool | None: ...

def bind(kernel: Callable[..., bool | None], *args: Any, **kwargs: Any) -> BoundUpdate: ...
def sum_squares(x: _F32) -> float: ...
def all_finite(x: _F32) -> bool: ...
def simd_levels() -> list[str]: ...
def set_simd_level(name: str) -> None: ...
def build_info() -> dict[str, Any]: ...
