"""Type stubs for the compiled extension fastopt._kernels."""
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

_F32 = npt.NDArray[np.float32]
_F16 = npt.NDArray[np.float16]
_BF16 = npt.NDArray[Any]  # ml_dtypes.bfloat16
_U8 = npt.NDArray[np.uint8]
_Rounding = Literal["nearest", "stochastic"]
_Real = float | int | np.floating[Any] | np.integer[Any]
_Bool = bool | np.bool_
_Convention = Literal["torch", "keras"]

def sgd_(
    param: _F32,
    grad: _F32 | _F16 | _BF16,
    momentum_buf: _F32 | _BF16 | None = None,
    *,
    lr: _Real,
    momentum: _Real = 0.0,
    dampening: _Real = 0.0,
    nesterov: _Bool = False,
    weight_decay: _Real = 0.0,
    maximize: _Bool = False,
    step: int = 1,
    decoupled_weight_decay: _Bool = False,
    rounding: _Rounding = "nearest",
    seed: int = 0,
    grad_scale: _Real = 1.0,
    skip_nonfinite: _Bool = False,
    convention: _Convention = "torch",
) -> bool | None: ...
def adagrad_(
    param: _F32,
    grad: _F32 | _F16 | _BF16,
    state_sum: _F32 | _BF16,
    *,
    step: int,
    lr: _Real = 1e-2,
    lr_decay: _Real = 0.0,
    weight_decay: _Real = 0.0,
    eps: _Real = 1e-10,
    maximize: _Bool = False,
    decoupled_weight_decay: _Bool = False,
    rounding: _Rounding = "nearest",
    seed: int = 0,
    grad_scale: _Real = 1.0,
    skip_nonfinite: _Bool = False,
    convention: _Convention = "torch",
) -> bool | None: ...
def rmsprop_(
    param: _F32,
    grad: _F32 | _F16 | _BF16,
    square_avg: _F32 | _BF16,
    *,
    lr: _Real = 1e-2,
    alpha: _Real = 0.99,
    eps: _Real = 1e-8,
    weight_decay: _Real = 0.0,
    momentum: _Real = 0.0,
    momentum_buf: _F32 | _BF16 | None = None,
    centered: _Bool = False,
    grad_avg: _F32 | _BF16 | None = None,
    maximize: _Bool = False,
    decoupled_weight_decay: _Bool = False,
    step: int = 1,
    rounding: _Rounding = "nearest",
    seed: int = 0,
    grad_scale: _Real = 1.0,
    skip_nonfinite: _Bool = False,
    convention: _Convention = "torch",
) -> bool | None: ...
def adam_(
    param: _F32,
    grad: _F32 | _F16 | _BF16,
    exp_avg: _F32 | _BF16 | _U8,
    exp_avg_sq: _F32 | _BF16 | _U8,
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
    param_copy: _BF16 | _F16 | None = None,
    state_scales: _F32 | None = None,
    rounding: _Rounding = "nearest",
    seed: int = 0,
    maximize: _Bool = False,
    grad_scale: _Real = 1.0,
    skip_nonfinite: _Bool = False,
    convention: _Convention = "torch",
) -> bool | None: ...
def adamw_(
    param: _F32,
    grad: _F32 | _F16 | _BF16,
    exp_avg: _F32 | _BF16 | _U8,
    exp_avg_sq: _F32 | _BF16 | _U8,
    *,
    step: int,
    lr: _Real = 1e-3,
    beta1: _Real = 0.9,
    beta2: _Real = 0.999,
    eps: _Real = 1e-8,
    weight_decay: _Real = 1e-2,
    amsgrad: _Bool = False,
    max_exp_avg_sq: _F32 | None = None,
    param_copy: _BF16 | _F16 | None = None,
    state_scales: _F32 | None = None,
    rounding: _Rounding = "nearest",
    seed: int = 0,
    maximize: _Bool = False,
    grad_scale: _Real = 1.0,
    skip_nonfinite: _Bool = False,
    convention: _Convention = "torch",
) -> bool | None: ...
def nadam_(
    param: _F32,
    grad: _F32,
    exp_avg: _F32,
    exp_avg_sq: _F32,
    *,
    step: int,
    lr: _Real = 2e-3,
    beta1: _Real = 0.9,
    beta2: _Real = 0.999,
    eps: _Real = 1e-8,
    weight_decay: _Real = 0.0,
    momentum_decay: _Real = 4e-3,
    decoupled_weight_decay: _Bool = False,
    maximize: _Bool = False,
    grad_scale: _Real = 1.0,
    skip_nonfinite: _Bool = False,
    convention: _Convention = "torch",
) -> bool | None: ...
def adamax_(
    param: _F32,
    grad: _F32,
    exp_avg: _F32,
    exp_inf: _F32,
    *,
    step: int,
    lr: _Real = 2e-3,
    beta1: _Real = 0.9,
    beta2: _Real = 0.999,
    eps: _Real = 1e-8,
    weight_decay: _Real = 0.0,
    decoupled_weight_decay: _Bool = False,
    maximize: _Bool = False,
    grad_scale: _Real = 1.0,
    skip_nonfinite: _Bool = False,
    convention: _Convention = "torch",
) -> bool | None: ...
def adadelta_(
    param: _F32,
    grad: _F32,
    square_avg: _F32,
    acc_delta: _F32,
    *,
    lr: _Real = 1.0,
    rho: _Real = 0.9,
    eps: _Real = 1e-6,
    weight_decay: _Real = 0.0,
    decoupled_weight_decay: _Bool = False,
    maximize: _Bool = False,
    grad_scale: _Real = 1.0,
    skip_nonfinite: _Bool = False,
    convention: _Convention = "torch",
) -> bool | None: ...
def lion_(
    param: _F32,
    grad: _F32,
    exp_avg: _F32,
    *,
    lr: _Real = 1e-4,
    beta1: _Real = 0.9,
    beta2: _Real = 0.99,
    weight_decay: _Real = 0.0,
    decoupled_weight_decay: _Bool = True,
    maximize: _Bool = False,
    grad_scale: _Real = 1.0,
    skip_nonfinite: _Bool = False,
    convention: _Convention = "torch",
) -> bool | None: ...
class BoundUpdate:
    def __call__(self, step: int | None = None, grad_scale: _Real | None = None) -> bool | None: ...

