"""Resumable training checkpoints: :func:`save` one after an epoch (as
``fit(checkpoint=...)`` does), :func:`load` it to resume with
``fit(..., initial_epoch=checkpoint.epoch)``, which ends with exactly the
weights of an uninterrupted run.  The file format is
:mod:`fastopt.training.checkpoint_file`."""
from fastopt.training.callbacks import History
from fastopt.training.checkpoint_file import read, rebuild_optimizer, save
from fastopt.training.model import MLP


class Checkpoint:
    """What :func:`load` returns: ``model`` (compiled, optimizer state
    restored), ``epoch`` (epochs completed), ``history`` and ``extra``."""

    def __init__(self, model, epoch, history, extra):
        self.model, self.epoch, self.history, self.extra = model, epoch, history, extra


def _build(meta, params, arrays):
    model = MLP.from_config(meta["model"])
    model.params.data[:] = params
    opt, state_dict = rebuild_optimizer(meta["optimizer"], arrays, model)
    model.compile(opt, loss=meta["compile"]["loss"], metrics=meta["compile"]["metrics"])
    opt.load_state_dict(state_dict)
    history = History.from_dict(meta["history"]) if meta["history"] else History()
    model.resume(history, meta["rng"])  # fit(..., initial_epoch=epoch) appends to it
    return Checkpoint(model, meta["epoch"], history, meta["extra"])


def load(path):
    """Read a checkpoint written by :func:`save` (or ``fit(checkpoint=...)``).

    FileNotFoundError if ``path`` does not exist; ValueError naming it if it
    is not a checkpoint, is damaged, or its stored parameters disagree with
    its model configuration (checked before the model is allocated)."""
    return read(path, _build)


__all__ = ["Checkpoint", "load", "save"]
