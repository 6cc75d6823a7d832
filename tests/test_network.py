"""fastopt._kernels.Network: the MLP's whole forward and backward pass in C.

Its results must be the bits of the checked kernels called one by one (the
composition below, which is how MLP trained before Network existed); the
float64 reference for those kernels and for the model's gradient is in
test_losses.py and test_model.py.
"""
import numpy as np
import pytest

from fastopt import MLP
from fastopt import _kernels as K
from reference import MODEL_CASES

LOSSES = {  # loss: (output activation, whether the loss takes the logits)
    "sparse_categorical_crossentropy": ("softmax", True),
    "categorical_crossentropy": ("softmax", True),
    "binary_crossentropy": ("sigmoid", True),
    "mse": (None, False),
}
CASES = MODEL_CASES + [("relu", "relu", "mse"), ("relu", "tanh", "mse")]
SIZES = [13, 300, 17, 5]  # 300 columns: bias_grad sums in sweeps of 256


def _model(activation, output, loss, sizes=SIZES, seed=3):
    model = MLP(sizes, activation=activation, output=output, seed=seed)
    rng = np.random.default_rng(seed)
    for b in model.biases:  # non-zero biases, so a bias mix-up cannot hide
        b[...] = rng.uniform(-0.5, 0.5, b.shape)
    model.compile("sgd", loss=loss)
    return model


def _targets(loss, n, classes, seed=4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    return {"sparse_categorical_crossentropy": labels.astype(np.int64),
            "categorical_crossentropy": np.eye(classes, dtype=np.float32)[labels],
            "binary_crossentropy": (rng.random((n, classes)) > 0.5).astype(np.float32),
            "mse": rng.standard_normal((n, classes)).astype(np.float32)}[loss]


def _composed(model, x, y, backward):
    """Loss, correct count and (with ``backward``) weight and bias gradients,
    from the public kernels called one at a time."""
    fused = LOSSES[model.loss][1]
    last = len(model.weights) - 1
    acts = _composed_forward(model, x, "linear" if fused else model.output)
    out = acts[-1]
    classes = out.shape[1]
    if model.loss == "sparse_categorical_crossentropy":
        correct = K.count_correct(out, y, "sparse")
    elif model.loss == "binary_crossentropy" or classes == 1:
        correct = K.count_correct(out, y, "binary", from_logits=fused)
    else:
        correct = K.count_correct(out, y, "categorical")
    grad = np.empty_like(out) if backward else None
    reduction = "mean" if backward else "sum"
    if model.loss == "mse":
        loss = K.mean_squared_error(out, y, grad, reduction=reduction)
        if backward:
            K.activation_backward_(grad, out, model.output)
    elif model.loss == "binary_crossentropy":
        loss = K.binary_cross_entropy(out, y, grad, reduction=reduction)
    else:
        loss = K.softmax_cross_entropy(out, y, grad, reduction=reduction)
    if not backward:
        return loss, correct, None, None
    dWs, dbs = [None] * len(acts), [None] * len(acts)
    dz = grad
    for k in range(last, -1, -1):
        W = model.weights[k]
        dWs[k] = np.empty_like(W)
        dbs[k] = np.empty(W.shape[1], np.float32)
        K.gemm_(x if k == 0 else acts[k - 1], dz, dWs[k], trans_a=True)
        K.bias_grad(dz, dbs[k])
        if k:
            d_prev = np.empty_like(acts[k - 1])
            K.gemm_(dz, W, d_prev, trans_b=True)
            K.activation_backward_(d_prev, acts[k - 1], model.activation)
            dz = d_prev
    return loss, correct, dWs, dbs


@pytest.mark.parametrize("activation,output,loss", CASES)
@pytest.mark.parametrize("n", [1, 7, 32])
def test_a_pass_gives_the_bits_of_the_kernels_called_one_by_one(activation, output, loss, n):
    model = _model(activation, output, loss)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, SIZES[0])).astype(np.float32)
    y = _targets(loss, n, SIZES[-1])
    net = model._network(32)

    got_loss, got_correct = net.gradients(x, y)
    want_loss, want_correct, dWs, dbs = _composed(model, x, y, backward=True)
    assert got_loss == want_loss
    assert got_correct == want_correct
    for k in range(len(dWs)):
        np.testing.assert_array_equal(model._weight_grads[k], dWs[k])
        np.testing.assert_array_equal(model._bias_grads[k], dbs[k])

    assert net.evaluate(x, y) == _composed(model, x, y, backward=False)[:2]

    out = np.empty((n, SIZES[-1]), np.float32)
    net.forward(x, out)
    np.testing.assert_array_equal(out, _composed_outputs(model, x))


