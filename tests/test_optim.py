"""The PyTorch-compatible optimizer classes and FlatParameters."""
import copy
import pickle

import numpy as np
import pytest

import fastopt
from fastopt import FlatParameters, optim

SHAPES = [(20, 8), (8,), (8, 4), (4,)]  # a small MLP: weights and biases


def _model(seed=0):
    rng = np.random.default_rng(seed)
    flat = FlatParameters(SHAPES, names=["w1", "b1", "w2", "b2"])
    flat.data[:] = rng.standard_normal(flat.size).astype(np.float32)
    return flat


def _grads(seed, steps, n):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 1, n)).astype(np.float32)
            for _ in range(steps)]


# -- FlatParameters -----------------------------------------------------------

def test_flat_parameters_layout():
    flat = FlatParameters(SHAPES)
    assert flat.size == 20 * 8 + 8 + 8 * 4 + 4
    assert flat.data.ctypes.data % 64 == 0 and flat.grad.ctypes.data % 64 == 0
    assert [p.shape for p in flat.params] == SHAPES
    for p, g in flat:
        assert np.shares_memory(p, flat.data) and np.shares_memory(g, flat.grad)
    flat.params[1][:] = 7
    assert np.all(flat.data[160:168] == 7)


def test_flat_parameters_from_arrays_copies():
    arrays = [np.arange(6, dtype=np.float64).reshape(2, 3), np.ones(4, np.int32)]
    flat = FlatParameters.from_arrays(arrays)
    np.testing.assert_array_equal(flat.params[0], arrays[0])
    assert not np.shares_memory(flat.params[0], arrays[0])
    assert flat.params[0].dtype == np.float32


@pytest.mark.parametrize("shapes,exc,match", [
    ([(2, -1)], ValueError, "negative dimension"),
    ([("a",)], TypeError, r"shapes\[0\] must be a tuple of ints"),
])
def test_flat_parameters_bad_shapes(shapes, exc, match):
    with pytest.raises(exc, match=match):
        FlatParameters(shapes)


def test_flat_parameters_from_arrays_rejects_non_numbers():
    with pytest.raises(TypeError, match=r"arrays\[0\] must hold real numbers"):
        FlatParameters.from_arrays([np.array(["a"])])


def test_one_kernel_call_per_step_over_a_flat_buffer():
    flat = _model()
    assert optim.Adam(flat).n_kernel_calls == 1
    pairs = [(np.zeros(3, np.float32), np.zeros(3, np.float32)) for _ in range(4)]
    assert optim.Adam(pairs).n_kernel_calls == 4  # separate arrays: one call each
    groups = [{"params": list(zip(flat.params[:2], flat.grads[:2]))},
              {"params": list(zip(flat.params[2:], flat.grads[2:])), "lr": 0.1}]
    assert optim.Adam(groups).n_kernel_calls == 2


# -- parity with torch.optim --------------------------------------------------

torch = None


def _torch():
    global torch
    torch = pytest.importorskip("torch")
    return torch


CLASS_CASES = [
    ("SGD", dict(lr=0.01, momentum=0.9, dampening=0.1, weight_decay=1e-3)),
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True, maximize=True)),
    ("Adagrad", dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=1e-3)),
    ("RMSprop", dict(lr=1e-3, momentum=0.5, centered=True, weight_decay=1e-3)),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=1e-3)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), decoupled_weight_decay=True, weight_decay=0.1)),
    ("AdamW", dict(lr=1e-2, maximize=True)),
]


def _torch_params(flat):
    return [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in flat.params]


def _groups(ours_or_theirs, cfg):
    """No weight decay on the biases (tensors 1 and 3), a larger lr for layer 2."""
    w, b = [ours_or_theirs[0], ours_or_theirs[2]], [ours_or_theirs[1], ours_or_theirs[3]]
    return [{"params": w}, {"params": b, "weight_decay": 0.0}]


@pytest.mark.parametrize("name,cfg", CLASS_CASES, ids=[f"{n}-{i}" for i, (n, _) in
                                                       enumerate(CLASS_CASES)])
