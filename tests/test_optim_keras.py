"""The Keras-compatible optimizers against Keras 3 on its torch backend."""
import numpy as np
import pytest

from fastopt import FlatParameters, optim, schedules
from fastopt.optim import keras as fk
from frameworks import keras_on_torch

SHAPES = [(12, 6), (6,), (6, 3), (3,)]
STEPS = 120
_keras = keras_on_torch


def _flat(seed=0):
    flat = FlatParameters(SHAPES)
    flat.data[:] = np.random.default_rng(seed).standard_normal(flat.size).astype(np.float32)
    return flat


def _run_both(make_ours, make_theirs, steps=STEPS, seed=1, grad_fn=None):
    keras = _keras()
    flat = _flat(seed)
    variables = [keras.Variable(p.copy()) for p in flat.params]
    ours = make_ours()
    ours.build(flat)
    theirs = make_theirs(keras)
    rng = np.random.default_rng(seed + 100)
    for step in range(steps):
        g = (rng.standard_normal(flat.size) * 10.0 ** rng.uniform(-2, 1, flat.size))
        if grad_fn is not None:
            g = grad_fn(step, g)
        flat.grad[:] = g.astype(np.float32)
        grads = [keras.ops.convert_to_tensor(v.copy()) for v in flat.grads]
        theirs.apply_gradients(zip(grads, variables))
        ours.step()
    assert ours.iterations == int(keras.ops.convert_to_numpy(theirs.iterations)) == steps
    for ours_p, var in zip(flat.params, variables):
        np.testing.assert_allclose(ours_p, keras.ops.convert_to_numpy(var), rtol=2e-5, atol=2e-6)
    return flat


CASES = {
    "sgd": ({}, {}),
    "sgd-momentum": (dict(momentum=0.9), dict(momentum=0.9)),
    "sgd-nesterov-wd": (dict(learning_rate=0.02, momentum=0.8, nesterov=True, weight_decay=0.01),
                        dict(learning_rate=0.02, momentum=0.8, nesterov=True, weight_decay=0.01)),
    "adam": ({}, {}),
    "adam-amsgrad-wd": (dict(learning_rate=0.01, amsgrad=True, weight_decay=0.05),
                        dict(learning_rate=0.01, amsgrad=True, weight_decay=0.05)),
    "adam-eps": (dict(beta_1=0.8, beta_2=0.99, epsilon=1e-3),
                 dict(beta_1=0.8, beta_2=0.99, epsilon=1e-3)),
    "adamw": ({}, {}),
    "rmsprop": ({}, {}),
    "rmsprop-centered-momentum": (dict(rho=0.8, momentum=0.5, centered=True, epsilon=1e-4),
                                  dict(rho=0.8, momentum=0.5, centered=True, epsilon=1e-4)),
    "adagrad": (dict(learning_rate=0.05), dict(learning_rate=0.05)),
    "adagrad-init-wd": (dict(initial_accumulator_value=0.5, epsilon=1e-3, weight_decay=0.01),
                        dict(initial_accumulator_value=0.5, epsilon=1e-3, weight_decay=0.01)),
    "adam-clipnorm": (dict(clipnorm=0.5), dict(clipnorm=0.5)),
    "sgd-clipvalue": (dict(clipvalue=0.3), dict(clipvalue=0.3)),
    "rmsprop-global-clipnorm": (dict(global_clipnorm=1.0), dict(global_clipnorm=1.0)),
}
CLASSES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop",
           "adagrad": "Adagrad"}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_keras(case):
    ours_kw, theirs_kw = CASES[case]
    cls = CLASSES[case.split("-")[0]]
    _run_both(lambda: getattr(fk, cls)(**ours_kw),
              lambda keras: getattr(keras.optimizers, cls)(**theirs_kw))


def test_schedule_as_learning_rate_matches_keras():
    _run_both(lambda: fk.Adam(learning_rate=schedules.ExponentialDecay(0.01, 10, 0.5)),
              lambda keras: keras.optimizers.Adam(
                  learning_rate=keras.optimizers.schedules.ExponentialDecay(0.01, 10, 0.5)))


def test_legacy_lr_and_decay_follow_keras2():
    """Keras 2's lr / (1 + decay * iterations) is Keras 3's InverseTimeDecay(lr, 1, decay)."""
    _run_both(lambda: fk.SGD(lr=0.05, momentum=0.9, decay=0.01),
              lambda keras: keras.optimizers.SGD(
                  learning_rate=keras.optimizers.schedules.InverseTimeDecay(0.05, 1, 0.01),
                  momentum=0.9))


def test_legacy_lr_decay_formula():
    opt = fk.Adam(lr=0.001, decay=0.5)
    opt.build(_flat())
    assert opt.learning_rate == 0.001
    opt.step()
    opt.step()
    assert opt.learning_rate == pytest.approx(0.001 / (1 + 0.5 * 2))


