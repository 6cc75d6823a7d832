"""Callbacks, non-finite losses, and checkpoints that resume exactly."""
import json
import os
import stat

import numpy as np
import pytest

from fastopt import MLP, checkpoint, optim, schedules
from fastopt.callbacks import Callback, CallbackList, EarlyStopping, History, \
    LearningRateScheduler
from fastopt.training import checkpoint as training_checkpoint


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    return x, np.argmax(x @ rng.standard_normal((6, 3)), axis=1)


def _model(seed=1, opt=None):
    model = MLP([6, 8, 3], seed=seed)
    model.compile(opt(model) if opt else "adam", metrics=["accuracy"])
    return model


def test_early_stopping_restores_the_best_weights():
    x, y = _data()
    xv, yv = _data(40, seed=9)
    model = _model(opt=lambda m: optim.keras.SGD(learning_rate=2.0))  # unstable on purpose
    snapshots = []

    class Snap(Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append((logs["val_loss"], self.model.params.data.copy()))

    stop = EarlyStopping(patience=1, restore_best_weights=True)
    hist = model.fit(x, y, epochs=30, validation_data=(xv, yv), callbacks=[Snap(), stop],
                     verbose=0)
    best_loss, best_params = min(snapshots, key=lambda s: s[0])
    assert len(hist.epoch) < 30 and stop.stopped_epoch is not None
    np.testing.assert_array_equal(model.params.data, best_params)
    assert hist.history["val_loss"][stop.best_epoch] == best_loss


def test_early_stopping_unknown_monitor():
    x, y = _data()
    with pytest.raises(ValueError, match="monitors 'val_auc'"):
        _model().fit(x, y, epochs=1, callbacks=[EarlyStopping("val_auc")], verbose=0)


def test_learning_rate_scheduler_sets_lr_per_epoch():
    x, y = _data()
    model = _model(opt=lambda m: optim.SGD(m.params, lr=0.1))
    seen = []

    class Record(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(self.model.optimizer.param_groups[0]["lr"])

    model.fit(x, y, epochs=3, callbacks=[LearningRateScheduler(lambda e, lr: 0.1 * 0.5 ** e),
                                          Record()], verbose=0)
    assert seen == pytest.approx([0.1, 0.05, 0.025])


def _blowing_up():
    """lr 1e35: batch 1's update makes the weights ~1e35, so from batch 2 on
    the forward pass overflows to inf and nan."""
    return _model(opt=lambda m: optim.keras.SGD(learning_rate=1e35))


def test_non_finite_loss_stops_naming_epoch_and_batch():
    x, y = _data()
    model = _blowing_up()
    with pytest.raises(FloatingPointError,
                       match=r"non-finite (loss|gradient) \(loss \S+\) at epoch 1, batch 2 of 4"):
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert np.isfinite(model.params.data).all()  # the weights after batch 1, not nan
    assert model.optimizer.iterations == 1


def test_non_finite_loss_can_be_skipped():
    x, y = _data()
    model = _blowing_up()
    hist = model.fit(x, y, batch_size=32, epochs=2, on_nonfinite="skip", verbose=0)
    assert hist.history["skipped_steps"] == [3, 4]
    assert model.optimizer.iterations == 1 and np.isfinite(model.params.data).all()


def test_optimizer_skips_a_non_finite_gradient_whole():
    flat = MLP([6, 8, 3], seed=0).params
    opt = optim.Adam(flat)
    flat.grad[:] = 1.0
    flat.grad[-1] = np.nan  # in the last tensor only
    before = flat.data.copy()
    assert opt.step(skip_nonfinite=True) is True
    np.testing.assert_array_equal(flat.data, before)
    flat.grad[-1] = 0.0
    assert opt.step(skip_nonfinite=True) is False
    assert not np.array_equal(flat.data, before)


class _Interrupt(Callback):
    def __init__(self, after):
        self.after = after

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after:
            raise KeyboardInterrupt


@pytest.mark.parametrize("make_opt", [
    lambda m: optim.keras.Adam(learning_rate=schedules.CosineDecay(0.0, 30, warmup_target=0.01,
                                                                  warmup_steps=8)),
    lambda m: optim.keras.RMSprop(momentum=0.5, centered=True, global_clipnorm=1.0),
    lambda m: optim.SGD(m.params, lr=0.05, momentum=0.9, nesterov=True),
    lambda m: optim.Adam([{"params": list(m.params)[:2]},
                          {"params": list(m.params)[2:], "lr": 0.01}], amsgrad=True),
], ids=["keras-adam-schedule", "keras-rmsprop", "torch-sgd", "torch-adam-groups"])
def test_resume_from_checkpoint_equals_uninterrupted(tmp_path, make_opt):
    x, y = _data()
    path = tmp_path / "ck.npz"
    full = _model(opt=make_opt)
    full.fit(x, y, batch_size=16, epochs=5, validation_split=0.2, verbose=0)
    part = _model(opt=make_opt)
    with pytest.raises(KeyboardInterrupt):
        part.fit(x, y, batch_size=16, epochs=5, validation_split=0.2, verbose=0,
                 callbacks=[_Interrupt(after=3)], checkpoint=path)
    ck = checkpoint.load(path)
    assert ck.epoch == 2  # the interrupt came before epoch 3's checkpoint was written
    hist = ck.model.fit(x, y, batch_size=16, epochs=5, validation_split=0.2, verbose=0,
                        initial_epoch=ck.epoch)
    np.testing.assert_array_equal(ck.model.params.data, full.params.data)
    assert hist.history["loss"] == full.history.history["loss"]
    assert hist.epoch == [0, 1, 2, 3, 4]


def test_bad_checkpoints(tmp_path):
    x, y = _data()
    model = _model()
    path = tmp_path / "ck.npz"
    model.fit(x, y, epochs=1, verbose=0, checkpoint=path)
    (tmp_path / "t.npz").write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="not a usable fastopt checkpoint"):
        checkpoint.load(tmp_path / "t.npz")
    model.save(tmp_path / "model.npz")  # a model file is not a checkpoint
    with pytest.raises(ValueError, match="not a usable fastopt checkpoint"):
        checkpoint.load(tmp_path / "model.npz")
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        checkpoint.load(tmp_path / "none.npz")


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    x, y = _data()
    model = _model()
    path = tmp_path / "ck.npz"
    model.fit(x, y, epochs=1, verbose=0, checkpoint=path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        model.fit(x, y, epochs=1, verbose=0, checkpoint=path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]


def test_callbacks_must_be_callbacks():
    x, y = _data()
    with pytest.raises(TypeError, match="callbacks must be fastopt.callbacks.Callback"):
        _model().fit(x, y, callbacks=[print], verbose=0)


def _rewrite_meta(src, dst, change):
    with np.load(src) as data:
        members = {k: data[k] for k in data.files}
    meta = json.loads(str(members["meta"]))
    change(meta)
    members["meta"] = np.array(json.dumps(meta))
    np.savez(dst, **members)


def test_a_checkpoint_whose_config_disagrees_with_its_parameters_is_refused_first(tmp_path):
    x, y = _data()
    path = tmp_path / "ck.npz"
    _model().fit(x, y, epochs=1, verbose=0, checkpoint=path)
    _rewrite_meta(path, tmp_path / "huge.npz",
                  lambda meta: meta["model"].update(layer_sizes=[3_000_000_000, 3]))
    with pytest.raises(ValueError, match=r"huge\.npz: not a usable fastopt checkpoint \(holds "
                                         r"83 parameters of float32, the architecture "
                                         r"\[3000000000, 3\] needs 9000000003"):
        checkpoint.load(tmp_path / "huge.npz")
    _rewrite_meta(path, tmp_path / "partial.npz", lambda meta: meta.pop("optimizer"))
    with pytest.raises(ValueError, match=r"not a usable fastopt checkpoint \(no 'optimizer' "
                                         r"entry\)"):
        checkpoint.load(tmp_path / "partial.npz")


@pytest.mark.parametrize("bug", [TypeError, KeyError])
def test_checkpoint_load_lets_programming_errors_through(tmp_path, monkeypatch, bug):
    x, y = _data()
    path = tmp_path / "ck.npz"
    _model().fit(x, y, epochs=1, verbose=0, checkpoint=path)

    def broken(*args):
        raise bug("a bug, not a bad file")

    monkeypatch.setattr(training_checkpoint, "rebuild_optimizer", broken)
    with pytest.raises(bug, match="a bug"):
        checkpoint.load(path)


def test_checkpoints_get_the_mode_the_umask_gives(tmp_path):
    x, y = _data()
    old = os.umask(0o027)
    try:
        _model().fit(x, y, epochs=1, verbose=0, checkpoint=tmp_path / "ck.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "ck.npz").st_mode) == 0o640


def test_callback_list_owns_history_and_progress_output(capsys):
    x, y = _data()
    model = _model()
    seen = []

    class Record(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(len(self.model.history.epoch))  # History records first

    callbacks = CallbackList([Record()], add_history=True, add_progbar=True, model=model,
                             verbose=2, epochs=1, steps=4)
    assert isinstance(callbacks.history, History) and model.history is callbacks.history
    callbacks.on_train_begin()
    callbacks.on_epoch_begin(0)
    callbacks.on_epoch_end(0, {"loss": 0.5})
    assert seen == [1] and callbacks.history.history == {"loss": [0.5]}
    assert capsys.readouterr().out.startswith("Epoch 1/1 - ")
    with pytest.raises(TypeError, match="callbacks must be"):
        CallbackList([print])


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"patience": 1.5}, TypeError, "patience must be an int"),
    ({"patience": -1}, ValueError, "patience must be an int >= 0"),
    ({"min_delta": "0"}, TypeError, "min_delta must be a number"),
    ({"mode": "maximum"}, ValueError, "mode must be one of"),
    ({"restore_best_weights": 1}, TypeError, "restore_best_weights must be True or False"),
    ({"monitor": 3}, TypeError, "monitor must be a metric name"),
])
def test_early_stopping_checks_its_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        EarlyStopping(**kwargs)
