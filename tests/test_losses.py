"""Fused loss + gradient kernels against torch, Keras, float64 NumPy and
finite differences."""
import os

import numpy as np
import pytest

import fastopt
import reference
from fastopt import _kernels

RNG = np.random.default_rng(0)


def _logits(n=16, c=10, scale=3.0):
    return (RNG.standard_normal((n, c)) * scale).astype(np.float32)


def _fd_grad(f, x, h=1e-3):
    """Central differences of a float64 function at float64 x."""
    x = x.astype(np.float64)
    g = np.empty_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f(x)
        flat[i] = old - h
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return g


def _ce64(z, labels, smoothing=0.0, ignore=-100):
    """The float64 reference's mean loss over the counted rows."""
    per, _, keep = reference.softmax_cross_entropy(z, labels, smoothing, ignore)
    return per.sum() / keep.sum()


# -- softmax cross-entropy -------------------------------------------------------

torch = None


def _torch():
    global torch
    torch = pytest.importorskip("torch")
    return torch


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("targets", ["sparse", "sparse-ignore", "probabilities"])
def test_softmax_cross_entropy_matches_torch(reduction, smoothing, targets):
    _torch()
    z = _logits()
    if targets == "probabilities":
        labels = RNG.dirichlet(np.ones(10), 16).astype(np.float32)
        tl = torch.from_numpy(labels)
    else:
        labels = RNG.integers(0, 10, 16)
        if targets == "sparse-ignore":
            labels[[1, 5]] = -100
        tl = torch.from_numpy(labels)
    grad = np.empty_like(z)
    ours = fastopt.softmax_cross_entropy(z, labels, grad, reduction=reduction,
                                         label_smoothing=smoothing)
    tz = torch.tensor(z, requires_grad=True)
    theirs = torch.nn.functional.cross_entropy(tz, tl, reduction=reduction,
                                               label_smoothing=smoothing)
    theirs.sum().backward()
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_softmax_cross_entropy_finite_differences():
    z = _logits(5, 4)
    labels = np.array([0, 3, 1, 2, 2])
    grad = np.empty_like(z)
    fastopt.softmax_cross_entropy(z, labels, grad, label_smoothing=0.2)
    fd = _fd_grad(lambda v: _ce64(v, labels, 0.2), z, h=1e-5)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4], [-3e38, 3e38, 0.0]], np.float32)
    grad = np.empty_like(z)
    loss = fastopt.softmax_cross_entropy(z, np.array([0, 1]), grad)
    assert loss == 0.0 and np.isfinite(grad).all()
    loss = fastopt.softmax_cross_entropy(z, np.array([1, 0]), grad)
    assert np.isfinite(loss) and loss > 1e4


def test_softmax_cross_entropy_all_ignored_is_nan():
    z = _logits(3, 4)
    grad = np.ones_like(z)
    loss = fastopt.softmax_cross_entropy(z, np.full(3, -100), grad)
    assert np.isnan(loss) and not grad.any()


def test_softmax_cross_entropy_accumulates_in_double():
    # summed in float32, 4096 equal terms drift by ~1e-4 relative; in double, ~1e-13
    z = np.zeros((1, 2), np.float32)
    one = fastopt.softmax_cross_entropy(z, np.array([0]), reduction="sum")
    assert one == pytest.approx(np.log(2), rel=1e-7)
    many = fastopt.softmax_cross_entropy(np.zeros((4096, 2), np.float32), np.zeros(4096, int),
                                         reduction="sum")
    assert many == pytest.approx(4096 * np.log(2), rel=1e-12)


# blocks of 192 rows at 10 classes, 16 at 120 (17 rounded down), 6 at 300
_SHAPES = [(0, 10), (1, 1), (5, 3), (205, 10), (1000, 10), (37, 120), (7, 300), (3, 2048),
           (4, 3000)]


def _ce_case(shape, targets, seed=0):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal(shape) * 4).astype(np.float32)
    n, c = shape
    if targets == "probabilities":
        return z, rng.dirichlet(np.ones(c), n).astype(np.float32) if n else np.zeros(shape, np.float32)
    labels = rng.integers(0, c, n)
    if targets == "sparse-ignore" and n:
        labels[::3] = -100
    return z, labels


@pytest.mark.parametrize("targets", ["sparse", "sparse-ignore", "probabilities"])
@pytest.mark.parametrize("shape", _SHAPES, ids=[f"{n}x{c}" for n, c in _SHAPES])
def test_softmax_cross_entropy_is_close_to_float64(shape, targets):
    """Loss and gradient against the float64 oracle, to float32 rounding:
    rows are processed in blocks (and long rows on the heap), every size."""
    z, labels = _ce_case(shape, targets)
    grad = np.empty_like(z)
    per = fastopt.softmax_cross_entropy(z, labels, grad, reduction="none", label_smoothing=0.1)
    want, want_grad, _ = reference.softmax_cross_entropy(z, labels, 0.1)
    # e is rounded to float32 (2**-24 relative), so lse is good to ~6e-8
    np.testing.assert_allclose(per, want, rtol=0, atol=2e-7)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=2e-7)


