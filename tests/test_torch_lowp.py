"""fastopt.torch with bfloat16 / float16 models and low-precision state (issue #21).

Master weights: fot.Adam on a 16-bit model must give, bit for bit, what the
same optimizer gives on float32 copies of the parameters ("masters") fed
``grad.float()``, followed by ``p.copy_(master)`` (torch's cast rounds to
nearest even).  Against torch.optim.Adam on those float32 masters the
masters agree to float32 rounding (fastopt's float32 Adam is not bitwise
torch's: it evaluates the update in another order, see test_torch_parity)
and the 16-bit parameters differ by at most one ulp where a master sits on
a rounding boundary.  Low-precision state is checked bit for bit against
fastopt.optim's Adam (NumPy arrays) with the same ``state_dtype``, whose
kernel formats tests/test_lowp.py checks against a float64 reference.
"""
import copy
import io
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ml_dtypes")
import fastopt.optim as fo  # noqa: E402
import fastopt.torch as fot  # noqa: E402
from frameworks import one_torch_thread  # noqa: E402,F401

nn = torch.nn
STEPS = 50
BF16, F16 = torch.bfloat16, torch.float16
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_model(dtype=torch.float32, seed=0):
    """A small MLP with a LayerNorm (2-D and 1-D parameters, 3000+ elements
    in one tensor: more than one 8-bit block)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 256), nn.LayerNorm(256), nn.ReLU(),
                         nn.Linear(256, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def data(steps=STEPS, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 12, generator=g).to(dtype), torch.randint(0, 3, (16,), generator=g))
            for _ in range(steps)]


def forward(model, x):
    """The layers in turn, each fed its parameters' dtype (a mixed model)."""
    for layer in model:
        p = next(layer.parameters(), None)
        x = layer(x if p is None else x.to(p.dtype))
    return x


def backward(model, x, y, maximize=False):
    loss = nn.functional.cross_entropy(forward(model, x).float(), y)
    (-loss if maximize else loss).backward()


def scheduled(opt):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)


def bits(t):
    return t.view(torch.int16) if t.dtype in (BF16, F16) else t.view(torch.int32)


class MasterReference:
    """``make_opt`` on float32 masters of ``model``'s parameters, fed the
    16-bit model's gradients widened, then ``p.copy_(master)``."""

    def __init__(self, model, make_opt, groups=None):
        self.params = list(model.parameters())
        self.masters = [nn.Parameter(p.detach().float()) for p in self.params]
        where = {id(p): m for p, m in zip(self.params, self.masters)}
        if groups is None:
            self.opt = make_opt(self.masters)
        else:
            self.opt = make_opt([{**g, "params": [where[id(p)] for p in g["params"]]}
                                 for g in groups])
        self.sched = scheduled(self.opt)

    def step(self, grads):
        for m, g in zip(self.masters, grads):
            m.grad = g.float()
        self.opt.step()
        self.sched.step()
        with torch.no_grad():
            for p, m in zip(self.params, self.masters):
                p.copy_(m)


CASES = [
    ("Adam", dict(lr=3e-3)),
    ("Adam", dict(lr=2e-3, weight_decay=1e-2, maximize=True, betas=(0.8, 0.99))),
    ("AdamW", dict(lr=3e-3, weight_decay=0.1, eps=1e-6)),
]


#: the layer a mixed model keeps in float32: the last Linear, in a group of
#: its own with its own lr, or the LayerNorm, between 16-bit layers in one group
FLOAT32_LAYER = {"groups": 5, "one group": 1}


def _mixed_model(dtype, mixed):
    model = make_model(dtype)
    if mixed:
        model[FLOAT32_LAYER[mixed]].float()
    return model


def run_master_weights(name, kwargs, dtype, state_dtype, flat, mixed):
    """fot's optimizer on a ``dtype`` model (``mixed``: see FLOAT32_LAYER;
    ``flat``: its 16-bit parameters flatten_ed) and the references on
    float32 masters, fed the same gradients; returns the checks' inputs."""
    model = _mixed_model(dtype, mixed)
    if flat:
        fot.flatten_([p for p in model.parameters() if p.dtype == dtype])
    groups = None
    if mixed == "groups":
        groups = [{"params": list(model[:5].parameters())},
                  {"params": list(model[5].parameters()), "lr": kwargs["lr"] / 2}]
    opt = getattr(fot, name)(groups or model.parameters(), state_dtype=state_dtype, **kwargs)
    sched = scheduled(opt)
    def reference(module):
        twin = _mixed_model(dtype, mixed)
        return MasterReference(twin, lambda ps: getattr(module, name)(ps, **kwargs),
                               groups and _same_groups(groups, model, twin))

    ours = reference(_with_options(state_dtype))
    theirs = reference(torch.optim) if state_dtype == "float32" else None
    for x, y in data(dtype=dtype):
        opt.zero_grad()
        backward(model, x, y, kwargs.get("maximize", False))
        grads = [p.grad.clone() for p in model.parameters()]
        opt.step()
        sched.step()
        ours.step(grads)
        if theirs is not None:
            theirs.step(grads)
    return model, opt, ours, theirs


