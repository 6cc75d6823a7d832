"""Keras 3's own schedule tests (keras/src/optimizers/schedules/
learning_rate_schedule_test.py), ported to fastopt.schedules with their
numbers and tolerances.  ``backend.Variable(step)`` with ``assign`` becomes
a plain number (the schedules take any finite real step, as Keras');
``run_class_serialization_test`` becomes a get_config / from_config /
serialize / deserialize / JSON round trip."""
import json
import math

import numpy as np
import pytest

from fastopt import MLP, schedules
from fastopt.optim import keras as fk


def assert_all_close(actual, desired, rtol=1e-6, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(desired, np.float64),
                               rtol=rtol, atol=atol)


def roundtrip(schedule):
    config = schedule.get_config()
    assert type(schedule).from_config(config).get_config() == config
    wire = json.loads(json.dumps(schedules.serialize(schedule)))
    assert schedules.deserialize(wire).get_config() == config
    assert type(schedules.deserialize(wire)) is type(schedule)
    for step in (0, 3, 17.5):
        assert schedules.deserialize(wire)(step) == schedule(step)


def test_fit_lr_correctness():
    # Dense(2, kernel ones, bias ones), Adam over ExponentialDecay, mse
    model = MLP([2, 2], output="linear", seed=0)
    model.weights[0][...] = 1.0
    model.biases[0][...] = 1.0
    optimizer = fk.Adam(learning_rate=schedules.ExponentialDecay(
        initial_learning_rate=0.05, decay_steps=1, decay_rate=0.9))
    assert optimizer.iterations == 0
    model.compile(optimizer=optimizer, loss="mse")
    x = np.arange(32).reshape((16, 2))
    y = np.arange(32).reshape((16, 2))
    history = model.fit(x, y, epochs=3, batch_size=4, shuffle=False, verbose=0)
    assert optimizer.iterations == 4 * 3
    assert_all_close(history.history["loss"],
                     [230.79457092285156, 128.30319213867188, 79.33648681640625], rtol=5e-5)


# -- ExponentialDecay ----------------------------------------------------------
def test_exponential_config():
    roundtrip(schedules.ExponentialDecay(initial_learning_rate=0.05, decay_steps=10,
                                         decay_rate=0.96, staircase=True, name="my_ed"))


def test_exponential_continuous():
    decayed_lr = schedules.ExponentialDecay(0.05, 10, 0.96)
    assert_all_close(decayed_lr(5), 0.05 * 0.96 ** (5.0 / 10.0), 1e-6)


