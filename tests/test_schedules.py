"""Learning-rate schedules against Keras' and PyTorch's own values."""
import math
import os

import pytest

from fastopt import FlatParameters, optim, schedules
from fastopt.optim import keras as fk


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


FLOAT32_MAX = 3.4028234663852886e38
KERAS_CASES = [
    ("ExponentialDecay", (0.1, 7, 0.5), {}),
    ("ExponentialDecay", (0.1, 7, 0.5), {"staircase": True}),
    ("InverseTimeDecay", (0.1, 5, 0.3), {}),
    ("InverseTimeDecay", (0.1, 5, 0.3), {"staircase": True}),
    ("CosineDecay", (0.1, 40), {}),
    ("CosineDecay", (0.1, 40), {"alpha": 0.1}),
    ("CosineDecay", (0.0, 40), {"warmup_target": 0.2, "warmup_steps": 10}),
    ("CosineDecay", (0.01, 30), {"alpha": 0.05, "warmup_target": 0.1, "warmup_steps": 5}),
    ("PiecewiseConstantDecay", ([10, 20], [0.1, 0.01, 0.001]), {}),
    ("PolynomialDecay", (0.1, 30), {}),
    ("PolynomialDecay", (0.1, 20, 0.01), {"power": 0.5, "cycle": True}),
    ("CosineDecayRestarts", (0.1, 10), {}),
    ("CosineDecayRestarts", (0.1, 7), {"t_mul": 1.0, "m_mul": 0.8, "alpha": 0.1}),
    ("CosineDecayRestarts", (0.1, 5), {"t_mul": 3.0, "m_mul": 0.5}),
]


@pytest.mark.parametrize("name,args,kwargs", KERAS_CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(KERAS_CASES)])
def test_keras_schedules_match_keras(name, args, kwargs):
    keras = _keras()
    ours = getattr(schedules, name)(*args, **kwargs)
    theirs = getattr(keras.optimizers.schedules, name)(*args, **kwargs)
    # Keras evaluates in float32: its values are exact to ~1e-7 of the peak rate
    peak = max(max(args[1]) if name == "PiecewiseConstantDecay" else args[0],
               kwargs.get("warmup_target") or 0)
    for step in range(0, 60):
        want = float(keras.ops.convert_to_numpy(theirs(step)))
        assert ours(step) == pytest.approx(want, rel=1e-6, abs=1e-6 * peak), step


@pytest.mark.parametrize("name,args,kwargs", KERAS_CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(KERAS_CASES)])
def test_keras_schedules_match_keras_at_negative_and_fractional_steps(name, args, kwargs):
    """Keras' tests call schedules with negative steps (-999): its formulas
    run there, giving what they give (inf, nan included).  fastopt computes
    in float64 where Keras computes in float32, so where Keras' value
    overflows float32 to inf fastopt's is finite beyond float32's range, and
    huge values differ by float32's rounding of the exponent (rel 5e-5)."""
    keras = _keras()
    ours = getattr(schedules, name)(*args, **kwargs)
    theirs = getattr(keras.optimizers.schedules, name)(*args, **kwargs)
    for step in (-999, -25, -7, -1, -0.5, 0.5, 2.25, 13.75):
        want = float(keras.ops.convert_to_numpy(theirs(step)))
        got = ours(step)
        if want == math.inf and got > FLOAT32_MAX:
            continue
        if not math.isfinite(want):
            assert got == want or (math.isnan(got) and math.isnan(want)), step
        else:
            assert got == pytest.approx(want, rel=5e-5 if abs(want) > 1e6 else 1e-5,
                                        abs=1e-7), step


TORCH_CASES = [
    ("StepLR", {"step_size": 3, "gamma": 0.5}),
    ("ExponentialLR", {"gamma": 0.9}),
    ("CosineAnnealingLR", {"T_max": 10, "eta_min": 0.001}),
    ("CosineAnnealingLR", {"T_max": 4}),  # past T_max the cosine goes on
]


