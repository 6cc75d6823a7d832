"""Training callbacks for :meth:`fastopt.MLP.fit`, shaped like Keras'.

A callback may define ``on_train_begin(logs)``, ``on_epoch_begin(epoch)``,
``on_batch_end(batch, logs)``, ``on_epoch_end(epoch, logs)`` and
``on_train_end(logs)``; it can stop training by setting
``model.stop_training = True``.  ``logs`` holds the epoch's metrics
('loss', 'accuracy', 'val_loss', 'val_accuracy').  ``fit`` runs its
callbacks through a :class:`CallbackList`, which also owns the
:class:`History` and the progress output, as Keras' does.
"""
import sys
import time

from fastopt._validate import check_bool, check_choice, check_int, check_number
from fastopt.training.checkpoint_file import save as save_checkpoint


class Callback:
    model = None
    #: fit adds the epoch's float learning rate to the logs ('learning_rate',
    #: in the history too) when a callback sets this, as Keras 3's
    #: LearningRateScheduler and ReduceLROnPlateau log it
    records_learning_rate = False

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass


class History(Callback):
    """What ``fit`` returns (and ``model.history``): ``history`` maps each
    metric ('loss', 'accuracy', 'val_loss', 'val_accuracy') to one value per
    epoch; ``epoch`` lists the epochs run and ``epoch_seconds`` their
    wall-clock durations; ``distributed`` what a distributed fit's end-of-run
    check found (ranks, mode, whether every rank's parameters were identical,
    their hash), None otherwise."""

    def __init__(self):
        self.distributed = None
        self.history = {}
        self.epoch = []
        self.epoch_seconds = []
        self._start = None

    def set_model(self, model):
        super().set_model(model)
        model.history = self

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        self.epoch_seconds.append(time.perf_counter() - self._start)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def to_dict(self):
        """The record as plain JSON-able data (for checkpoints)."""
        return {"epoch": list(self.epoch), "history": {k: list(v) for k, v in
                                                        self.history.items()},
                "epoch_seconds": list(self.epoch_seconds)}

    @classmethod
    def from_dict(cls, data):
        """The History that :meth:`to_dict` described."""
        history = cls()
        history.epoch = list(data["epoch"])
        history.history = {k: list(v) for k, v in data["history"].items()}
        history.epoch_seconds = list(data["epoch_seconds"])
        return history

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


