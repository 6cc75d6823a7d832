"""Softmax cross-entropy, forward and gradient: fastopt's fused kernel
against NumPy (stable, in place) and torch's cross_entropy forward+backward."""
import numpy as np
import pytest

import fastopt


def _numpy_ce(z, y, grad, scratch):
    np.max(z, axis=1, keepdims=True, out=scratch)
    np.subtract(z, scratch, out=grad)
    np.exp(grad, out=grad)
    s = grad.sum(axis=1, keepdims=True)
    grad /= s
    loss = float(np.mean(np.log(s[:, 0]) + scratch[:, 0] - z[np.arange(len(z)), y]))
    grad[np.arange(len(z)), y] -= 1
    grad /= len(z)
    return loss


@pytest.mark.parametrize("impl", ["fastopt", "numpy", "torch"])
@pytest.mark.parametrize("shape", [(32, 10), (4096, 10)], ids=["32x10", "4096x10"])
def test_softmax_cross_entropy(benchmark, thread_limit, impl, shape):
    rng = np.random.default_rng(0)
    z = (rng.standard_normal(shape) * 3).astype(np.float32)
    y = rng.integers(0, shape[1], shape[0])
    want = np.empty_like(z)
    want_loss = fastopt.softmax_cross_entropy(z, y, want)
    benchmark.group = f"softmax cross-entropy {shape[0]}x{shape[1]} 1t"
    benchmark.extra_info.update({"impl": impl, "size": z.size, "threads": 1})
    with thread_limit(1):
        if impl == "fastopt":
            grad = np.empty_like(z)
            y64 = y.astype(np.int64)
            run = lambda: fastopt.softmax_cross_entropy(z, y64, grad)  # noqa: E731
            result = lambda: grad  # noqa: E731
        elif impl == "numpy":
            grad, scratch = np.empty_like(z), np.empty((shape[0], 1), np.float32)
            run = lambda: _numpy_ce(z, y, grad, scratch)  # noqa: E731
            result = lambda: grad  # noqa: E731
        else:
            torch = pytest.importorskip("torch")
            tz = torch.from_numpy(z.copy()).requires_grad_()
            ty = torch.from_numpy(y)

            def run():
                tz.grad = None
                loss = torch.nn.functional.cross_entropy(tz, ty)
                loss.backward()
                return loss.item()

            result = lambda: tz.grad.numpy()  # noqa: E731
        assert run() == pytest.approx(want_loss, rel=1e-5)
        np.testing.assert_allclose(result(), want, rtol=1e-4, atol=1e-7)
        benchmark(run)