@pytest.mark.parametrize("targets", ["sparse-ignore", "probabilities"])
@pytest.mark.parametrize("shape", [(1000, 10), (7, 300), (4, 3000)], ids=str)
def test_softmax_cross_entropy_simd_levels_and_blocks_are_bit_identical(shape, targets):
    """The same bits for every SIMD level, and for a row whatever block it
    falls in: the batch against the rows one at a time."""
    z, labels = _ce_case(shape, targets, seed=5)
    levels = _kernels.simd_levels()
    results = {}
    try:
        for level in levels:
            _kernels.set_simd_level(level)
            grad = np.empty_like(z)
            per = fastopt.softmax_cross_entropy(z, labels, grad, reduction="none")
            results[level] = per, grad
    finally:
        _kernels.set_simd_level(levels[-1])
    for level in levels[:-1]:
        np.testing.assert_array_equal(results[level][0], results[levels[-1]][0])
        np.testing.assert_array_equal(results[level][1], results[levels[-1]][1])
    per, grad = results[levels[-1]]
    for i in range(0, shape[0], max(1, shape[0] // 17)):
        row_grad = np.empty_like(z[i:i + 1])
        row = fastopt.softmax_cross_entropy(z[i:i + 1], labels[i:i + 1], row_grad,
                                            reduction="none")
        assert row[0] == per[i]
        np.testing.assert_array_equal(row_grad[0], grad[i])


def test_softmax_cross_entropy_nan_stays_in_its_row():
    z, labels = _ce_case((300, 10), "sparse", seed=2)
    z[[0, 17, 299], [3, 0, 9]] = np.nan
    z[40, 2] = np.inf
    grad = np.empty_like(z)
    per = fastopt.softmax_cross_entropy(z, labels, grad, reduction="none")
    bad = np.zeros(300, bool)
    bad[[0, 17, 40, 299]] = True
    assert np.isnan(per[bad]).all() and np.isfinite(per[~bad]).all()
    assert np.isnan(grad[bad]).all() and np.isfinite(grad[~bad]).all()
    # the loss without a gradient output is the same
    assert np.array_equal(per, fastopt.softmax_cross_entropy(z, labels, reduction="none"),
                          equal_nan=True)


@pytest.mark.parametrize("labels,exc,match", [
    (np.array([0, 10, 1, 2]), ValueError, r"labels\[1\] = 10 is out of range for 10 classes"),
    (np.array([0, -1, 1, 2]), ValueError, r"labels\[1\] = -1 is out of range"),
    (np.array([0, 1, 2]), ValueError, r"integer labels must have shape \(4,\)"),
    (np.full((4, 10), np.nan, np.float32), ValueError, "hold nan or inf"),
    (np.ones((4, 9), np.float32), ValueError, r"must have shape \(4, 10\)"),
    (np.array(["a"] * 4), TypeError, "integer class indices or float targets"),
    ([0, 1, 2, 3], TypeError, "labels must be a numpy.ndarray"),
])
def test_softmax_cross_entropy_bad_labels(labels, exc, match):
    grad = np.zeros((4, 10), np.float32)
    with pytest.raises(exc, match=match):
        fastopt.softmax_cross_entropy(_logits(4), labels, grad)
    assert not grad.any()


def test_loss_argument_errors():
    z = _logits(4)
    y = np.zeros(4, int)
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none'"):
        fastopt.softmax_cross_entropy(z, y, reduction="avg")
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        fastopt.softmax_cross_entropy(z, y, ignore_index=1.0)
    with pytest.raises(ValueError, match="ignore_index must be at most"):
        fastopt.softmax_cross_entropy(z, y, ignore_index=2**63)
    with pytest.raises(ValueError, match=r"grad has shape \(4, 9\), expected \(4, 10\)"):
        fastopt.softmax_cross_entropy(z, y, np.zeros((4, 9), np.float32))
    with pytest.raises(ValueError, match="logits and grad share memory"):
        fastopt.softmax_cross_entropy(z, y, z)
    with pytest.raises(ValueError, match="logits must be 2-D"):
        fastopt.softmax_cross_entropy(z[0], y)
    with pytest.raises(TypeError, match="logits must have dtype float32"):
        fastopt.softmax_cross_entropy(z.astype(np.float64), y)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
        fastopt.softmax_cross_entropy(z, y, label_smoothing=1.5)


# -- binary cross-entropy ----------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_from_logits_matches_torch(reduction):
    _torch()
    z = _logits(8, 3, scale=10.0)
    y = RNG.random((8, 3)).astype(np.float32)
    grad = np.empty_like(z)
    ours = fastopt.binary_cross_entropy(z, y, grad, reduction=reduction)
    tz = torch.tensor(z, requires_grad=True)
    theirs = torch.nn.functional.binary_cross_entropy_with_logits(tz, torch.from_numpy(y),
                                                                  reduction=reduction)
    theirs.sum().backward()
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-5, atol=1e-8)


def test_bce_from_logits_extreme_values_are_finite():
    z = np.array([-1e4, -50.0, 0.0, 50.0, 1e4], np.float32)
    y = np.array([1, 0, 1, 1, 0], np.float32)
    grad = np.empty_like(z)
    loss = fastopt.binary_cross_entropy(z, y, grad, reduction="none")
    np.testing.assert_allclose(loss, [1e4, 0, np.log(2), 0, 1e4], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(grad, [-1, 0, -0.5, 0, 1], atol=1e-12)


def test_bce_from_probabilities_matches_keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    _torch()
    # inside, at and beyond the clip range [1e-7, 1 - 1e-7]
    p = np.array([[0.3, 0.99, 1e-9], [0.5, 1.0, 0.0], [1e-7, 0.2, 0.9999999]], np.float32)
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]], np.float32)
    grad = np.empty_like(p)
    ours = fastopt.binary_cross_entropy(p, y, grad, from_logits=False)
    tp = torch.tensor(p, requires_grad=True)
    theirs = keras.losses.binary_crossentropy(torch.from_numpy(y), tp).mean()
    theirs.backward()
    assert ours == pytest.approx(float(theirs.detach()), rel=1e-5)
    np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_bce_finite_differences():
    z = _logits(3, 2)
    y = RNG.random((3, 2)).astype(np.float32)
    grad = np.empty_like(z)
    fastopt.binary_cross_entropy(z, y, grad)

    def f(v):
        return np.mean(np.maximum(v, 0) - v * y + np.log1p(np.exp(-np.abs(v))))

    np.testing.assert_allclose(grad, _fd_grad(f, z, 1e-5), rtol=1e-5, atol=1e-8)