def test_matches_torch_with_groups_lr_change_and_state_dict_round_trip(name, cfg):
    _torch()
    flat = _model(1)
    theirs = _torch_params(flat)
    pairs = list(flat)
    ours = getattr(optim, name)(_groups(pairs, cfg), **cfg)
    ref = getattr(torch.optim, name)(_groups(theirs, cfg), **cfg)
    grads = _grads(2, 120, flat.size)
    for step, g in enumerate(grads, 1):
        flat.grad[:] = g
        for t, view in zip(theirs, flat.grads):
            t.grad = torch.from_numpy(view.copy())
        if step == 40:  # the learning rate set between steps
            for group in ours.param_groups + ref.param_groups:
                group["lr"] *= 0.5
        if step == 60:  # continue in a new optimizer from a pickled state_dict
            saved = pickle.loads(pickle.dumps(ours.state_dict()))
            ours = getattr(optim, name)(_groups(pairs, cfg), **cfg)
            ours.load_state_dict(saved)
        ours.step()
        ref.step()
    for ours_p, t in zip(flat.params, theirs):
        np.testing.assert_allclose(ours_p, t.detach().numpy(), rtol=2e-5, atol=2e-6)
    # both index parameters by their order across groups
    theirs_all = ref.state_dict()["state"]
    ours_all = ours.state_dict()["state"]
    assert sorted(theirs_all) == sorted(ours_all) == [0, 1, 2, 3]
    for i, theirs_state in theirs_all.items():
        ours_state = ours_all[i]
        if "step" in theirs_state:  # torch's SGD keeps no step count
            assert ours_state["step"] == int(theirs_state["step"])
        for key, value in theirs_state.items():
            if key != "step":
                want = value.numpy().reshape(-1)
                np.testing.assert_allclose(ours_state[key], want, rtol=2e-5,
                                           atol=2e-5 * np.abs(want).max(), err_msg=key)


def test_defaults_match_torch():
    import inspect

    _torch()
    for name in ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW"):
        ours = inspect.signature(getattr(optim, name)).parameters
        theirs = inspect.signature(getattr(torch.optim, name)).parameters
        for arg, p in ours.items():
            if arg in theirs and arg != "params":
                assert p.default == theirs[arg].default, (name, arg)


# -- state_dict ----------------------------------------------------------------

def test_state_dict_round_trip_is_exact():
    a_flat, b_flat = _model(3), _model(3)
    a, b = optim.Adam(a_flat, amsgrad=True), optim.Adam(b_flat, amsgrad=True)
    grads = _grads(4, 20, a_flat.size)
    for g in grads[:10]:
        a_flat.grad[:] = g
        a.step()
    b_flat.data[:] = a_flat.data
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for g in grads[10:]:
        a_flat.grad[:] = b_flat.grad[:] = g
        a.step()
        b.step()
    np.testing.assert_array_equal(a_flat.data, b_flat.data)
    assert a.state_dict()["state"][0]["step"] == 20


def _stepped_adam():
    flat = _model(5)
    opt = optim.Adam(flat, lr=0.01)
    flat.grad[:] = 1.0
    opt.step()
    return flat, opt