def _composed_forward(model, x, last_activation):
    """Every layer's activations, the hidden ones with the model's
    activation and the last with ``last_activation``."""
    acts, a = [], x
    for k, (W, b) in enumerate(zip(model.weights, model.biases)):
        z = np.empty((len(a), W.shape[1]), np.float32)
        K.gemm_(a, W, z)
        K.bias_activation_(z, b, model.activation if k < len(model.weights) - 1
                           else last_activation)
        acts.append(z)
        a = z
    return acts


def _composed_outputs(model, x):
    """What predict returns: every layer with its activation, the output's last."""
    return _composed_forward(model, x, model.output)[-1]


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "mse"])
def test_index_gathers_the_same_rows_as_fancy_indexing(loss):
    output = "softmax"
    model = _model("relu", output, loss)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((50, SIZES[0])).astype(np.float32)
    y = _targets(loss, 50, SIZES[-1])
    idx = rng.permutation(50)[:9]
    net = model._network(16)
    got = net.gradients(x, y, idx)
    grads = model.params.grad.copy()
    want = net.gradients(np.ascontiguousarray(x[idx]), np.ascontiguousarray(y[idx]))
    assert got == want
    np.testing.assert_array_equal(grads, model.params.grad)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_total_rows_writes_the_batchs_share_of_a_larger_mean(loss):
    """gradients(..., total_rows=T) over n rows: the gradient of the loss
    summed over the n rows, divided by T (x the terms per sample); the loss
    returned is still the mean over the n rows.  A factor n / T that is a
    power of two is exact, so those bits are the default call's, scaled."""
    output, _ = LOSSES[loss]
    model = _model("relu", output or "linear", loss)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((6, SIZES[0])).astype(np.float32)
    y = _targets(loss, 6, SIZES[-1])
    net = model._network(8)
    mean_loss = net.gradients(x, y)
    mean_grad = model.params.grad.copy()
    for total in (6, 12, 24, 7, 100):
        model.params.grad[...] = np.nan
        assert net.gradients(x, y, None, total) == mean_loss
        want = mean_grad.astype(np.float64) * 6 / total
        if total in (6, 12, 24):
            np.testing.assert_array_equal(model.params.grad, want.astype(np.float32))
        else:
            # the loss gradient rounds differently; sums that cancel show it
            np.testing.assert_allclose(model.params.grad, want, rtol=1e-5,
                                       atol=1e-6 * np.abs(want).max())


def test_every_layer_is_checked_at_construction():
    model = _model("relu", "softmax", "sparse_categorical_crossentropy")
    args = [list(model.weights), list(model.biases), list(model._weight_grads),
            list(model._bias_grads)]

    def build(*, rows=4, **kw):
        return K.Network(*args, rows=rows, **kw)

    assert build().rows == 4
    for bad_rows, exc in [(0, ValueError), (2.0, TypeError), (True, TypeError), (None, TypeError),
                          (2**31, ValueError), (2**70, ValueError)]:
        with pytest.raises(exc, match="rows"):
            build(rows=bad_rows)
    with pytest.raises(ValueError, match="activation must be one of"):
        build(activation="gelu")
    with pytest.raises(ValueError, match="loss must be None or one of"):
        build(loss="hinge")
    with pytest.raises(ValueError, match="needs output='softmax'"):
        build(output="linear", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="needs output='sigmoid'"):
        build(output="softmax", loss="binary_crossentropy")
    for code, exc in (("accuracy", TypeError), (999, ValueError)):
        with pytest.raises(exc, match=r"metrics\[0\] must be one of"):
            build(loss="sparse_categorical_crossentropy", metrics=[code])

    def swapped(position, k, value):
        new = [list(a) for a in args]
        new[position][k] = value
        return new

    W1 = model.weights[1]
    cases = [
        (swapped(0, 1, W1.astype(np.float64)), TypeError, r"weights\[1\] must have dtype float32"),
        (swapped(0, 1, np.asfortranarray(W1)), ValueError, r"weights\[1\] must be C-contiguous"),
        (swapped(0, 1, W1.ravel()), ValueError, r"weights\[1\] must be 2-D"),
        (swapped(0, 1, np.zeros((7, 17), np.float32)), ValueError, r"weights\[1\] has 7 rows"),
        (swapped(1, 2, np.zeros(4, np.float32)), ValueError, r"biases\[2\] and bias_grads\[2\]"),
        (swapped(2, 0, np.zeros((13, 301), np.float32)), ValueError,
         r"weight_grads\[0\] has shape"),
        (swapped(3, 0, None), TypeError, r"bias_grads\[0\] must be a float32"),
        (swapped(2, 1, model.params.grad[:300 * 17].reshape(300, 17)), ValueError,
         r"weight_grads\[0\] and weight_grads\[1\] share memory"),
        (swapped(2, 1, model.weights[1]), ValueError,
         r"weight_grads\[1\] and weights\[1\] share memory"),
    ]
    ro = model._bias_grads[2].copy()
    ro.flags.writeable = False
    cases.append((swapped(3, 2, ro), ValueError, r"bias_grads\[2\] is read-only"))
    for new, exc, match in cases:
        with pytest.raises(exc, match=match):
            K.Network(*new, rows=4)
    with pytest.raises(ValueError, match="bias_grads has 2 arrays"):
        K.Network(*args[:3], args[3][:2], rows=4)
    with pytest.raises(TypeError, match="weights must be a list or tuple"):
        K.Network(model.weights[0], *args[1:], rows=4)
    with pytest.raises(ValueError, match="at least one layer"):
        K.Network([], [], [], [], rows=4)


