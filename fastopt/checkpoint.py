"""Resumable training checkpoints (public namespace; the code is in
:mod:`fastopt.training.checkpoint`)."""
from fastopt.training.checkpoint import Checkpoint, load, save

__all__ = ["Checkpoint", "load", "save"]
