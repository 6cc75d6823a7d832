"""Training checkpoints: everything needed to resume a run exactly.

A checkpoint is one ``.npz`` file holding the model's architecture and
weights, how it was compiled, the optimizer (class, hyperparameters, every
state buffer and step count), the number of epochs completed, the state of
the model's random generator (which shuffles the batches), the history so
far, and whatever the caller adds (``extra``, e.g. the command line's
arguments).  It is written atomically: a temporary file in the same
directory, then a rename, so an interrupted save never destroys the
previous checkpoint.  Resuming with ``fit(..., initial_epoch=epoch)`` ends
with exactly the weights of an uninterrupted run.
"""
import json
import os
import zipfile

import numpy as np

from fastopt import optim
from fastopt.optim import schedules
from fastopt._io import atomic_savez
from fastopt.optim.keras import KerasOptimizer

_FORMAT = "fastopt.checkpoint/1"


def _encode(value):
    """Hyperparameters as JSON: schedules by class and config, tuples as lists."""
    if isinstance(value, schedules.LearningRateSchedule):
        return {"__schedule__": type(value).__name__, "config": value.get_config()}
    if callable(value):
        raise TypeError(f"cannot checkpoint a learning rate of type {type(value).__name__}; "
                        f"use a fastopt.schedules schedule")
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


def _decode(value):
    if isinstance(value, dict) and "__schedule__" in value:
        cls = getattr(schedules, value["__schedule__"], None)
        if not (isinstance(cls, type) and issubclass(cls, schedules.LearningRateSchedule)):
            raise ValueError(f"unknown schedule {value['__schedule__']!r}")
        return cls(**value["config"])
    return value


def _optimizer_meta(opt):
    sd = opt.state_dict()
    if isinstance(opt, KerasOptimizer):
        config = opt.get_config()
    else:
        config = dict(opt.defaults)
        if type(opt) is optim.AdamW:
            config.pop("decoupled_weight_decay", None)
    groups = [{k: _encode(v) for k, v in g.items()} for g in sd["param_groups"]]
    steps = {str(i): entry["step"] for i, entry in sd["state"].items()}
    return ({"family": opt.family, "class": type(opt).__name__,
             "config": {k: _encode(v) for k, v in config.items()},
             "param_groups": groups, "steps": steps, "kind": sd["optimizer"]},
            {f"state/{i}/{name}": arr for i, entry in sd["state"].items()
             for name, arr in entry.items() if name != "step"})


def _rebuild_optimizer(meta, arrays, model):
    family = {"torch": optim, "keras": optim.keras}.get(meta["family"])
    cls = getattr(family, meta["class"], None) if family else None
    if not (isinstance(cls, type) and issubclass(cls, optim.Optimizer)):
        raise ValueError(f"unknown optimizer {meta['family']}.{meta['class']}")
    config = {k: _decode(v) for k, v in meta["config"].items()}
    pairs = list(model.params)
    groups = [{k: _decode(v) for k, v in g.items()} for g in meta["param_groups"]]
    if issubclass(cls, KerasOptimizer):
        opt = cls.from_config(config)
    else:
        opt = cls([{"params": [pairs[i] for i in g["params"]]} for g in groups], **config)
    state = {}
    for i, step in meta["steps"].items():
        entry = {"step": int(step)}
        prefix = f"state/{i}/"
        entry.update({k[len(prefix):]: arrays[k] for k in arrays if k.startswith(prefix)})
        state[int(i)] = entry
    return opt, {"state": state, "param_groups": groups, "optimizer": meta["kind"]}


def save(path, model, epoch, history=None, extra=None):
    """Write a checkpoint of a compiled ``model`` after ``epoch`` epochs."""
    if model.optimizer is None:
        raise RuntimeError("only a compiled model can be checkpointed")
    opt_meta, opt_arrays = _optimizer_meta(model.optimizer)
    meta = {
        "format": _FORMAT,
        "model": model.get_config(),
        "compile": {"loss": model.loss, "metrics": model.metrics},
        "optimizer": opt_meta,
        "epoch": int(epoch),
        "rng": model._rng.bit_generator.state,
        "history": None if history is None else {"epoch": history.epoch,
                                                 "history": history.history,
                                                 "epoch_seconds": history.epoch_seconds},
        "extra": extra,
    }
    atomic_savez(path, meta=np.array(json.dumps(meta)), params=model.params.data, **opt_arrays)


class Checkpoint:
    """What :func:`load` returns: ``model`` (compiled, optimizer state
    restored), ``epoch`` (epochs completed), ``history`` and ``extra``."""

    def __init__(self, model, epoch, history, extra):
        self.model, self.epoch, self.history, self.extra = model, epoch, history, extra


def load(path):
    """Read a checkpoint written by :func:`save` (or ``fit(checkpoint=...)``)."""
    from fastopt.training.model import MLP, History

    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != _FORMAT:
                raise ValueError("not a fastopt checkpoint")
            params = data["params"]
            arrays = {k: data[k] for k in data.files if k.startswith("state/")}
        model = MLP(**meta["model"])
        if params.shape != model.params.data.shape or params.dtype != np.float32:
            raise ValueError(f"holds {params.size} parameters, the architecture needs "
                             f"{model.params.size}")
        model.params.data[:] = params
        opt, state_dict = _rebuild_optimizer(meta["optimizer"], arrays, model)
        model.compile(opt, loss=meta["compile"]["loss"], metrics=meta["compile"]["metrics"])
        opt.load_state_dict(state_dict)
        model._rng.bit_generator.state = meta["rng"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such checkpoint file") from None
    except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a usable fastopt checkpoint ({exc})") from None
    history = History()
    if meta["history"]:
        history.epoch = list(meta["history"]["epoch"])
        history.history = {k: list(v) for k, v in meta["history"]["history"].items()}
        history.epoch_seconds = list(meta["history"]["epoch_seconds"])
    model.history = history  # fit(..., initial_epoch=epoch) appends to it
    return Checkpoint(model, meta["epoch"], history, meta["extra"])
