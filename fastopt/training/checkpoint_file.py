"""The checkpoint file format: writing a checkpoint, and reading one back
into its parts (:mod:`fastopt.training.checkpoint` turns those into a model).

Training checkpoints hold everything needed to resume a run exactly.

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

import numpy as np

from fastopt import optim
from fastopt.optim import schedules
from fastopt._io import atomic_savez
from fastopt.optim.keras import KerasOptimizer
from fastopt.training.architecture import check_stored
from fastopt.training.files import parse_json, read_npz

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


def rebuild_optimizer(meta, arrays, model):
    """The optimizer a checkpoint describes (``meta``: its 'optimizer'
    entry; ``arrays``: its state members), over ``model``'s parameters, and
    the state dict to load into it."""
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
        "compile": model.compile_config(),
        "optimizer": opt_meta,
        "epoch": int(epoch),
        "rng": model.rng_state,
        "history": None if history is None else history.to_dict(),
        "extra": extra,
    }
    atomic_savez(path, meta=np.array(json.dumps(meta)), params=model.params.data, **opt_arrays)


def read(path, build):
    """``build(meta, params, state_arrays)`` from the checkpoint ``path``,
    once its parameters are checked against its model config.  ``build``
    rebuilds the optimizer with :func:`rebuild_optimizer`."""
    def parse(members):
        meta = parse_json(str(members["meta"]))
        if meta.get("format") != _FORMAT:
            raise ValueError("not a fastopt checkpoint")
        params = members["params"]
        check_stored(meta["model"], params)
        arrays = {k: members[k] for k in members.names() if k.startswith("state/")}
        return build(meta, params, arrays)

    return read_npz(path, "checkpoint file", "not a usable fastopt checkpoint", parse)
