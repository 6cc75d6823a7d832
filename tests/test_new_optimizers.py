"""NAdam, Adamax, Adadelta and Lion (issue #19) in both families: 200 steps
against ``torch.optim`` and Keras 3 (torch backend), defaults against the
frameworks' signatures, and names in ``optim.keras.get``.

Each torch optimizer is driven through ``opt.step()`` with a preset
``.grad``; the fastopt class gets the same float32 gradients over a few
parameters of different shapes.  After 200 steps the parameters and every
state buffer must agree to float32 accuracy.  PyTorch has no Lion: the
PyTorch-style ``fastopt.optim.Lion`` is checked against the float64
reference and against Keras' Lion (the same rule).
"""
import inspect

import numpy as np
import pytest

import fastopt
import reference as ref
from fastopt import FlatParameters, optim
from fastopt.optim import keras as fk
from frameworks import keras_on_torch

SHAPES = [(12, 6), (6,), (6, 3), (3,)]
STEPS = 200


def _grads(seed, n):
    rng = np.random.default_rng(seed)
    for _ in range(STEPS):
        yield (rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 1, n)).astype(np.float32)


def _flat(seed=0):
    flat = FlatParameters(SHAPES)
    flat.data[:] = np.random.default_rng(seed).standard_normal(flat.size).astype(np.float32)
    return flat


# -- PyTorch family -----------------------------------------------------------

TORCH_CASES = [
    ("NAdam", {}),
    ("NAdam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.05)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("NAdam", dict(momentum_decay=0.05)),
    ("Adamax", {}),
    ("Adamax", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.05, maximize=True)),
    ("Adadelta", {}),
    ("Adadelta", dict(lr=0.5, rho=0.95, eps=1e-4, weight_decay=0.05, maximize=True)),
]
TORCH_STATE = {"NAdam": ["exp_avg", "exp_avg_sq"], "Adamax": ["exp_avg", "exp_inf"],
               "Adadelta": ["square_avg", "acc_delta"]}


@pytest.mark.parametrize("name,kwargs", TORCH_CASES, ids=lambda v: str(v))
def test_matches_torch_over_200_steps(name, kwargs):
    torch = pytest.importorskip("torch")
    flat = _flat()
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in flat.params]
    theirs = getattr(torch.optim, name)(tparams, **kwargs)
    ours = getattr(optim, name)(flat, **kwargs)
    for g in _grads(1, flat.size):
        flat.grad[:] = g
        for tp, view in zip(tparams, flat.grads):
            tp.grad = torch.from_numpy(view.copy())
        theirs.step()
        ours.step()
    state = ours.state_dict()["state"]
    for i, tp in enumerate(tparams):
        np.testing.assert_allclose(flat.params[i], tp.detach().numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=f"param {i}")
        for key in TORCH_STATE[name]:
            want = theirs.state[tp][key].numpy().reshape(-1)
            np.testing.assert_allclose(state[i][key], want, rtol=1e-5,
                                       atol=1e-5 * np.abs(want).max(), err_msg=f"{key} {i}")