def _better(mode, monitor):
    check_choice(mode, "mode", ("auto", "min", "max"))
    if mode == "auto":
        mode = "max" if "acc" in monitor else "min"
    return (lambda a, b, delta: a > b + delta) if mode == "max" else \
        (lambda a, b, delta: a < b - delta)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for
    ``patience`` epochs (Keras' ``EarlyStopping``).  With
    ``restore_best_weights`` the model ends with the weights of its best
    epoch."""

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto",
                 restore_best_weights=False):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a metric name, got {monitor!r}")
        self.monitor = monitor
        self.patience = check_int(patience, "patience", minimum=0)
        self.min_delta = abs(check_number(min_delta, "min_delta"))
        self._better = _better(mode, monitor)
        self.restore_best_weights = check_bool(restore_best_weights, "restore_best_weights")
        self.stopped_epoch = None
        self.best_epoch = None

    def on_train_begin(self, logs=None):
        self.best = None
        self.best_weights = None
        self.wait = 0

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which fit does not "
                             f"report; available: {sorted(logs)}")
        value = logs[self.monitor]
        if self.best is None or self._better(value, self.best, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.params.data.copy()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.params.data[:] = self.best_weights


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to
    ``schedule(epoch, lr)`` (Keras' ``LearningRateScheduler``; ``epoch`` is
    0-based)."""

    def __init__(self, schedule):
        if not callable(schedule):
            raise TypeError("schedule must be callable as schedule(epoch, lr)")
        self.schedule = schedule

    records_learning_rate = True

    def on_epoch_begin(self, epoch, logs=None):
        for group in self.model.optimizer.param_groups:
            lr = group["lr"]
            if callable(lr):
                raise TypeError("LearningRateScheduler cannot drive an optimizer whose "
                                "learning rate is already a schedule")
            new = self.schedule(epoch, float(lr))
            group["lr"] = check_number(new, f"the learning rate the schedule returned at "
                                            f"epoch {epoch}", minimum=0)


class ModelCheckpoint(Callback):
    """Write a full training checkpoint (weights, optimizer state, epoch,
    random state, history) to ``path`` after every epoch, atomically, so
    ``fit(..., initial_epoch=...)`` after :func:`fastopt.checkpoint.load`
    ends with exactly the weights of an uninterrupted run."""

    def __init__(self, path, extra=None):
        self.path = path
        self.extra = extra

    def on_epoch_end(self, epoch, logs=None):
        save_checkpoint(self.path, self.model, epoch + 1, self.model.history, self.extra)


class ProgressBar(Callback):
    """A tqdm progress bar over each epoch's batches, with the running loss."""

    def __init__(self, steps, epochs, file=None):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.steps, self.epochs = steps, epochs
        self.file = file or sys.stderr
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = self._tqdm(total=self.steps, desc=f"Epoch {epoch + 1}/{self.epochs}",
                              unit="batch", leave=False, file=self.file, mininterval=0.2,
                              dynamic_ncols=True)

    def on_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if batch % 50 == 0:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()


def _isatty(stream):
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def resolve_verbose(verbose, stream=None):
    """``fit``'s ``verbose`` as 0, 1 or 2: 'auto' is 1 when the progress
    stream (``stream``, default stderr) is a terminal, else 2 (Keras)."""
    if isinstance(verbose, str):
        check_choice(verbose, "verbose", ("auto",))
        return 1 if _isatty(stream or sys.stderr) else 2
    if isinstance(verbose, bool):
        return int(verbose)
    return check_int(verbose, "verbose", minimum=0, maximum=2)


class ProgbarLogger(Callback):
    """``fit``'s progress output.  ``verbose=1``: a tqdm bar over each
    epoch's batches on ``stream`` (default stderr) -- only if it is a
    terminal, so a redirected log never gets carriage-return bars -- and a
    line per epoch on stdout; ``verbose=2``: the line only."""

    def __init__(self, verbose, steps, epochs, history, stream=None):
        stream = stream or sys.stderr
        self.bar = ProgressBar(steps, epochs, stream) if verbose == 1 and _isatty(stream) \
            else None
        self.epochs, self.steps, self.done = epochs, steps, 0
        self.history = history

    def on_epoch_begin(self, epoch, logs=None):
        self.done = 0
        if self.bar:
            self.bar.on_epoch_begin(epoch)

    def on_batch_end(self, batch, logs=None):
        self.done += 1
        if self.bar:
            self.bar.on_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        """The epoch's line, with the steps run as Keras counts them
        (``1688/1688``) and the time per step."""
        if self.bar:
            self.bar.on_epoch_end(epoch)
        parts = " - ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}"
                           for k, v in logs.items())
        seconds = self.history.epoch_seconds[-1]
        per_step = f" - {_per_unit(seconds / self.done)}/step" if self.done else ""
        print(f"Epoch {epoch + 1}/{self.epochs} - {self.done}/{self.steps} - {seconds:.2f}s"
              f"{per_step} - {parts}", flush=True)


def _per_unit(seconds):
    """A time per step as Keras' progress bar writes it: whole seconds,
    milliseconds or microseconds (``2s``, ``486ms``, ``57us``)."""
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"


def _as_list(callbacks):
    if callbacks is None:
        return []
    out = list(callbacks)
    for c in out:
        if not isinstance(c, Callback):
            raise TypeError(f"callbacks must be fastopt.callbacks.Callback instances, "
                            f"got {type(c).__name__}")
    return out


class CallbackList(Callback):
    """The callbacks of one ``fit``, called in order, as Keras'
    ``CallbackList``: with ``add_history`` a :class:`History` first
    (``history``, or a new one), then ``callbacks``, then with
    ``add_progbar`` the :class:`ProgbarLogger` for ``verbose`` 1 or 2 over
    ``epochs`` epochs of ``steps`` batches."""

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, *,
                 verbose=1, epochs=1, steps=None, history=None):
        self.callbacks = _as_list(callbacks)
        self.history = None
        if add_history:
            self.history = history if history is not None else History()
            self.callbacks.insert(0, self.history)
        if add_progbar:
            if not add_history:
                raise ValueError("the progress output reports the History's epoch times: "
                                 "add_progbar needs add_history=True")
            self.callbacks.append(ProgbarLogger(verbose, steps, epochs, self.history))
        if model is not None:
            self.set_model(model)

    def set_model(self, model):
        super().set_model(model)
        for c in self.callbacks:
            c.set_model(model)

    @property
    def records_learning_rate(self):
        return any(c.records_learning_rate for c in self.callbacks)

    def on_train_begin(self, logs=None):
        for c in self.callbacks:
            c.on_train_begin()

    def on_epoch_begin(self, epoch, logs=None):
        for c in self.callbacks:
            c.on_epoch_begin(epoch)

    def on_batch_end(self, batch, logs=None):
        for c in self.callbacks:
            c.on_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for c in self.callbacks:
            c.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        for c in self.callbacks:
            c.on_train_end(logs)


__all__ = ["Callback", "CallbackList", "EarlyStopping", "History", "LearningRateScheduler",
           "ModelCheckpoint", "ProgbarLogger", "ProgressBar"]
