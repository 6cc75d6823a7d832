"""Training callbacks for :meth:`fastopt.MLP.fit`, shaped like Keras'.

A callback may define ``on_train_begin(model)``, ``on_epoch_begin(epoch)``,
``on_batch_end(batch, logs)``, ``on_epoch_end(epoch, logs)`` and
``on_train_end(logs)``; it can stop training by setting
``model.stop_training = True``.  ``logs`` holds the epoch's metrics
('loss', 'accuracy', 'val_loss', 'val_accuracy').
"""
import math
import sys


class Callback:
    model = None

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


def _better(mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
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
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an int >= 0, got {patience!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = abs(float(min_delta))
        self._better = _better(mode, monitor)
        self.restore_best_weights = restore_best_weights
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

    def on_epoch_begin(self, epoch, logs=None):
        for group in self.model.optimizer.param_groups:
            lr = group["lr"]
            if callable(lr):
                raise TypeError("LearningRateScheduler cannot drive an optimizer whose "
                                "learning rate is already a schedule")
            new = float(self.schedule(epoch, float(lr)))
            if not (math.isfinite(new) and new >= 0):
                raise ValueError(f"the schedule returned learning rate {new!r} at epoch {epoch}")
            group["lr"] = new


class ModelCheckpoint(Callback):
    """Write a full training checkpoint (weights, optimizer state, epoch,
    random state, history) to ``path`` after every epoch, atomically, so
    ``fit(..., initial_epoch=...)`` after :func:`fastopt.checkpoint.load`
    ends with exactly the weights of an uninterrupted run."""

    def __init__(self, path, extra=None):
        self.path = path
        self.extra = extra

    def on_epoch_end(self, epoch, logs=None):
        from fastopt.training.checkpoint import save

        save(self.path, self.model, epoch + 1, self.model.history, self.extra)


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


def _as_list(callbacks):
    if callbacks is None:
        return []
    out = list(callbacks)
    for c in out:
        if not isinstance(c, Callback):
            raise TypeError(f"callbacks must be fastopt.callbacks.Callback instances, "
                            f"got {type(c).__name__}")
    return out


__all__ = ["Callback", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint",
           "ProgressBar"]