class _with_options:
    """fot's classes with ``state_dtype`` fixed (a module-like namespace)."""

    def __init__(self, state_dtype):
        self.state_dtype = state_dtype

    def __getattr__(self, name):
        return lambda *args, **kw: getattr(fot, name)(*args, state_dtype=self.state_dtype, **kw)


def _same_groups(groups, model, twin):
    where = {id(p): q for p, q in zip(model.parameters(), twin.parameters())}
    return [{**g, "params": [where[id(p)] for p in g["params"]]} for g in groups]


@pytest.mark.parametrize("mixed", [None, "groups", "one group"], ids=str)
@pytest.mark.parametrize("flat", [False, True], ids=["tensors", "flatten_"])
@pytest.mark.parametrize("dtype", [BF16, F16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name,kwargs", CASES, ids=str)
def test_master_weights_bit_for_bit(name, kwargs, dtype, flat, mixed):
    model, opt, ours, theirs = run_master_weights(name, kwargs, dtype, "float32", flat, mixed)
    for p, ref, m in zip(model.parameters(), ours.params, ours.masters):
        kept = mixed and any(p is q for q in model[FLOAT32_LAYER[mixed]].parameters())
        assert p.dtype == (torch.float32 if kept else dtype)
        assert torch.equal(bits(p), bits(ref))
        if p.dtype != torch.float32:
            assert torch.equal(bits(opt.state[p]["master_param"]), bits(m.detach()))
        else:
            assert "master_param" not in opt.state[p]
        assert torch.equal(bits(opt.state[p]["exp_avg"]),
                           bits(ours.opt.state[m]["exp_avg"]))
    # torch.optim.Adam on the same float32 masters: float32 rounding apart
    ulp = 2.0 ** -7 if dtype == BF16 else 2.0 ** -10
    for p, tp, tm in zip(model.parameters(), theirs.params, theirs.masters):
        master = opt.state[p].get("master_param", p).detach()
        np.testing.assert_allclose(master.numpy(), tm.detach().numpy(), rtol=1e-5, atol=1e-6)
        if p.dtype != torch.float32:     # one ulp apart, where a master sits on a boundary
            diff = (p.float() - tp.float()).abs()
            assert (diff <= ulp * tp.float().abs() + 1e-6).all()
            assert (diff > 0).float().mean() < 0.02


def test_flattened_16_bit_model_is_one_kernel_call():
    model = make_model(BF16)
    flat = fot.flatten_(model)
    assert flat.params.dtype == BF16 and flat.params.data_ptr() % 64 == 0
    opt = fot.Adam(model.parameters(), lr=1e-3)
    for x, y in data(3, BF16):
        opt.zero_grad()
        backward(model, x, y)
        opt.step()
        assert opt.last_step_calls == 1
    assert all(p.grad.data_ptr() >= flat.grads.data_ptr() for p in model.parameters())


def test_flatten_rejects_a_model_of_mixed_dtypes():
    model = make_model(BF16)
    model[5].float()
    with pytest.raises(TypeError, match=r"flatten_: 5.weight has dtype torch.float32.*bfloat16"
                                        r".*separately"):
        fot.flatten_(model)
    assert model[0].weight.dtype == BF16 and not hasattr(model[0].weight, "_fastopt_grad_view")
    fot.flatten_(list(model[:5].parameters()))      # one dtype at a time works
    fot.flatten_(list(model[5].parameters()))


# -- low-precision state ----------------------------------------------------------

def _numpy_reference(model, state_dtype, kwargs, grads_per_step):
    """fastopt.optim.Adam over float32 NumPy copies (one span per tensor)."""
    params = [p.detach().float().numpy().copy() for p in model.parameters()]
    grads = [np.zeros_like(p) for p in params]
    opt = fo.Adam(list(zip(params, grads)), state_dtype=state_dtype, **kwargs)
    for step_grads in grads_per_step:
        for g, new in zip(grads, step_grads):
            g[...] = new.float().numpy()
        opt.step()
    return params, opt


@pytest.mark.parametrize("flat", [False, True], ids=["tensors", "flatten_"])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_state_dtype_matches_fastopt_optim(state_dtype, flat):
    kwargs = dict(lr=3e-3, weight_decay=1e-2)
    model = make_model()
    if flat:
        fot.flatten_(model)
    opt = fot.Adam(model.parameters(), state_dtype=state_dtype, **kwargs)
    history = []
    for x, y in data(20):
        opt.zero_grad()
        backward(model, x, y)
        history.append([p.grad.clone() for p in model.parameters()])
        opt.step()
    # 8-bit state: each parameter's blocks are its own, one call each
    tensors = len(list(model.parameters()))
    assert opt.last_step_calls == (1 if flat and state_dtype == "bfloat16" else tensors)
    params, ref = _numpy_reference(make_model(), state_dtype, kwargs, history)
    sd = ref.state_dict()["state"]
    for i, (p, want) in enumerate(zip(model.parameters(), params)):
        np.testing.assert_array_equal(p.detach().numpy(), want)
        st = opt.state[p]
        dtype = torch.bfloat16 if state_dtype == "bfloat16" else torch.uint8
        assert st["exp_avg"].dtype == dtype and st["exp_avg"].shape == p.shape
        np.testing.assert_array_equal(
            st["exp_avg_sq"].view(torch.int16 if dtype == BF16 else dtype).numpy().ravel(),
            sd[i]["exp_avg_sq"].view(np.int16 if dtype == BF16 else np.uint8))
        if state_dtype == "int8":
            np.testing.assert_array_equal(st["state_scales"].numpy(), sd[i]["state_scales"])
        else:
            assert "state_scales" not in st


@pytest.mark.parametrize("dtype", [BF16, F16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_16_bit_model_with_low_precision_state(state_dtype, dtype):
    """Master weights and bf16 / 8-bit moments together (an fp16 gradient
    into 8-bit state included): the float32-master reference, bit for bit."""
    model, opt, ours, _ = run_master_weights("AdamW", dict(lr=3e-3), dtype, state_dtype,
                                             flat=False, mixed=None)
    for p, ref, m in zip(model.parameters(), ours.params, ours.masters):
        assert torch.equal(bits(p), bits(ref))
        assert torch.equal(bits(opt.state[p]["master_param"]), bits(m.detach()))
        for key in ("exp_avg", "exp_avg_sq", "state_scales"):
            if key in ours.opt.state[m]:
                assert torch.equal(opt.state[p][key], ours.opt.state[m][key])


def test_stochastic_rounding_is_reproducible_from_the_seed():
    def run(seed):
        model = make_model(BF16)
        opt = fot.Adam(model.parameters(), lr=1e-3, state_dtype="bfloat16",
                       state_rounding="stochastic", seed=seed)
        for x, y in data(5, BF16):
            opt.zero_grad()
            backward(model, x, y)
            opt.step()
        return [opt.state[p]["exp_avg_sq"].view(torch.int16).clone()
                for p in model.parameters()]

    a, b, c = run(7), run(7), run(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, z) for x, z in zip(a, c))


# -- state_dict ---------------------------------------------------------------------

def _train(model, opt, batches, dtype):
    for x, y in batches:
        opt.zero_grad()
        backward(model, x.to(dtype), y)
        opt.step()


@pytest.mark.parametrize("dtype,state_dtype", [(torch.float32, "bfloat16"),
                                               (torch.float32, "int8"), (BF16, "float32"),
                                               (F16, "int8"), (BF16, "bfloat16")], ids=str)
def test_state_dict_round_trip_continues_bit_for_bit(dtype, state_dtype):
    batches = data(12)
    model = make_model(dtype)
    opt = fot.Adam(model.parameters(), lr=3e-3, state_dtype=state_dtype)
    _train(model, opt, batches, dtype)
    ref = [p.detach().clone() for p in model.parameters()]

    model2 = make_model(dtype)
    opt2 = fot.Adam(model2.parameters(), lr=3e-3, state_dtype=state_dtype)
    _train(model2, opt2, batches[:6], dtype)
    buf = io.BytesIO()
    torch.save({"model": model2.state_dict(), "opt": opt2.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf)
    for st in saved["opt"]["state"].values():      # the real formats are saved
        assert st["exp_avg"].dtype == {"float32": torch.float32, "bfloat16": BF16,
                                       "int8": torch.uint8}[state_dtype]
        assert ("master_param" in st) == (dtype != torch.float32)
        assert ("state_scales" in st) == (state_dtype == "int8")
    model3 = make_model(dtype, seed=5)
    model3.load_state_dict(saved["model"])
    opt3 = fot.Adam(model3.parameters(), lr=3e-3, state_dtype=state_dtype)
    opt3.load_state_dict(saved["opt"])
    for st in opt3.state.values():                  # not cast to the parameter's dtype
        assert st.get("master_param", torch.zeros(0)).dtype == torch.float32
    _train(model3, opt3, batches[6:], dtype)
    for p, want in zip(model3.parameters(), ref):
        assert torch.equal(bits(p.detach()), bits(want))
    clone = copy.deepcopy(opt3)
    assert (clone.state_dtype, clone.state_rounding, clone.seed) == (state_dtype, "nearest", 0)


def _trained(state_dtype, dtype=torch.float32):
    model = make_model(dtype)
    opt = fot.Adam(model.parameters(), lr=1e-3, state_dtype=state_dtype)
    _train(model, opt, data(2), dtype)
    return model, opt


def _snapshot(opt):
    return {id(p): {k: v.clone() for k, v in st.items()} for p, st in opt.state.items()}


def _unchanged(opt, before):
    return all(torch.equal(v, before[id(p)][k]) for p, st in opt.state.items()
               for k, v in st.items())


@pytest.mark.parametrize("saved,target,match", [
    ("float32", "bfloat16", r"'exp_avg' has dtype torch.float32.*state_dtype='bfloat16'"),
    ("bfloat16", "float32", r"'exp_avg' has dtype torch.bfloat16.*state_dtype='float32'"),
    ("int8", "bfloat16", r"'exp_avg' has dtype torch.uint8.*does not convert"),
    ("bfloat16", "int8", r"'exp_avg' has dtype torch.bfloat16.*state_dtype='int8'"),
])
def test_load_rejects_a_state_format_mismatch_and_changes_nothing(saved, target, match):
    _, source = _trained(saved)
    model, opt = _trained(target)
    before = _snapshot(opt)
    with pytest.raises(ValueError, match=r"load_state_dict: parameter 0 of param group 0: "
                                         r"state " + match):
        opt.load_state_dict(source.state_dict())
    assert _unchanged(opt, before)
    _train(model, opt, data(1), torch.float32)       # still steps


def test_load_checks_scales_and_master_weights():
    model, opt = _trained("int8")
    before = _snapshot(opt)
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][0]["state_scales"][1] = float("nan")
    with pytest.raises(ValueError, match="'state_scales' of parameter 0 .*finite"):
        opt.load_state_dict(sd)
    del sd["state"][0]["state_scales"]
    with pytest.raises(ValueError, match="8-bit moments but not their 'state_scales'"):
        opt.load_state_dict(sd)
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][2]["state_scales"] = sd["state"][2]["state_scales"][:-1]
    with pytest.raises(ValueError, match=r"'state_scales' has 1 elements, expected 2"):
        opt.load_state_dict(sd)
    assert _unchanged(opt, before)
    _, bf = _trained("float32", BF16)
    with pytest.raises(ValueError, match="'master_param' but the parameter is float32"):
        _trained("float32")[1].load_state_dict(bf.state_dict())
    model16, opt16 = _trained("float32", F16)
    sd = copy.deepcopy(opt16.state_dict())
    sd["state"][0]["master_param"] = sd["state"][0]["master_param"][:3]
    with pytest.raises(ValueError, match="'master_param' has 36 elements, expected 3072"):
        opt16.load_state_dict(sd)


def test_torch_adam_state_of_a_bf16_model_loads_into_bf16_state():
    """torch.optim.Adam keeps a bf16 model's moments in bf16: fot.Adam with
    state_dtype='bfloat16' takes them, and makes the masters from the
    parameters at its first step."""
    model = make_model(BF16)
    ref = torch.optim.Adam(model.parameters(), lr=1e-3)
    _train(model, ref, data(2), BF16)
    opt = fot.Adam(model.parameters(), lr=1e-3, state_dtype="bfloat16")
    opt.load_state_dict(ref.state_dict())
    _train(model, opt, data(1), BF16)
    st = opt.state[model[0].weight]
    assert float(st["step"]) == 3 and st["master_param"].dtype == torch.float32
    with pytest.raises(ValueError, match="'exp_avg' has dtype torch.bfloat16"):
        fot.Adam(model.parameters()).load_state_dict(ref.state_dict())


def test_what_torch_adam_makes_of_low_precision_state():
    """Documented behaviour of torch.optim.Adam.load_state_dict, which casts
    every floating state tensor to its parameter's dtype: bfloat16 moments
    are widened exactly (a meaningful continuation); 8-bit codes become
    the numbers 0..255 (meaningless: load 8-bit state only into fot with
    state_dtype='int8'); master_param and state_scales are kept, unused."""
    model, opt = _trained("bfloat16")
    twin = torch.optim.Adam(model.parameters(), lr=1e-3)
    twin.load_state_dict(opt.state_dict())
    st = twin.state[model[0].weight]
    assert st["exp_avg"].dtype == torch.float32
    assert torch.equal(st["exp_avg"], opt.state[model[0].weight]["exp_avg"].float())
    model, opt = _trained("int8")
    twin = torch.optim.Adam(model.parameters(), lr=1e-3)
    twin.load_state_dict(opt.state_dict())
    codes = opt.state[model[0].weight]["exp_avg"]
    assert torch.equal(twin.state[model[0].weight]["exp_avg"], codes.float())


# -- hostile input ---------------------------------------------------------------------

def test_float64_and_other_rules_are_rejected_naming_the_parameter():
    with pytest.raises(TypeError, match=r"parameter 0 of param group 0.*float64; fastopt.torch "
                                        r"needs float32 or bfloat16 or float16"):
        fot.Adam([nn.Parameter(torch.zeros(3, dtype=torch.float64))])
    for name in ("SGD", "RMSprop", "Adagrad", "NAdam", "Adamax", "Adadelta", "Lion"):
        with pytest.raises(TypeError, match=r"bfloat16; fastopt.torch needs float32 "
                                            r"\(bfloat16 and float16 parameters: Adam, AdamW\)"):
            getattr(fot, name)([nn.Parameter(torch.zeros(3, dtype=BF16))], lr=0.1)
    with pytest.raises(TypeError, match="flatten_: parameter 0 has dtype torch.float64"):
        fot.flatten_([nn.Parameter(torch.zeros(3, dtype=torch.float64))])


def test_amsgrad_with_low_precision_names_the_option():
    with pytest.raises(ValueError, match=r"amsgrad=True \(param group 0\) needs "
                                         r"state_dtype='float32', not 'bfloat16'"):
        fot.Adam([nn.Parameter(torch.zeros(3))], amsgrad=True, state_dtype="bfloat16")
    with pytest.raises(ValueError, match=r"amsgrad=True and parameter 1 of param group 0 "
                                         r"has dtype torch.bfloat16"):
        fot.AdamW([nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(3, dtype=BF16))],
                  amsgrad=True)
    # switched on later through param_groups: the step is rejected, nothing written
    model, opt = _trained("float32", BF16)
    before = _snapshot(opt)
    params = [p.detach().clone() for p in model.parameters()]
    opt.param_groups[0]["amsgrad"] = True
    backward(model, *data(1, BF16)[0])
    with pytest.raises(ValueError, match="amsgrad=True and parameter 0 of param group 0"):
        opt.step()
    assert _unchanged(opt, before)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))


def test_options_are_checked():
    p = [nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match="state_dtype"):
        fot.Adam(p, state_dtype="float16")
    with pytest.raises(TypeError, match="state_dtype"):
        fot.Adam(p, state_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="state_rounding='stochastic' rounds bfloat16"):
        fot.Adam(p, state_dtype="int8", state_rounding="stochastic")
    with pytest.raises(ValueError, match="state_rounding"):
        fot.Adam(p, state_rounding="down")
    with pytest.raises(ValueError, match="seed"):
        fot.AdamW(p, seed=-1)
    with pytest.raises(TypeError):
        fot.SGD(p, lr=0.1, state_dtype="bfloat16")


def test_importing_fastopt_torch_does_not_import_ml_dtypes(tmp_path):
    code = ("import sys, fastopt, fastopt.torch as fot, torch\n"
            "opt = fot.Adam([torch.nn.Parameter(torch.zeros(3))], state_dtype='int8')\n"
            "assert 'ml_dtypes' not in sys.modules, 'ml_dtypes imported'\n"
            "fot.Adam([torch.nn.Parameter(torch.zeros(3))], state_dtype='bfloat16')\n"
            "assert 'ml_dtypes' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