def test_every_call_is_checked_before_anything_is_written():
    model = _model("relu", "softmax", "sparse_categorical_crossentropy")
    net = model._network(8)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, SIZES[0])).astype(np.float32)
    y = _targets("sparse_categorical_crossentropy", 8, SIZES[-1])
    model.params.grad[...] = 7.0
    cases = [
        ((np.ascontiguousarray(x[:, :5]), y), ValueError, "x must have 13 columns"),
        ((x.astype(np.float64), y), TypeError, "x must have dtype float32"),
        ((x, y.astype(np.int32)), TypeError, "y must be a C-contiguous native int64"),
        ((x, y[:5]), ValueError, "y has 5 labels, x has 8"),
        ((x, np.where(y == y[3], 5, y)), ValueError, r"label 5 \(batch row 3\) is not a class"),
        ((x, np.where(y == y[3], -1, y)), ValueError, "is not a class label"),
        ((np.concatenate([x, x]), np.concatenate([y, y])), ValueError,
         "more than this Network's rows=8"),
        ((x, y, np.array([0, 8], np.int64)), ValueError, r"index\[1\] = 8 is out of range"),
        ((x, y, np.array([-1], np.int64)), ValueError, r"index\[0\] = -1 is out of range"),
        ((x, y, np.array([0, 1], np.int32)), TypeError, "index must be a 1-D C-contiguous"),
        ((x, y, np.zeros(9, np.int64)), ValueError, "index selects 9 samples"),
        ((x, y, np.zeros(0, np.int64)), ValueError, "the batch holds no samples"),
        ((x[:0], y[:0]), ValueError, "the batch holds no samples"),
        ((model.params.grad[:8 * 13].reshape(8, 13), y), ValueError,
         r"x shares memory with weight_grads\[0\]"),
        ((x, y.astype(np.float32)), TypeError, "y must be a C-contiguous native int64 array of "
         r"labels, got float32 of shape \(8,\)"),
        ((x, list(y)), TypeError, "got an object of type list"),
        ((x, y, None, 7), ValueError,
         r"total_rows must be >= 8 \(the rows of the whole batch.*\), got 7"),
        ((x, y, None, 2**70), ValueError, "total_rows must be at most"),
        ((x, y, np.arange(3), 2), ValueError, r"total_rows must be >= 3 \("),
        ((x, y, None, 16.0), TypeError, "total_rows must be an int"),
        ((x, y, None, True), TypeError, "total_rows must be an int"),
    ]
    for args, exc, match in cases:
        with pytest.raises(exc, match=match):
            net.gradients(*args)
    assert (model.params.grad == 7.0).all()
    for seed, exc in ((2**64, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(exc, match="seed must be"):
            net.reseed(seed)

    mse = _model("relu", "linear", "mse")._network(8)
    t = _targets("mse", 8, SIZES[-1])
    t[2, 1] = np.nan
    with pytest.raises(ValueError, match="holds nan or inf"):
        mse.gradients(x, t)
    with pytest.raises(ValueError, match=r"y must have shape \(8, 5\)"):
        mse.gradients(x, np.ascontiguousarray(t[:, :4]))
    with pytest.raises(ValueError, match=r"y must be C-contiguous \(the kernels read it"):
        mse.gradients(x, t[:, :4])

    with pytest.raises(TypeError, match="no loss"):
        model._network(8, loss=False).gradients(x, y)
    with pytest.raises(ValueError, match=r"out must have shape \(8, 5\)"):
        net.forward(x, np.empty((8, 4), np.float32))
    with pytest.raises(ValueError, match=r"out shares memory with weights\[2\]"):
        net.forward(x[:4], model.weights[2][:4])


def test_a_bound_array_changed_since_binding_is_refused():
    model = _model("relu", "softmax", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, SIZES[0])).astype(np.float32)
    y = _targets("sparse_categorical_crossentropy", 4, SIZES[-1])
    grads = [g.copy() for g in model._bias_grads]
    net = K.Network(model.weights, model.biases, model._weight_grads, grads, rows=4,
                    loss="sparse_categorical_crossentropy")
    net.gradients(x, y)
    grads[1].flags.writeable = False
    with pytest.raises(ValueError, match="arrays of layer 1 are no longer"):
        net.gradients(x, y)
    grads[1].flags.writeable = True
    grads[2].dtype = ">f4"  # the same memory, read in the other byte order
    with pytest.raises(ValueError, match="arrays of layer 2 are no longer"):
        net.gradients(x, y)


def test_an_unfinished_network_refuses_calls():
    net = K.Network.__new__(K.Network)
    with pytest.raises(TypeError, match="not initialised"):
        net.forward(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32))
    assert repr(net) == "<Network (uninitialised)>"
    model = _model("relu", "softmax", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError):
        net.__init__(model.weights, [], [], [], rows=1)
    with pytest.raises(TypeError, match="not initialised"):
        net.gradients(np.zeros((1, 13), np.float32), np.zeros(1, np.int64))
    good = model._network(2)
    assert repr(good) == "<Network [13, 300, 17, 5] for up to 2 samples>"
    with pytest.raises(TypeError, match="initialised once"):
        good.__init__(model.weights, model.biases, model._weight_grads, model._bias_grads,
                      rows=2)