@pytest.mark.parametrize("name,kwargs", TORCH_CASES, ids=lambda v: str(v))
def test_functional_kernel_matches_torch_over_200_steps(name, kwargs):
    """The kernels themselves, as tests/test_torch_parity.py checks the others."""
    torch = pytest.importorskip("torch")
    n = 1031
    p = np.random.default_rng(2).standard_normal(n).astype(np.float32)
    tp = torch.nn.Parameter(torch.from_numpy(p.copy()))
    theirs = getattr(torch.optim, name)([tp], **kwargs)
    kw = dict(kwargs)
    if "betas" in kw:
        kw["beta1"], kw["beta2"] = kw.pop("betas")
    kernel = getattr(fastopt, name.lower() + "_")
    state = [np.zeros(n, np.float32) for _ in TORCH_STATE[name]]
    for step, g in enumerate(_grads(3, n), 1):
        tp.grad = torch.from_numpy(g.copy())
        theirs.step()
        kernel(p, g, *state, **kw, **({} if name == "Adadelta" else {"step": step}))
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_torch_style_lion_matches_reference_over_200_steps():
    flat = _flat()
    ours = optim.Lion(flat, lr=1e-3, betas=(0.85, 0.98), weight_decay=0.1)
    p, m = flat.data.astype(np.float64), np.zeros(flat.size)
    for g in _grads(4, flat.size):
        flat.grad[:] = g
        ours.step()
        p, m = ref.lion(p, g.astype(np.float64), m, lr=1e-3, beta1=0.85, beta2=0.98,
                        weight_decay=0.1)
    # 200 float32 roundings of p +- lr: the Keras tests' tolerance
    np.testing.assert_allclose(flat.data, p, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", ["NAdam", "Adamax", "Adadelta"])
def test_defaults_match_torch(name):
    torch = pytest.importorskip("torch")
    theirs = inspect.signature(getattr(torch.optim, name)).parameters
    ours = inspect.signature(getattr(optim, name)).parameters
    for key, param in ours.items():
        if key != "params":
            assert key in theirs and theirs[key].default == param.default, key


# -- Keras family -------------------------------------------------------------

KERAS_CASES = [
    ("Nadam", {}),
    ("Nadam", dict(learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-4,
                   weight_decay=0.05)),
    ("Adamax", {}),
    ("Adamax", dict(learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-3,
                    weight_decay=0.05)),
    ("Adadelta", {}),
    ("Adadelta", dict(learning_rate=0.5, rho=0.9, epsilon=1e-4, weight_decay=0.05)),
    ("Lion", {}),
    ("Lion", dict(learning_rate=0.01, beta_1=0.8, beta_2=0.95, weight_decay=0.05)),
    ("Nadam", dict(clipnorm=0.5)),
    ("Lion", dict(global_clipnorm=1.0)),
]


@pytest.mark.parametrize("name,kwargs", KERAS_CASES, ids=lambda v: str(v))
def test_matches_keras_over_200_steps(name, kwargs):
    keras = keras_on_torch()
    flat = _flat()
    variables = [keras.Variable(p.copy()) for p in flat.params]
    theirs = getattr(keras.optimizers, name)(**kwargs)
    ours = fk.get(name, **kwargs)
    ours.build(flat)
    for g in _grads(1, flat.size):
        flat.grad[:] = g
        theirs.apply_gradients(zip([keras.ops.convert_to_tensor(v.copy()) for v in flat.grads],
                                   variables))
        ours.step()
    assert ours.iterations == int(keras.ops.convert_to_numpy(theirs.iterations)) == STEPS
    for ours_p, var in zip(flat.params, variables):
        np.testing.assert_allclose(ours_p, keras.ops.convert_to_numpy(var), rtol=2e-5,
                                   atol=2e-6)


@pytest.mark.parametrize("name", ["Nadam", "Adamax", "Adadelta", "Lion"])
def test_defaults_match_keras(name):
    keras = keras_on_torch()
    theirs = inspect.signature(getattr(keras.optimizers, name)).parameters
    ours = inspect.signature(getattr(fk, name)).parameters
    for key, param in ours.items():
        if key not in ("learning_rate", "lr", "decay"):
            assert theirs[key].default == param.default, key
    assert getattr(fk, name)().learning_rate == pytest.approx(
        float(getattr(keras.optimizers, name)().learning_rate))


@pytest.mark.parametrize("name,cls", [("nadam", fk.Nadam), ("Adamax", fk.Adamax),
                                      ("ADADELTA", fk.Adadelta), ("lion", fk.Lion)])
def test_get_by_name(name, cls):
    assert type(fk.get(name)) is cls
    assert name.lower() in fk.names()


def test_bad_hyperparameters_are_rejected_before_anything_is_written():
    flat = _flat()
    before = flat.data.copy()
    with pytest.raises(ValueError, match="rho"):
        fk.Adadelta(rho=1.5)
    with pytest.raises(ValueError, match="momentum_decay"):
        optim.NAdam(flat, momentum_decay=-1.0)
    with pytest.raises(TypeError, match="beta_1|beta1"):
        fk.Lion(beta_1="0.9")
    opt = optim.Adamax(flat)
    opt.param_groups[0]["eps"] = -1.0
    flat.grad[:] = 1.0
    with pytest.raises(ValueError, match="eps"):
        opt.step()
    np.testing.assert_array_equal(flat.data, before)


# -- MNIST ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist():
    from fastopt.datasets import load_mnist

    (x, y), (xt, yt) = load_mnist()
    return (x[:6000] / 255.0, y[:6000]), (xt / 255.0, yt)


@pytest.mark.parametrize("optimizer,minimum", [
    ("nadam", 0.85),
    ("adamax", 0.78),
    (("adadelta", dict(learning_rate=1.0)), 0.82),  # Keras' 0.001 barely moves in one epoch
    ("lion", 0.85),
], ids=["nadam", "adamax", "adadelta", "lion"])
def test_one_epoch_on_a_subset_reaches_a_sensible_accuracy(mnist, optimizer, minimum):
    """The seed model, compiled with the optimizer's name, after one epoch
    on 6,000 training images; accuracy on the 10,000 test images."""
    from fastopt import MLP

    (x, y), (xt, yt) = mnist
    if isinstance(optimizer, tuple):
        optimizer = fk.get(optimizer[0], **optimizer[1])
    model = MLP([784, 32, 64, 128, 256, 10], seed=0)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert model.evaluate(xt, yt)[1] >= minimum


@pytest.mark.parametrize("make", [lambda: fk.Nadam(), lambda: fk.Adamax(), lambda: fk.Adadelta(),
                                  lambda: fk.Lion(), lambda: optim.NAdam, lambda: optim.Adamax,
                                  lambda: optim.Adadelta, lambda: optim.Lion],
                         ids=["keras.Nadam", "keras.Adamax", "keras.Adadelta", "keras.Lion",
                              "NAdam", "Adamax", "Adadelta", "Lion"])
def test_state_dict_round_trip_continues_identically(make):
    def build(flat):
        opt = make()
        if isinstance(opt, type):
            return opt(flat)
        opt.build(flat)
        return opt

    a_flat, b_flat = _flat(), _flat()
    a = build(a_flat)
    grads = list(_grads(5, a_flat.size))[:6]
    for g in grads[:3]:
        a_flat.grad[:] = g
        a.step()
    b = build(b_flat)
    b_flat.data[:] = a_flat.data
    b.load_state_dict(a.state_dict())
    for g in grads[3:]:
        a_flat.grad[:] = g
        b_flat.grad[:] = g
        a.step()
        b.step()
    np.testing.assert_array_equal(a_flat.data, b_flat.data)


@pytest.mark.parametrize("convention", ["torch", "keras"])
def test_nadam_product_does_not_depend_on_the_call_history(convention):
    """prod(t) is continued from the previous step when it can be; the
    bits are those of a computation from step 1."""
    n = 64
    rng = np.random.default_rng(6)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(1000)]  # past mu(t) == beta1
    results = []
    for interleave in (False, True):
        p, m, v = np.ones(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
        for step, g in enumerate(grads, 1):
            if interleave:  # another beta1 in between: computed from scratch
                e = np.zeros(1, np.float32)
                fastopt.nadam_(e, e.copy(), e.copy(), e.copy(), step=step, beta1=0.5)
            fastopt.nadam_(p, g, m, v, step=step, momentum_decay=5.0, convention=convention)
        results.append(p)
    np.testing.assert_array_equal(results[0], results[1])
