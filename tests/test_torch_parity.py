"""Parity of the functional kernels with ``torch.optim`` (CPU, float32).

Each torch optimizer is driven through ``opt.step()`` with a preset
``.grad``; fastopt's kernel gets the same float32 gradients.  After 100
steps the parameters and every state buffer must agree to float32 accuracy.
Runs the for-loop implementation and, where torch has one on the CPU, the
fused one.  Skipped only when torch is not installed (CI installs it).
"""
import itertools

import numpy as np
import pytest

import fastopt

torch = pytest.importorskip("torch")

N = 1031
STEPS = 100


def _configs(**options):
    keys = list(options)
    return [dict(zip(keys, v)) for v in itertools.product(*options.values())]


def _run(make_torch, step_fastopt, state_names, torch_state_keys, seed, fused=None):
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(N).astype(np.float32)
    tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    kwargs = {} if fused is None else {"fused": fused}
    opt = make_torch([tp], **kwargs)
    p = p0.copy()
    state = {name: np.zeros(N, np.float32) for name in state_names}
    for step in range(1, STEPS + 1):
        g = (rng.standard_normal(N) * 10.0 ** rng.uniform(-3, 1, N)).astype(np.float32)
        tp.grad = torch.from_numpy(g.copy())
        opt.step()
        step_fastopt(p, g, state, step)
    with torch.no_grad():
        np.testing.assert_allclose(p, tp.numpy(), rtol=1e-5, atol=1e-6, err_msg="param")
    tstate = opt.state[tp]
    for name, key in zip(state_names, torch_state_keys):
        want = tstate[key].numpy()
        scale = np.abs(want).max()
        np.testing.assert_allclose(state[name], want, rtol=1e-5, atol=1e-5 * scale,
                                   err_msg=name)


SGD_CONFIGS = [c for c in _configs(momentum=[0.0, 0.9], dampening=[0.0, 0.3],
                                   nesterov=[False, True], weight_decay=[0.0, 0.01],
                                   maximize=[False, True])
               if not (c["nesterov"] and (c["momentum"] == 0 or c["dampening"]))
               and not (c["dampening"] and c["momentum"] == 0)]


@pytest.mark.parametrize("fused", [None, True], ids=["for-loop", "fused"])
@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=str)
def test_sgd(cfg, fused):
    lr = 0.01
    names = ["momentum_buf"] if cfg["momentum"] else []

    def ours(p, g, state, step):
        fastopt.sgd_(p, g, state.get("momentum_buf"), lr=lr, step=step, **cfg)

    _run(lambda params, **kw: torch.optim.SGD(params, lr=lr, **cfg, **kw), ours, names,
         ["momentum_buffer"], seed=1, fused=fused)


ADAGRAD_CONFIGS = _configs(lr_decay=[0.0, 0.05], weight_decay=[0.0, 0.01],
                           maximize=[False, True], initial_accumulator_value=[0.0, 0.1],
                           eps=[1e-10, 1e-3])


@pytest.mark.parametrize("fused", [None, True], ids=["for-loop", "fused"])
@pytest.mark.parametrize("cfg", ADAGRAD_CONFIGS, ids=str)
def test_adagrad(cfg, fused):
    lr = 0.05
    cfg = dict(cfg)
    init = cfg.pop("initial_accumulator_value")

    def ours(p, g, state, step):
        if step == 1:
            state["sum"][:] = init
        fastopt.adagrad_(p, g, state["sum"], lr=lr, step=step, **cfg)

    _run(lambda params, **kw: torch.optim.Adagrad(params, lr=lr, initial_accumulator_value=init,
                                                  **cfg, **kw),
         ours, ["sum"], ["sum"], seed=2, fused=fused)


RMSPROP_CONFIGS = _configs(momentum=[0.0, 0.9], centered=[False, True],
                           weight_decay=[0.0, 0.01], maximize=[False, True], eps=[1e-8, 1e-3])


@pytest.mark.parametrize("cfg", RMSPROP_CONFIGS, ids=str)
def test_rmsprop(cfg):
    lr = 1e-3
    names = ["square_avg"] + (["momentum_buf"] if cfg["momentum"] else []) \
        + (["grad_avg"] if cfg["centered"] else [])
    keys = {"square_avg": "square_avg", "momentum_buf": "momentum_buffer", "grad_avg": "grad_avg"}

    def ours(p, g, state, step):
        fastopt.rmsprop_(p, g, state["square_avg"], momentum_buf=state.get("momentum_buf"),
                         grad_avg=state.get("grad_avg"), lr=lr, **cfg)

    _run(lambda params, **kw: torch.optim.RMSprop(params, lr=lr, **cfg, **kw), ours, names,
         [keys[n] for n in names], seed=3)


ADAM_CONFIGS = _configs(amsgrad=[False, True], weight_decay=[0.0, 0.05],
                        decoupled_weight_decay=[False, True], maximize=[False, True],
                        eps=[1e-8, 1e-3])


