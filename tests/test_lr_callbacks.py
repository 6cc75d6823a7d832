"""Issue #19: ReduceLROnPlateau (its learning-rate sequence against
Keras 3's on the same metric sequence, both optimizer families), the
learning rate in the history, CSVLogger, TerminateOnNaN and the epoch
line's step count."""
import csv
import re

import numpy as np
import pytest

from fastopt import MLP, optim
from fastopt.callbacks import CSVLogger, ReduceLROnPlateau, TerminateOnNaN
from fastopt.optim import keras as fk
from frameworks import keras_on_torch

VALUES = [1.0, 0.9, 0.95, 0.899, 0.91, 0.92, 0.93, 0.5, 0.6, 0.7, 0.8, 0.49, 0.7, 0.7, 0.7,
          0.7, 0.7, 0.7, 0.7, 0.7]
SETTINGS = [dict(),
            dict(factor=0.5, patience=2, min_delta=0.01, cooldown=1, min_lr=0.02),
            dict(factor=0.3, patience=1, min_delta=0.0, cooldown=2, min_lr=0.0),
            dict(monitor="val_accuracy", factor=0.5, patience=2, mode="auto"),
            dict(monitor="val_accuracy", factor=0.2, patience=0, mode="max", cooldown=1),
            dict(monitor="val_loss", factor=0.9, patience=1, mode="min", min_lr=0.08)]


def _model(family):
    model = MLP([3, 4, 2], seed=0)
    opt = fk.SGD(learning_rate=0.1) if family == "keras" else optim.SGD(model.params, lr=0.1)
    model.compile(opt, metrics=["accuracy"])
    return model


def _keras_sequence(keras, settings, values):
    k = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    k.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    k.evaluate(np.zeros((1, 3), np.float32), np.zeros(1, np.int64), verbose=0)  # build metrics
    cb = keras.callbacks.ReduceLROnPlateau(**settings)
    cb.set_model(k)
    cb.on_train_begin()
    seen = []
    for epoch, v in enumerate(values):
        logs = {"val_loss": v, "val_accuracy": 1 - v}
        cb.on_epoch_end(epoch, logs)
        seen.append(logs["learning_rate"])
    return seen


@pytest.mark.parametrize("family", ["keras", "torch"])
@pytest.mark.parametrize("settings", SETTINGS)
def test_the_learning_rate_sequence_is_keras(family, settings):
    keras = keras_on_torch()
    want = _keras_sequence(keras, settings, VALUES)
    model = _model(family)
    cb = ReduceLROnPlateau(**settings)
    cb.set_model(model)
    cb.on_train_begin()
    seen = []
    for epoch, v in enumerate(VALUES):
        seen.append(model.optimizer.param_groups[0]["lr"])
        cb.on_epoch_end(epoch, {"val_loss": v, "val_accuracy": 1 - v})
    # Keras keeps the rate in a float32 variable: the same float32 sequence
    np.testing.assert_array_equal(np.float32(seen), np.float32(want))
    assert len(set(seen)) > 1 or not settings


def test_fit_records_the_learning_rate_each_epoch_and_reduces_it(capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = _model("keras")
    plain = model.fit(x, y, epochs=2, verbose=0)
    assert "learning_rate" not in plain.history  # as Keras: only these callbacks log it
    cb = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0, verbose=1)
    hist = model.fit(x, y, epochs=4, verbose=0, callbacks=[cb])
    # the first epoch sets the best; each later one fails to improve by 10
    assert hist.history["learning_rate"] == [0.1, 0.1, float(np.float32(0.05)),
                                             float(np.float32(0.025))]
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.05" in capsys.readouterr().out
    with pytest.raises(ValueError, match="monitors 'val_loss'"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[ReduceLROnPlateau()])


@pytest.mark.parametrize("kwargs,exc", [(dict(factor=1.0), ValueError),
                                        (dict(patience=-1), ValueError),
                                        (dict(monitor=3), TypeError),
                                        (dict(mode="up"), ValueError),
                                        (dict(min_lr=-1), ValueError)])
def test_bad_reduce_lr_arguments(kwargs, exc):
    with pytest.raises(exc):
        ReduceLROnPlateau(**kwargs)


def test_csv_logger_writes_keras_rows(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = _model("torch")
    path = tmp_path / "log.csv"
    first = model.fit(x, y, epochs=2, verbose=0, callbacks=[CSVLogger(path)]).history
    model.fit(x, y, epochs=1, verbose=0, callbacks=[CSVLogger(path, separator=";",
                                                              append=True)])
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss"
    assert len(lines) == 4 and lines[1].startswith("0,") and lines[1].endswith(",NA,NA")
    assert lines[3].startswith("0;") and lines[3].count(";") == 4
    rows = list(csv.DictReader(lines[:3]))
    assert [float(r["loss"]) for r in rows] == pytest.approx(first["loss"], rel=1e-12)
    with pytest.raises(ValueError, match="separator"):
        CSVLogger(path, separator=";;")


def test_terminate_on_nan_stops_at_the_first_non_finite_batch(capsys):
    x = np.ones((40, 3), np.float32)
    y = np.arange(40) % 2  # the first step's huge update makes the second batch's loss nan
    model = MLP([3, 4, 2], seed=0)
    model.compile(fk.SGD(learning_rate=1e38), metrics=["accuracy"])
    hist = model.fit(x * 1e30, y, epochs=3, batch_size=4, verbose=0, on_nonfinite="skip",
                     callbacks=[TerminateOnNaN()])
    assert len(hist.epoch) == 1 and hist.history["skipped_steps"][0] == 1
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="NaN or Inf loss"):
        model.fit(x * 1e30, y, epochs=1, batch_size=4, verbose=0, on_nonfinite="skip",
                  callbacks=[TerminateOnNaN(raise_error=True)])


def test_the_epoch_line_shows_the_steps(capsys):
    x = np.zeros((50, 3), np.float32)
    y = np.zeros(50, np.int64)
    model = _model("keras")
    model.fit(x, y, epochs=2, batch_size=16, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[1] for line in lines] == ["4/4", "4/4"]
    assert lines[0].startswith("Epoch 1/2 - 4/4 - ")
    # the time per step in Keras' units: s, ms or us (a 4-row step here takes microseconds)
    assert re.search(r" - \d+(s|ms|us)/step - loss: ", lines[0]), lines[0]