def test_bce_rejects_bad_input():
    z = _logits(2, 2)
    with pytest.raises(ValueError, match="targets hold nan or inf"):
        fastopt.binary_cross_entropy(z, np.full((2, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="outputs hold nan"):
        fastopt.binary_cross_entropy(np.full((2, 2), np.nan, np.float32),
                                     np.zeros((2, 2), np.float32), from_logits=False)
    with pytest.raises(ValueError, match="targets has shape"):
        fastopt.binary_cross_entropy(z, np.zeros((2, 3), np.float32))


# -- mean squared error ---------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_matches_torch(reduction):
    _torch()
    x = _logits(6, 3)
    y = _logits(6, 3)
    grad = np.empty_like(x)
    ours = fastopt.mean_squared_error(x, y, grad, reduction=reduction)
    tx = torch.tensor(x, requires_grad=True)
    theirs = torch.nn.functional.mse_loss(tx, torch.from_numpy(y), reduction=reduction)
    theirs.sum().backward()
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_mse_matches_keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    x, y = _logits(5, 4), _logits(5, 4)
    theirs = keras.ops.convert_to_numpy(keras.losses.mean_squared_error(y, x)).mean()
    assert fastopt.mean_squared_error(x, y) == pytest.approx(float(theirs), rel=1e-6)


def test_mse_rejects_bad_input():
    with pytest.raises(ValueError, match="target holds nan or inf"):
        fastopt.mean_squared_error(np.zeros(3, np.float32), np.array([0, np.inf, 0], np.float32))
    with pytest.raises(ValueError, match="target has shape"):
        fastopt.mean_squared_error(np.zeros(3, np.float32), np.zeros(4, np.float32))


# -- layer kernels ------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh", "softmax"])
def test_bias_activation_and_backward(activation):
    z = _logits(7, 5)
    b = RNG.standard_normal(5).astype(np.float32)
    pre = z.astype(np.float64) + b
    want = {"linear": pre, "relu": np.maximum(pre, 0), "sigmoid": 1 / (1 + np.exp(-pre)),
            "tanh": np.tanh(pre),
            "softmax": np.exp(pre - pre.max(1, keepdims=True))
            / np.exp(pre - pre.max(1, keepdims=True)).sum(1, keepdims=True)}[activation]
    out = z.copy()
    fastopt._kernels.bias_activation_(out, b, activation)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-7)

    upstream = _logits(7, 5)
    g = upstream.copy()
    fastopt._kernels.activation_backward_(g, out, activation)
    a, u = out.astype(np.float64), upstream.astype(np.float64)
    expected = {"linear": u, "relu": u * (a > 0), "sigmoid": u * a * (1 - a),
                "tanh": u * (1 - a * a),
                "softmax": a * (u - (u * a).sum(1, keepdims=True))}[activation]
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-6)