@pytest.mark.parametrize("test", ["staircase", "variables"])  # the same checks in Keras
def test_exponential_staircase(test):
    decayed_lr = schedules.ExponentialDecay(0.1, 3, 0.96, staircase=True)
    assert_all_close(decayed_lr(1.0), 0.1, 1e-6)
    assert_all_close(decayed_lr(2), 0.1, 1e-6)
    assert_all_close(decayed_lr(100), 0.1 * 0.96 ** (100 // 3), 1e-6)


# -- PiecewiseConstantDecay ------------------------------------------------------
def test_piecewise_config():
    roundtrip(schedules.PiecewiseConstantDecay(boundaries=[10, 20], values=[1, 2, 3],
                                               name="my_pcd"))


def test_piecewise_values():
    decayed_lr = schedules.PiecewiseConstantDecay([100, 110, 120], [1.0, 0.1, 0.01, 0.001])
    for step, want in ((-999.0, 1.0), (100, 1.0), (105, 0.1), (110, 0.1), (120, 0.01),
                       (999, 0.001)):
        assert_all_close(decayed_lr(step), want, 1e-6)


def test_boundary_values():
    decayed_lr = schedules.PiecewiseConstantDecay([1, 2, 3], [0.4, 0.5, 0.6, 0.7])
    for step, want in ((np.int64(0), 0.4), (np.int64(1), 0.4), (np.int64(2), 0.5),
                       (np.int64(3), 0.6), (np.int64(4), 0.7)):
        assert_all_close(decayed_lr(step), want, 1e-6)


# -- PolynomialDecay (LinearDecayTest, SqrtDecayTest) ----------------------------
def test_polynomial_config():
    roundtrip(schedules.PolynomialDecay(initial_learning_rate=0.1, decay_steps=100,
                                        end_learning_rate=0.005, power=1.0, cycle=False,
                                        name="my_ld"))


@pytest.mark.parametrize("power", [1.0, 0.5])  # LinearDecayTest, SqrtDecayTest
def test_polynomial(power):
    lr = 0.05
    if power == 1.0:
        assert_all_close(schedules.PolynomialDecay(lr, 10, 0.0)(5), lr * 0.5, 1e-6)
    else:
        assert_all_close(schedules.PolynomialDecay(lr, 10, 0.0, power=power)(5),
                         lr * 0.5**power, 1e-6)
    end_lr = 0.001
    assert_all_close(schedules.PolynomialDecay(lr, 10, end_lr, power=power)(10), end_lr, 1e-6)
    halfway = ((lr + end_lr) * 0.5 if power == 1.0 else (lr - end_lr) * 0.5**power + end_lr)
    assert_all_close(schedules.PolynomialDecay(lr, 10, end_lr, power=power)(5), halfway, 1e-6)
    assert_all_close(schedules.PolynomialDecay(lr, 10, end_lr, power=power)(15), end_lr, 1e-6)
    assert_all_close(schedules.PolynomialDecay(lr, 10, end_lr, power=power, cycle=True)(15),
                     (lr - end_lr) * 0.25**power + end_lr, 1e-6)


def test_begin_with_cycle():  # SqrtDecayTest
    assert_all_close(schedules.PolynomialDecay(0.001, 10, cycle=True)(0), 0.001, 1e-6)


# -- InverseTimeDecay --------------------------------------------------------------
def test_inverse_time_config():
    roundtrip(schedules.InverseTimeDecay(initial_learning_rate=0.05, decay_steps=10,
                                         decay_rate=0.96, staircase=True, name="my_itd"))


@pytest.mark.parametrize("staircase", [False, True])
def test_inverse_time(staircase):
    initial_lr, k, decay_rate = 0.1, 10, 0.96
    decayed_lr = schedules.InverseTimeDecay(initial_lr, k, decay_rate, staircase=staircase)
    step = 0.0
    for i in range(k + 1):
        expected = (initial_lr / (1 + decay_rate * (i // k)) if staircase
                    else initial_lr / (1 + i / k * decay_rate))
        assert_all_close(decayed_lr(step), expected, 1e-6)
        step += 1


# -- CosineDecay ---------------------------------------------------------------------
def np_cosine_decay(step, decay_steps, alpha=0.0):
    step = min(step, decay_steps)
    completed_fraction = step / decay_steps
    decay = 0.5 * (1.0 + math.cos(math.pi * completed_fraction))
    return (1.0 - alpha) * decay + alpha


def linear_warmup(step, warmup_steps, initial_lr, target_lr):
    return step / warmup_steps * (target_lr - initial_lr)


def test_cosine_config():
    roundtrip(schedules.CosineDecay(initial_learning_rate=0.05, decay_steps=10, alpha=0.1,
                                    warmup_target=0.2, warmup_steps=2, name="my_cd"))


@pytest.mark.parametrize("initial_lr", [1.0, np.float64(1.0)])  # test_decay, test_float64
def test_cosine_decay(initial_lr):
    for step in range(0, 1500, 250):
        assert_all_close(schedules.CosineDecay(initial_lr, 1000)(step),
                         np_cosine_decay(step, 1000), 1e-6)


def test_cosine_warmup():
    for step in range(0, 1500, 250):
        lr = schedules.CosineDecay(0.0, 10, warmup_target=10.0, warmup_steps=1500)
        assert_all_close(lr(step), linear_warmup(step, 1500, 0.0, 10.0))


def test_cosine_alpha():
    for step in range(0, 1500, 250):
        assert_all_close(schedules.CosineDecay(1.0, 1000, 0.1)(step),
                         np_cosine_decay(step, 1000, 0.1), 1e-6)


def test_cosine_warmup_decay():
    for step in range(0, 3000, 250):
        lr = schedules.CosineDecay(0.0, 1000, warmup_target=10.0, warmup_steps=2000)
        if step < 2000 + 1:
            expected = linear_warmup(step, 2000, 0.0, 10.0)
        else:
            expected = 10.0 * np_cosine_decay(step - 2000, 1000)
        assert_all_close(lr(step), expected)


# -- CosineDecayRestarts -------------------------------------------------------------
def np_cosine_decay_restarts(step, decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0):
    fac = 1.0
    while step >= decay_steps:
        step -= decay_steps
        decay_steps *= t_mul
        fac *= m_mul
    completed_fraction = step / decay_steps
    decay = fac * 0.5 * (1.0 + math.cos(math.pi * completed_fraction))
    return (1.0 - alpha) * decay + alpha


def test_restarts_config():
    roundtrip(schedules.CosineDecayRestarts(initial_learning_rate=0.05, first_decay_steps=10,
                                            alpha=0.1, t_mul=3.0, m_mul=4.0, name="my_cdr"))


@pytest.mark.parametrize("initial_lr,kwargs", [
    (1.0, {}), (np.float64(1.0), {}),                  # test_decay, test_float64
    (1.0, dict(alpha=0.1)), (1.0, dict(m_mul=0.9)), (1.0, dict(t_mul=1.0)),  # alpha, mmul, tmul
])
def test_restarts(initial_lr, kwargs):
    for step in range(0, 1500, 250):
        decayed_lr = schedules.CosineDecayRestarts(initial_lr, 1000, **kwargs)
        assert_all_close(decayed_lr(step), np_cosine_decay_restarts(step, 1000, **kwargs), 1e-6)