# -- any architecture ------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LOSS_OUTPUTS = sorted({(output, loss) for _, output, loss in CASES})


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=2, max_size=5),
       activation=st.sampled_from(["relu", "tanh", "sigmoid", "linear"]),
       output_loss=st.sampled_from(LOSS_OUTPUTS),
       rows=st.integers(1, 40), data=st.data())
def test_any_architecture_and_batch_gives_the_composed_bits(sizes, activation, output_loss,
                                                             rows, data):
    output, loss = output_loss
    if sizes[-1] == 1 and output == "softmax":  # issue #19: an error, never a constant 1.0
        with pytest.raises(ValueError, match="softmax over one unit"):
            _model(activation, output, loss, sizes=sizes)
        return
    model = _model(activation, output, loss, sizes=sizes, seed=data.draw(st.integers(0, 99)))
    total = data.draw(st.integers(1, 60))
    rng = np.random.default_rng(total)
    x = rng.standard_normal((total, sizes[0])).astype(np.float32)
    y = _targets(loss, total, sizes[-1], seed=total)
    n = data.draw(st.integers(1, min(rows, total)))
    if data.draw(st.booleans()):  # gather rows of a larger set
        idx = np.asarray(data.draw(st.lists(st.integers(0, total - 1), min_size=n,
                                            max_size=n)), np.int64)
        xb, yb = np.ascontiguousarray(x[idx]), np.ascontiguousarray(y[idx])
        args = (x, y, idx)
    else:
        xb, yb = x[:n], y[:n]
        args = (xb, yb)
    net = model._network(rows)
    got = net.gradients(*args)
    want_loss, want_correct, dWs, dbs = _composed(model, xb, yb, backward=True)
    assert got == (want_loss, want_correct) or (np.isnan(got[0]) and np.isnan(want_loss))
    for k in range(len(dWs)):
        np.testing.assert_array_equal(model._weight_grads[k], dWs[k])
        np.testing.assert_array_equal(model._bias_grads[k], dbs[k])
    out = np.empty((n, sizes[-1]), np.float32)
    net.forward(xb, out)
    np.testing.assert_array_equal(out, _composed_outputs(model, xb))


# -- one policy ---------------------------------------------------------------------

def test_one_activation_list_for_the_kernels_the_network_and_the_model():
    z = np.zeros((2, 3), np.float32)
    for act in K.ACTIVATIONS:
        K.bias_activation_(z, np.zeros(3, np.float32), act)
        model = MLP([4, 3, 2], activation=act, output=act, seed=0)  # softmax hidden too
        model._network(2)
    for bad in ("gelu", "Softmax"):
        with pytest.raises(ValueError, match="activation must be one of"):
            MLP([4, 3, 2], activation=bad)
        with pytest.raises(ValueError, match="activation must be one of"):
            K.bias_activation_(z, np.zeros(3, np.float32), bad)


def test_every_name_of_the_loss_table_reaches_the_network():
    from fastopt import _objectives as losses

    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, SIZES[0])).astype(np.float32)
    for name, policy in losses.LOSSES.items():
        output = policy.output or "linear"
        model = _model("relu", output, name)
        assert model.loss == policy.name
        y = _targets(policy.name, 6, SIZES[-1])
        want = _model("relu", output, policy.name)._network(8).gradients(x, y)
        assert model._network(8).gradients(x, y) == want
    model = _model("relu", "softmax", "mse")
    with pytest.raises(TypeError, match="loss must be None or one of"):
        K.Network(model.weights, model.biases, model._weight_grads, model._bias_grads, rows=1,
                  loss=3)
