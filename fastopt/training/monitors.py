"""Keras' ``ReduceLROnPlateau``, ``CSVLogger`` and ``TerminateOnNaN``
callbacks for ``fit`` (public in :mod:`fastopt.callbacks`)."""
import csv
import math
import os

import numpy as np

from fastopt._validate import check_bool, check_int, check_number
from fastopt.training.callbacks import Callback, _better


def _float_groups(optimizer, who):
    """The optimizer's parameter groups, each with a float learning rate."""
    for group in optimizer.param_groups:
        if callable(group["lr"]):
            raise TypeError(f"{who} cannot drive an optimizer whose learning rate is a "
                            f"schedule")
    return optimizer.param_groups


class ReduceLROnPlateau(Callback):
    """Keras 3's ``ReduceLROnPlateau``: multiply the learning rate by
    ``factor`` when ``monitor`` has not improved by more than ``min_delta``
    for ``patience`` epochs, then wait ``cooldown`` epochs before counting
    again; never below ``min_lr``.

    At each epoch's end, exactly as Keras: in cooldown the cooldown counter
    drops by one and the wait is reset; an improvement (``mode`` 'min':
    ``value < best - min_delta``, 'max': ``value > best + min_delta``,
    'auto': 'max' for an accuracy, else 'min') sets the best and resets the
    wait; otherwise, out of cooldown, the wait grows and on reaching
    ``patience`` every group's learning rate ``lr`` above
    ``float32(min_lr)`` becomes ``max(float32(lr) * factor, min_lr)``
    rounded to float32 (Keras keeps it in a float32 variable, so the
    sequence is Keras' bit for bit), the cooldown starts and
    the wait resets.  Works with both optimizer families (their
    ``param_groups``).  ``verbose`` 1 prints each reduction as Keras does.
    """

    records_learning_rate = True

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a metric name, got {monitor!r}")
        self.monitor = monitor
        self.factor = check_number(factor, "factor", minimum=0, maximum=1, max_open=True)
        self.patience = check_int(patience, "patience", minimum=0)
        self.verbose = check_int(verbose, "verbose", minimum=0)
        self.min_delta = abs(check_number(min_delta, "min_delta"))
        self._better = _better(mode, monitor)
        self.cooldown = check_int(cooldown, "cooldown", minimum=0)
        self.min_lr = check_number(min_lr, "min_lr", minimum=0)
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        groups = _float_groups(self.model.optimizer, "ReduceLROnPlateau")
        if self.monitor not in logs:
            raise ValueError(f"ReduceLROnPlateau monitors {self.monitor!r}, which fit does not "
                             f"report; available: {sorted(logs)}")
        value = logs[self.monitor]
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.best is None or self._better(value, self.best, self.min_delta):
            self.best, self.wait = value, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience and self._reduce(groups, epoch):
                self.cooldown_counter, self.wait = self.cooldown, 0

    def _reduce(self, groups, epoch):
        reduced = False
        for group in groups:
            old = float(np.float32(group["lr"]))  # Keras' float32 variable
            if old > np.float32(self.min_lr):
                new = float(np.float32(max(old * self.factor, self.min_lr)))
                group["lr"] = new
                reduced = True
                if self.verbose:
                    print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                          f"{new}.", flush=True)
        return reduced


class CSVLogger(Callback):
    """Keras' ``CSVLogger``: one row per epoch (``epoch`` and the logs'
    keys, sorted; without validation the ``val_`` columns are added as
    'NA', as Keras does) to ``filename``, separated by ``separator``,
    flushed after every row; ``append`` continues an existing file (its
    header is written only if the file was empty)."""

    def __init__(self, filename, separator=",", append=False):
        self.filename = os.fspath(filename)
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator must be one character, got {separator!r}")
        self.separator = separator
        self.append = check_bool(append, "append")
        self.file = self.writer = self.keys = None

    def on_train_begin(self, logs=None):
        header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename) as f:
                header = not f.readline()
        self.file = open(self.filename, "a" if self.append else "w", newline="")
        self.header, self.writer, self.keys = header, None, None

    def on_epoch_end(self, epoch, logs=None):
        if self.keys is None:
            self.keys = sorted(logs)
            if not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]
            self.writer = csv.DictWriter(self.file, ["epoch"] + self.keys,
                                         delimiter=self.separator)
            if self.header:
                self.writer.writeheader()
        self.writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        self.file.flush()

    def on_train_end(self, logs=None):
        if self.file is not None:
            self.file.close()
            self.file = None


class TerminateOnNaN(Callback):
    """Keras' ``TerminateOnNaN``: when a batch's loss is nan or inf, stop
    training after that batch (``raise_error=True``: RuntimeError).  Such a
    batch is never applied: fit's ``on_nonfinite='raise'`` (default) stops
    with FloatingPointError before any callback sees it; with 'skip' this
    callback ends the run at the first skipped batch."""

    def __init__(self, raise_error=False):
        self.raise_error = check_bool(raise_error, "raise_error")

    def on_batch_end(self, batch, logs=None):
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}.")
            print(f"Batch {batch}: Invalid loss, terminating training", flush=True)
            self.model.stop_training = True


__all__ = ["CSVLogger", "ReduceLROnPlateau", "TerminateOnNaN"]