@pytest.mark.parametrize("name,kwargs", TORCH_CASES, ids=[n for n, _ in TORCH_CASES])
def test_torch_schedulers_match_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    flat = FlatParameters([(3,)])
    ours_opt = optim.SGD(flat, lr=0.1, momentum=0.9)
    t = torch.nn.Parameter(torch.zeros(3))
    theirs_opt = torch.optim.SGD([t], lr=0.1, momentum=0.9)
    ours = getattr(schedules, name)(ours_opt, **kwargs)
    theirs = getattr(torch.optim.lr_scheduler, name)(theirs_opt, **kwargs)
    for epoch in range(15):
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-9, abs=1e-12)
        ours_opt.step()
        theirs_opt.step()
        ours.step()
        theirs.step()


def test_torch_style_scheduler_drives_keras_family():
    flat = FlatParameters([(3,)])
    opt = fk.Adam(learning_rate=0.01)
    opt.build(flat)
    sched = schedules.StepLR(opt, step_size=2, gamma=0.1)
    for _ in range(4):
        sched.step()
    assert opt.learning_rate == pytest.approx(0.01 * 0.1 ** 2)


def test_keras_schedule_drives_torch_family():
    flat = FlatParameters([(3,)])
    opt = optim.SGD(flat, lr=1.0)
    schedule = schedules.CosineDecay(0.0, 10, warmup_target=0.5, warmup_steps=5)
    sched = schedules.ScheduleLR(opt, schedule)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([schedule(s) for s in range(8)])
    assert seen[:6] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])


def test_scheduler_state_dict_round_trip():
    flat = FlatParameters([(3,)])
    a = schedules.ExponentialLR(optim.SGD(flat, lr=0.1), gamma=0.5)
    for _ in range(3):
        a.step()
    b = schedules.ExponentialLR(optim.SGD(FlatParameters([(3,)]), lr=0.1), gamma=0.5)
    b.load_state_dict(a.state_dict())
    assert b.get_last_lr() == a.get_last_lr() == [pytest.approx(0.1 * 0.5 ** 3)]


@pytest.mark.parametrize("make,exc,match", [
    (lambda: schedules.ExponentialDecay(0.1, 0, 0.5), ValueError, "decay_steps must be > 0"),
    (lambda: schedules.ExponentialDecay(0.1, 10, float("nan")), ValueError,
     "decay_rate must be finite"),
    (lambda: schedules.CosineDecay(0.1, 10, alpha=2), ValueError, r"alpha must be in \[0, 1\]"),
    (lambda: schedules.CosineDecay(0.1, 10, warmup_steps=5), ValueError, "needs warmup_target"),
    (lambda: schedules.PiecewiseConstantDecay([5, 3], [1, 2, 3]), ValueError,
     "strictly increasing"),
    (lambda: schedules.PiecewiseConstantDecay([5], [1]), ValueError, "one more entry"),
    (lambda: schedules.StepLR(optim.SGD(FlatParameters([(1,)]), lr=0.1), step_size=0),
     ValueError, "step_size must be an int >= 1"),
    (lambda: schedules.InverseTimeDecay("0.1", 1, 1), TypeError,
     "initial_learning_rate must be a number"),
    # Keras 3 computes its formulas at negative and fractional steps (its own
    # tests call schedules with them), so only a non-finite step is refused
    (lambda: schedules.ExponentialDecay(0.1, 10, 0.5)(float("nan")), ValueError,
     "step must be a finite number"),
])
def test_bad_schedule_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("make,exc,match", [
    (lambda: schedules.ExponentialDecay(0.1, 10, 0.5)("1"), TypeError, "step must be a number"),
    (lambda: schedules.ExponentialDecay(0.1, 10, 0.5)(True), TypeError, "step must be a number"),
    (lambda: schedules.StepLR(optim.SGD(FlatParameters([(1,)]), lr=0.1), step_size=2.0),
     TypeError, "step_size must be an int"),
    (lambda: schedules.CosineDecay(0.1, 10, alpha=None), TypeError, "alpha must be a number"),
    (lambda: schedules.CosineDecay(0.1, 10, alpha=float("inf")), ValueError,
     "alpha must be finite"),
    (lambda: schedules.ExponentialLR(optim.SGD(FlatParameters([(1,)]), lr=0.1), gamma=-1),
     ValueError, "gamma must be >= 0"),
    (lambda: schedules.PiecewiseConstantDecay([1, "2"], [1, 2, 3]), TypeError,
     "boundaries must be a number"),
])
def test_wrong_type_is_type_error_wrong_value_value_error(make, exc, match):
    with pytest.raises(exc, match=match):
        make()