def test_seed_notebook_spellings():
    """The argument lists the learning material uses still construct."""
    fk.Adam(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=None, decay=0.0, amsgrad=False)
    fk.SGD(lr=0.01, momentum=0.9, nesterov=False, decay=0.0)
    fk.RMSprop(lr=0.001, rho=0.9, epsilon=1e-06)
    fk.Adagrad(lr=0.01, epsilon=1e-6)


def test_defaults_match_keras():
    import inspect

    keras = _keras()
    for name in CLASSES.values():
        ours = inspect.signature(getattr(fk, name)).parameters
        theirs = inspect.signature(getattr(keras.optimizers, name)).parameters
        for arg, p in ours.items():
            if arg in theirs and arg not in ("learning_rate", "name", "weight_decay"):
                assert p.default == theirs[arg].default, (name, arg)
        made = getattr(fk, name)()
        assert made.learning_rate == pytest.approx(
            float(getattr(keras.optimizers, name)().learning_rate))
    assert fk.AdamW().param_groups == [] and fk.AdamW().get_config()["weight_decay"] == 0.004


def test_get_by_name():
    for name, cls in [("sgd", fk.SGD), ("Adam", fk.Adam), ("adamw", fk.AdamW),
                      ("RMSprop", fk.RMSprop), ("adagrad", fk.Adagrad)]:
        assert type(fk.get(name)) is cls
    instance = fk.Adam()
    assert fk.get(instance) is instance
    with pytest.raises(ValueError, match=r"unknown optimizer 'ftrl'; expected one of"):
        fk.get("ftrl")
    with pytest.raises(TypeError, match="optimizer must be a name"):
        fk.get(3)


def test_apply_gradients():
    keras = _keras()
    ours_vars = [np.ones((2, 3), np.float32), np.zeros(3, np.float32)]
    theirs_vars = [keras.Variable(v.copy()) for v in ours_vars]
    ours, theirs = fk.Adam(learning_rate=0.1), keras.optimizers.Adam(learning_rate=0.1)
    for step in range(5):
        grads = [np.full((2, 3), step + 1.0, np.float32), np.arange(3, dtype=np.float32)]
        ours.apply_gradients(zip(grads, ours_vars))
        theirs.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in grads],
                                   theirs_vars))
    for a, b in zip(ours_vars, theirs_vars):
        np.testing.assert_allclose(a, keras.ops.convert_to_numpy(b), rtol=1e-5)
    with pytest.raises(ValueError, match="different variables"):
        ours.apply_gradients(zip(grads, [v.copy() for v in ours_vars]))


def test_non_finite_global_norm_is_reported():
    flat = _flat()
    opt = fk.Adam(global_clipnorm=1.0)
    opt.build(flat)
    flat.grad[:] = 1.0
    flat.grad[3] = np.inf
    before = flat.data.copy()
    with pytest.raises(FloatingPointError, match="global gradient norm is inf"):
        opt.step()
    np.testing.assert_array_equal(flat.data, before)
    assert opt.iterations == 0