def bind(kernel: Callable[..., bool | None], *args: Any, **kwargs: Any) -> BoundUpdate: ...
def sum_squares(x: _F32) -> float: ...
def all_finite(x: _F32 | _F16 | _BF16) -> bool: ...
def simd_levels() -> list[str]: ...
def set_simd_level(name: str) -> None: ...
def set_prefetch(on: bool) -> None: ...
def set_stream_min(elements: int) -> None: ...
def build_info() -> dict[str, Any]: ...
def unchanged(objects: list[Any], attr: str, values: list[Any], key: Callable[[Any], Any],
              keys: list[Any]) -> bool: ...

# -- losses (loss value and gradient in one pass) ---------------------------
_Reduction = Literal["mean", "sum", "none"]
_Activation = Literal["linear", "relu", "sigmoid", "tanh", "softmax"]
ACTIVATIONS: tuple[_Activation, ...]
_LossName = Literal["sparse_categorical_crossentropy", "categorical_crossentropy",
                    "binary_crossentropy", "mse", "mean_squared_error"]

def softmax_cross_entropy(
    logits: _F32,
    labels: npt.NDArray[np.integer[Any]] | _F32,
    grad: _F32 | None = None,
    *,
    reduction: _Reduction = "mean",
    label_smoothing: _Real = 0.0,
    ignore_index: int = -100,
) -> float | npt.NDArray[np.float64]: ...
def binary_cross_entropy(
    outputs: _F32,
    targets: _F32,
    grad: _F32 | None = None,
    *,
    from_logits: _Bool = True,
    reduction: _Reduction = "mean",
) -> float | npt.NDArray[np.float64]: ...
def mean_squared_error(
    pred: _F32, target: _F32, grad: _F32 | None = None, *, reduction: _Reduction = "mean"
) -> float | npt.NDArray[np.float64]: ...

# -- layer kernels and the network pass -------------------------------------
def bias_activation_(z: _F32, bias: _F32, activation: _Activation) -> None: ...
def activation_backward_(grad: _F32, out: _F32, activation: _Activation) -> None: ...
def bias_grad(grad: _F32, out: _F32) -> None: ...
def count_correct(
    outputs: _F32,
    targets: npt.NDArray[np.int64] | _F32,
    kind: Literal["sparse", "categorical", "binary"],
    *,
    from_logits: _Bool = False,
) -> int: ...
def gemm_(a: _F32, b: _F32, out: _F32, *, trans_a: _Bool = False,
          trans_b: _Bool = False) -> None: ...

def dropout_mask(rows: int, columns: int, rate: float, seed: int, step: int,
                 layer: int) -> npt.NDArray[np.float32]: ...

class Network:
    def __init__(
        self,
        weights: Sequence[_F32],
        biases: Sequence[_F32],
        weight_grads: Sequence[_F32],
        bias_grads: Sequence[_F32],
        *,
        rows: int,
        activation: _Activation | Sequence[_Activation] = "relu",
        output: _Activation = "softmax",
        loss: _LossName | Any | None = None,
        dropout: Sequence[float] | None = None,
        seed: int = 0,
        metrics: Sequence[int] = (),
    ) -> None: ...
    @property
    def rows(self) -> int: ...
    @property
    def metric_sums(self) -> tuple[float, ...]: ...
    def reseed(self, seed: int) -> None: ...
    def gradients(
        self, x: _F32, y: npt.NDArray[np.int64] | _F32,
        index: npt.NDArray[np.int64] | None = None, total_rows: int | None = None,
    ) -> tuple[float, int]: ...
    def evaluate(self, x: _F32, y: npt.NDArray[np.int64] | _F32) -> tuple[float, int]: ...
    def forward(self, x: _F32, out: _F32) -> None: ...