@pytest.mark.parametrize("fused", [None, True], ids=["for-loop", "fused"])
@pytest.mark.parametrize("cfg", ADAM_CONFIGS, ids=str)
def test_adam(cfg, fused):
    lr = 0.01
    names = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if cfg["amsgrad"] else [])

    def ours(p, g, state, step):
        fastopt.adam_(p, g, state["exp_avg"], state["exp_avg_sq"],
                      max_exp_avg_sq=state.get("max_exp_avg_sq"), lr=lr, step=step, **cfg)

    _run(lambda params, **kw: torch.optim.Adam(params, lr=lr, **cfg, **kw), ours, names,
         names, seed=4, fused=fused)


ADAMW_CONFIGS = _configs(amsgrad=[False, True], weight_decay=[0.01, 0.2],
                         maximize=[False, True])


@pytest.mark.parametrize("fused", [None, True], ids=["for-loop", "fused"])
@pytest.mark.parametrize("cfg", ADAMW_CONFIGS, ids=str)
def test_adamw(cfg, fused):
    lr = 0.01
    names = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if cfg["amsgrad"] else [])

    def ours(p, g, state, step):
        fastopt.adamw_(p, g, state["exp_avg"], state["exp_avg_sq"],
                       max_exp_avg_sq=state.get("max_exp_avg_sq"), lr=lr, step=step, **cfg)

    _run(lambda params, **kw: torch.optim.AdamW(params, lr=lr, **cfg, **kw), ours, names,
         names, seed=5, fused=fused)


def test_defaults_match_torch():
    """The functional kernels' defaults are torch's."""
    import inspect

    pairs = [(fastopt.adagrad_, torch.optim.Adagrad, ["lr", "lr_decay", "weight_decay", "eps"]),
             (fastopt.rmsprop_, torch.optim.RMSprop,
              ["lr", "alpha", "eps", "weight_decay", "momentum"]),
             (fastopt.adam_, torch.optim.Adam, ["lr", "eps", "weight_decay"]),
             (fastopt.adamw_, torch.optim.AdamW, ["lr", "eps", "weight_decay"])]
    for ours, theirs, names in pairs:
        a = inspect.signature(ours).parameters
        b = inspect.signature(theirs).parameters
        for name in names:
            assert a[name].default == b[name].default, (ours.__name__, name)
    betas = inspect.signature(torch.optim.Adam).parameters["betas"].default
    sig = inspect.signature(fastopt.adam_).parameters
    assert (sig["beta1"].default, sig["beta2"].default) == betas


def _lerp_case(rule):
    """torch's optimizer, fastopt's kernel and the names of the averaged
    state, for a rule whose average is torch's lerp_ with weight 1 - beta."""
    return {
        "adam": (lambda p: torch.optim.Adam(p, betas=(0.0, 0.99)),
                 lambda p, g, a, b: fastopt.adam_(p, g, a, b, step=1, beta1=0.0, beta2=0.99),
                 ("exp_avg", "exp_avg_sq")),
        "nadam": (lambda p: torch.optim.NAdam(p, betas=(0.0, 0.99)),
                  lambda p, g, a, b: fastopt.nadam_(p, g, a, b, step=1, beta1=0.0, beta2=0.99),
                  ("exp_avg", "exp_avg_sq")),
        "adamax": (lambda p: torch.optim.Adamax(p, betas=(0.0, 0.99)),
                   lambda p, g, a, b: fastopt.adamax_(p, g, a, b, step=1, beta1=0.0, beta2=0.99),
                   ("exp_avg", "exp_inf")),
        "rmsprop-centered": (
            lambda p: torch.optim.RMSprop(p, alpha=0.0, centered=True),
            lambda p, g, a, b: fastopt.rmsprop_(p, g, b, alpha=0.0, centered=True, grad_avg=a),
            ("grad_avg", "square_avg")),
    }[rule]


@pytest.mark.parametrize("rule", ["adam", "nadam", "adamax", "rmsprop-centered"])
def test_average_with_weight_one_is_the_gradient_exactly(rule):
    """beta = 0 makes the average the gradient itself.  From a large old
    average and a small gradient, m + 1 * (g - m) loses g's low bits to
    cancellation; torch's lerp_ computes g - 0 * (g - m) for weights >= 0.5,
    and so does fastopt in PyTorch's convention (a case found by Hypothesis)."""
    make_torch, step, names = _lerp_case(rule)
    rng = np.random.default_rng(3)
    g = (rng.standard_normal(N) * 1e-4).astype(np.float32)
    old = (rng.standard_normal(N) * 10).astype(np.float32)
    tp = torch.nn.Parameter(torch.zeros(N))
    opt = make_torch([tp])
    tp.grad = torch.from_numpy(g.copy())
    opt.step()  # creates the state; overwrite the average, then step again
    opt.state[tp][names[0]].copy_(torch.from_numpy(old))
    opt.step()
    a, b = old.copy(), opt.state[tp][names[1]].numpy().copy()
    step(np.zeros(N, np.float32), g, a, b)
    assert np.array_equal(opt.state[tp][names[0]].numpy(), g)
    assert np.array_equal(a, g)