@pytest.mark.parametrize("make,exc,match", [
    (lambda: fk.Adam(learning_rate=-0.1), ValueError, "lr must be a finite number >= 0"),
    (lambda: fk.Adam(beta_1=1.5), ValueError, r"beta1 must be in \[0, 1\)"),
    (lambda: fk.Adam(lr=0.1, learning_rate=0.1), TypeError, "not both"),
    (lambda: fk.SGD(momentun=0.9), TypeError, "unexpected keyword argument 'momentun'"),
    (lambda: fk.SGD(clipnorm=1.0, clipvalue=1.0), ValueError, "at most one of"),
    (lambda: fk.SGD(clipnorm=-1.0), ValueError, "clipnorm must be a finite number > 0"),
    (lambda: fk.RMSprop(rho=1.5), ValueError, r"alpha must be in \[0, 1\]"),
    (lambda: fk.Adagrad(initial_accumulator_value=-0.1), ValueError,
     "initial_accumulator_value must be"),
    (lambda: fk.Adam(decay=-1.0), ValueError, "decay must be a finite number >= 0"),
    (lambda: fk.Adam(learning_rate="fast"), TypeError, "learning_rate must be a number"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_step_before_build():
    with pytest.raises(RuntimeError, match="not built yet"):
        fk.Adam().step()


def test_keras_state_dict_round_trip_and_family_check():
    a_flat, b_flat = _flat(), _flat()
    a, b = fk.RMSprop(momentum=0.9, centered=True), fk.RMSprop(momentum=0.9, centered=True)
    a.build(a_flat)
    b.build(b_flat)
    a_flat.grad[:] = 0.3
    for _ in range(3):
        a.step()
    b_flat.data[:] = a_flat.data
    b.load_state_dict(a.state_dict())
    assert b.iterations == 3
    for _ in range(3):
        b_flat.grad[:] = a_flat.grad
        a.step()
        b.step()
    np.testing.assert_array_equal(a_flat.data, b_flat.data)
    torch_sgd = optim.SGD(_flat(), lr=0.1)
    keras_sgd = fk.SGD()
    keras_sgd.build(_flat())
    with pytest.raises(ValueError, match="from a torch.SGD optimizer, not keras.SGD"):
        keras_sgd.load_state_dict(torch_sgd.state_dict())


def test_registry_is_public():
    assert fk.names() == ["adadelta", "adagrad", "adam", "adamax", "adamw", "lion", "nadam",
                          "rmsprop", "sgd"]
    assert fk.get_class("Adam") is fk.Adam
    assert type(fk.get("rmsprop")) is fk.get_class("rmsprop")
    with pytest.raises(ValueError, match=r"unknown optimizer 'ftrl'; expected one of"):
        fk.get_class("ftrl")


def test_keras_optimizer_is_a_base_optimizer_until_built():
    opt = fk.Adam(learning_rate=0.01)
    assert opt.family == "keras" and not opt.built
    assert opt.parameters == [] and opt.grad_buffers() == [] and opt.n_kernel_calls == 0
    flat = _flat()
    opt.build(flat)
    assert len(opt.parameters) == len(SHAPES) and opt.n_kernel_calls == 1


@pytest.mark.parametrize("make,exc,match", [
    (lambda: fk.SGD(clipnorm="1"), TypeError, "clipnorm must be a number"),
    (lambda: fk.SGD(global_clipnorm=True), TypeError, "global_clipnorm must be a number"),
    (lambda: fk.SGD(clipvalue=float("inf")), ValueError, "clipvalue must be a finite number > 0"),
    (lambda: fk.Adam(decay="0.1"), TypeError, "decay must be a number"),
    (lambda: fk.Adam(learning_rate=lambda step: "fast"), TypeError,
     "learning_rate must be a number or a schedule returning one"),
    (lambda: fk.Adagrad(initial_accumulator_value=None), TypeError,
     "initial_accumulator_value must be a number"),
])
def test_wrong_type_is_type_error(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("name,kwargs", [
    ("AdamW", dict(learning_rate=0.01, weight_decay=0.05, use_ema=True, ema_momentum=0.9,
                   ema_overwrite_frequency=7)),
    ("SGD", dict(learning_rate=0.01, momentum=0.9, nesterov=True, weight_decay=0.02,
                 use_ema=True, ema_momentum=0.95)),
    ("Lion", dict(learning_rate=1e-3, weight_decay=0.1)),
])
def test_ema_and_weight_decay_exclusion_match_keras(name, kwargs):
    """use_ema (with and without overwriting) and exclude_from_weight_decay
    (the biases, by variable) over many steps, against Keras 3, then
    finalize_variable_values."""
    keras = _keras()
    flat = _flat(3)
    variables = [keras.Variable(p.copy()) for p in flat.params]
    ours, theirs = getattr(fk, name)(**kwargs), getattr(keras.optimizers, name)(**kwargs)
    ours.exclude_from_weight_decay(var_list=[flat.params[1], flat.params[3]])
    theirs.exclude_from_weight_decay(var_list=[variables[1], variables[3]])
    ours.build(flat)
    rng = np.random.default_rng(4)
    for _ in range(40):
        flat.grad[:] = rng.standard_normal(flat.size).astype(np.float32)
        theirs.apply_gradients(zip([keras.ops.convert_to_tensor(g.copy()) for g in flat.grads],
                                   variables))
        ours.step()
    for ours_p, var in zip(flat.params, variables):
        np.testing.assert_allclose(ours_p, keras.ops.convert_to_numpy(var), rtol=2e-5, atol=2e-6)
    if kwargs.get("use_ema"):
        ours.finalize_variable_values()
        theirs.finalize_variable_values(variables)
        for ours_p, var in zip(flat.params, variables):
            np.testing.assert_allclose(ours_p, keras.ops.convert_to_numpy(var), rtol=2e-5,
                                       atol=2e-6)
    assert len(ours.param_groups) == 2 and ours.param_groups[1]["weight_decay"] == 0


def test_exclusion_by_name_on_an_mlp_and_ema_state_round_trips():
    from fastopt import MLP

    model = MLP([4, 8, 3], seed=0)
    opt = fk.AdamW(use_ema=True)
    opt.exclude_from_weight_decay(var_names=["bias"])
    model.compile(opt, metrics=["accuracy"])
    excluded = opt.param_groups[1]["params"]
    assert [p for p, _ in excluded] == model.biases or all(
        any(p is b for b in model.biases) for p, _ in excluded)
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    model.fit(x, np.arange(64) % 3, epochs=2, verbose=0)
    state = opt.state_dict()
    assert all("average" in entry for entry in state["state"].values())
    again = fk.AdamW(use_ema=True)
    again.exclude_from_weight_decay(var_names=["bias"])
    again.build(FlatParameters.from_arrays(model.params.params, model.params.names))
    again.load_state_dict(state)
    for a, b in zip(again.moving_averages, opt.moving_averages):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="before the optimizer is built"):
        opt.exclude_from_weight_decay(var_names=["kernel"])