@pytest.mark.parametrize("mutate,match", [
    (lambda sd: sd.update(optimizer="torch.SGD"), "from a torch.SGD optimizer"),
    (lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0])),
     "2 parameter groups"),
    (lambda sd: sd["state"][0].update(exp_avg=np.zeros(3, np.float32)),
     "'exp_avg' of parameter 0 has 3 elements"),
    (lambda sd: sd["state"][1].pop("exp_avg_sq"), "parameter 1 has no 'exp_avg_sq'"),
    (lambda sd: sd["state"][2].update(step=7), "different step counts"),
    (lambda sd: sd["state"].pop(3), "some but not all"),
    (lambda sd: sd["param_groups"][0].update(lr=-1.0), "lr must be a finite number >= 0"),
    (lambda sd: sd["param_groups"][0].update(lrr=1.0), r"unknown hyperparameter\(s\) \['lrr'\]"),
    (lambda sd: sd["param_groups"][0].update(params=[0, 1]), "holds parameters"),
])
def test_bad_state_dict_leaves_optimizer_unchanged(mutate, match):
    flat, opt = _stepped_adam()
    good = opt.state_dict()
    bad = copy.deepcopy(good)
    mutate(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert after["param_groups"] == good["param_groups"]
    for i, entry in good["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(after["state"][i][key], value)


# -- bad arguments -------------------------------------------------------------

@pytest.mark.parametrize("make,exc,match", [
    (lambda f: optim.Adam(f, lr=-1), ValueError, "lr must be a finite number >= 0, got -1"),
    (lambda f: optim.Adam(f, betas=(0.9, 1.0)), ValueError, r"beta2 must be in \[0, 1\)"),
    (lambda f: optim.Adam(f, betas=0.9), TypeError, "betas must be a pair"),
    (lambda f: optim.Adam(f, lrr=0.1), TypeError, "unexpected keyword argument 'lrr'"),
    (lambda f: optim.SGD(f, lr=0.1, nesterov=True), ValueError, "nesterov=True requires"),
    (lambda f: optim.RMSprop(f, alpha=2.0), ValueError, r"alpha must be in \[0, 1\]"),
    (lambda f: optim.Adagrad(f, initial_accumulator_value=-1), ValueError,
     "initial_accumulator_value must be a finite number >= 0"),
    (lambda f: optim.Adam([{"params": f, "betaz": 1}]), TypeError,
     r"unknown hyperparameter\(s\) \['betaz'\]"),
    (lambda f: optim.Adam([]), ValueError, "has no parameters"),
    (lambda f: optim.Adam(f.data), TypeError, "got a single array"),
    (lambda f: optim.Adam([(f.data, np.zeros(3, np.float32))]), ValueError,
     r"params\[0\]: grad has shape"),
    (lambda f: optim.Adam([(f.data.astype(np.float64), f.grad)]), TypeError,
     r"params\[0\] param must have dtype float32"),
    (lambda f: optim.Adam([{"params": f}, {"params": [(f.params[0], f.grads[0])]}]),
     ValueError, "more than one parameter group"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make(_model())


def test_bad_lr_set_between_steps_is_caught_before_any_write():
    flat = _model()
    opt = optim.Adam([{"params": flat.params and list(flat)[:2]},
                      {"params": list(flat)[2:]}])
    opt.param_groups[1]["lr"] = float("nan")
    before = flat.data.copy()
    flat.grad[:] = 1.0
    with pytest.raises(ValueError, match="lr must be a finite number"):
        opt.step()
    np.testing.assert_array_equal(flat.data, before)  # group 0 was not updated either
    assert opt.state_dict()["state"] == {}


# -- clipping ------------------------------------------------------------------

def test_clip_grad_norm_matches_torch():
    _torch()
    flat = _model()
    flat.grad[:] = np.random.default_rng(0).standard_normal(flat.size).astype(np.float32)
    tensors = [torch.nn.Parameter(torch.zeros(s)) for s in SHAPES]
    for t, g in zip(tensors, flat.grads):
        t.grad = torch.from_numpy(g.copy())
    ours = optim.clip_grad_norm_(flat, 1.5)
    theirs = torch.nn.utils.clip_grad_norm_(tensors, 1.5)
    assert ours == pytest.approx(float(theirs), rel=1e-6)
    for g, t in zip(flat.grads, tensors):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-6)


def test_clip_grad_norm_reports_non_finite_norm():
    flat = _model()
    flat.grad[:] = 1.0
    flat.grad[5] = np.nan
    before = flat.grad.copy()
    with pytest.raises(FloatingPointError, match="global gradient norm is nan"):
        optim.clip_grad_norm_(flat, 1.0)
    np.testing.assert_array_equal(flat.grad, before)


def test_clip_grad_value():
    g = np.array([-3, -0.5, 0, 2], np.float32)
    optim.clip_grad_value_([g], 1.0)
    np.testing.assert_array_equal(g, [-1, -0.5, 0, 1])


def test_step_grad_scale_equals_scaled_gradient():
    a, b = _model(), _model()
    oa, ob = optim.Adam(a), optim.Adam(b)
    a.grad[:] = b.grad[:] = 2.0
    b.grad *= np.float32(0.25)
    oa.step(grad_scale=0.25)
    ob.step()
    np.testing.assert_array_equal(a.data, b.data)


def test_optimizer_updates_the_flat_buffer_in_place():
    flat = _model()
    views = list(flat.params)
    data = flat.data
    opt = optim.SGD(flat, lr=0.1)
    flat.grad[:] = 1.0
    opt.step()
    assert flat.data is data and all(np.shares_memory(v, data) for v in views)
    opt.zero_grad()
    assert not flat.grad.any()


def test_functional_and_class_agree():
    flat = _model()
    p = flat.data.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    opt = optim.Adam(flat, lr=0.01)
    for step in range(1, 4):
        flat.grad[:] = np.float32(step)
        opt.step()
        fastopt.adam_(p, flat.grad, m, v, step=step, lr=0.01)
    np.testing.assert_array_equal(flat.data, p)


# -- public accessors and argument types ---------------------------------------

def test_public_accessors():
    flat = _model()
    opt = optim.Adam(flat)
    assert opt.family == "torch"
    pairs = opt.parameters
    assert len(pairs) == len(SHAPES)
    for (p, g), (fp, fg) in zip(pairs, flat):
        assert p is fp and g is fg
    pairs.clear()  # a copy: the optimizer's own list is untouched
    assert len(opt.parameters) == len(SHAPES)
    buffers = opt.grad_buffers()
    assert len(buffers) == opt.n_kernel_calls == 1
    assert np.shares_memory(buffers[0], flat.grad) and buffers[0].size == flat.size


def test_clip_through_an_optimizer_clips_its_gradients():
    flat = _model()
    opt = optim.SGD(flat, lr=0.1)
    flat.grad[:] = 3.0
    optim.clip_grad_value_(opt, 1.0)
    assert np.all(flat.grad == 1.0)
    assert optim.global_grad_norm(opt) == pytest.approx(np.sqrt(flat.size))


@pytest.mark.parametrize("call,exc,match", [
    (lambda f: optim.clip_grad_norm_(f, "1"), TypeError, "max_norm must be a number"),
    (lambda f: optim.clip_grad_norm_(f, True), TypeError, "max_norm must be a number"),
    (lambda f: optim.clip_grad_norm_(f, 0.0), ValueError, "max_norm must be a finite number > 0"),
    (lambda f: optim.clip_grad_norm_(f, 1.0, error_if_nonfinite="yes"), TypeError,
     "error_if_nonfinite must be True or False"),
    (lambda f: optim.clip_grad_value_(f, None), TypeError, "clip_value must be a number"),
    (lambda f: optim.clip_grad_value_(f, -1.0), ValueError,
     "clip_value must be a finite number >= 0"),
    (lambda f: optim.Adagrad(f, initial_accumulator_value="0"), TypeError,
     "initial_accumulator_value must be a number"),
])
def test_wrong_type_is_type_error_wrong_value_value_error(call, exc, match):
    flat = _model()
    flat.grad[:] = 2.0
    before = flat.grad.copy()
    with pytest.raises(exc, match=match):
        call(flat)
    np.testing.assert_array_equal(flat.grad, before)


def test_state_dict_step_of_wrong_type_is_type_error():
    flat = _model()
    opt = optim.SGD(flat, lr=0.1, momentum=0.9)
    flat.grad[:] = 1.0
    opt.step()
    sd = opt.state_dict()
    for entry in sd["state"].values():
        entry["step"] = 1.0
    with pytest.raises(TypeError, match="state_dict step must be an int"):
        opt.load_state_dict(sd)