def test_relu_propagates_nan():
    z = np.array([[np.nan, -1.0, 2.0, np.inf]], np.float32)
    fastopt._kernels.bias_activation_(z, np.zeros(4, np.float32), "relu")
    np.testing.assert_array_equal(z, [[np.nan, 0.0, 2.0, np.inf]])


def test_bias_grad_is_column_sums():
    g = _logits(33, 6)
    out = np.empty(6, np.float32)
    fastopt._kernels.bias_grad(g, out)
    np.testing.assert_allclose(out, g.astype(np.float64).sum(0), rtol=1e-6)


def test_bias_grad_sums_each_column_in_row_order():
    # 600 columns: the kernel sums them in sweeps of 256; each column's sum
    # must still be the sequential double sum over the rows, rounded once
    g = _logits(37, 600)
    out = np.empty(600, np.float32)
    fastopt._kernels.bias_grad(g, out)
    acc = np.zeros(600)
    for row in g.astype(np.float64):
        acc += row
    np.testing.assert_array_equal(out, acc.astype(np.float32))


def test_count_correct():
    K = fastopt._kernels
    z = np.array([[0.1, 0.9, 0.0], [2.0, 1.0, 2.0]], np.float32)
    assert K.count_correct(z, np.array([1, 0], np.int64), "sparse") == 2  # tie: first max
    assert K.count_correct(z, np.array([[0, 1, 0], [0, 0, 1]], np.float32), "categorical") == 1
    p = np.array([0.2, 0.6, 0.5], np.float32)
    assert K.count_correct(p, np.array([0, 1, 1], np.float32), "binary") == 2
    with pytest.raises(ValueError, match="kind must be"):
        K.count_correct(z, z, "top5")
    # sparse labels pass the check Network applies to its labels
    unaligned = np.frombuffer(bytearray(17), np.int64, 2, offset=1)
    swapped = np.array([1, 0], ">i8")
    for bad in (unaligned, swapped, np.array([1, 0], np.int32), [1, 0], np.array([1], np.int64)):
        with pytest.raises(TypeError, match=r"targets must be a C-contiguous int64 array of "
                                            r"shape \(2,\)"):
            K.count_correct(z, bad, "sparse")


def test_layer_kernel_errors():
    K = fastopt._kernels
    z = _logits(3, 4)
    with pytest.raises(ValueError, match="activation must be one of"):
        K.bias_activation_(z, np.zeros(4, np.float32), "gelu")
    with pytest.raises(ValueError, match="bias has 3 elements, z has 4 columns"):
        K.bias_activation_(z, np.zeros(3, np.float32), "relu")
    with pytest.raises(ValueError, match="out has shape"):
        K.activation_backward_(z, z[:2].copy(), "relu")


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
@pytest.mark.parametrize("m,k,n", [(1, 784, 32), (32, 20, 7), (5, 1, 3), (0, 3, 2), (3, 0, 2)])
def test_gemm_matches_float64(trans_a, trans_b, m, k, n):
    rng = np.random.default_rng(m * 100 + k + n)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    out = np.full((m, n), 9.0, np.float32)
    fastopt._kernels.gemm_(a, b, out, trans_a=trans_a, trans_b=trans_b)
    want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_gemm_errors():
    K = fastopt._kernels
    a, b = np.ones((3, 4), np.float32), np.ones((5, 2), np.float32)
    with pytest.raises(ValueError, match="inner dimensions differ"):
        K.gemm_(a, b, np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"out has shape \(3, 3\), expected \(3, 5\)"):
        K.gemm_(a, np.ones((4, 5), np.float32), np.empty((3, 3), np.float32))
    with pytest.raises(ValueError, match="a and out share memory"):
        sq = np.ones((4, 4), np.float32)
        K.gemm_(sq, np.ones((4, 4), np.float32), sq)
    with pytest.raises(TypeError, match="b must have dtype float32"):
        K.gemm_(a, np.ones((4, 2)), np.empty((3, 2), np.float32))
    # a dimension a C int cannot hold (an empty array, so it needs no memory)
    # is refused instead of being truncated on its way to BLAS
    huge = np.empty((2**31, 0), np.float32)
    with pytest.raises(ValueError, match=r"a has shape \(2147483648, 0\); BLAS takes"):
        K.gemm_(huge, np.empty((0, 2), np.float32), np.empty((1, 2), np.float32))
