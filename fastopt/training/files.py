"""The trainer's ``.npz`` files: reading one that may be missing, foreign or
damaged, and the model file format of :meth:`MLP.save` / :meth:`MLP.load`.

Everything a loader sees comes from the file, so a ``ValueError`` while
reading one (a wrong value, a missing member or JSON entry, a shape that
disagrees with the stored config) means a bad file and is reported as one,
naming the file; a ``TypeError`` or ``KeyError`` is a bug and propagates.
"""
import json
import os
import zipfile

import numpy as np

from fastopt._io import atomic_savez
from fastopt.training.architecture import check_stored

MODEL_FORMAT = "fastopt.MLP/1"
_BAD_FILE = (ValueError, OSError, EOFError, zipfile.BadZipFile)


class _Entries(dict):
    """A JSON object read from a file: a missing entry is the file's fault."""

    def __missing__(self, key):
        raise ValueError(f"no {key!r} entry")


def parse_json(text):
    """A JSON document read from a file (its objects as :class:`_Entries`)."""
    return json.loads(text, object_hook=_Entries)


class _Members:
    """The members of an open ``.npz``; a missing member is the file's fault."""

    def __init__(self, data):
        self._data = data

    def __contains__(self, name):
        return name in self._data.files

    def __getitem__(self, name):
        if name not in self._data.files:
            raise ValueError(f"no {name!r} member")
        return self._data[name]

    def names(self):
        return list(self._data.files)


def read_npz(path, what, bad, parse):
    """``parse(members)`` of the ``.npz`` file ``path``: FileNotFoundError
    '``path``: no such ``what``' if it is missing, ValueError '``path``:
    ``bad`` (why)' if it is not a zip of arrays or ``parse`` finds a wrong
    value in it."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return parse(_Members(data))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what}") from None
    except _BAD_FILE as exc:
        raise ValueError(f"{path}: {bad} ({exc})") from None


def write_model(path, config, params, compiled=None):
    """A model file: architecture ``config``, ``params``, and how the model
    was compiled (``{'loss': ..., 'metrics': [...]}``) if it was."""
    entries = {"format": np.array(MODEL_FORMAT), "config": np.array(json.dumps(config)),
               "params": params}
    if compiled is not None:
        entries["compile"] = np.array(json.dumps(compiled))
    atomic_savez(path, **entries)


def read_model(path, build):
    """``build(config, params, compiled)`` from the model file ``path``,
    once its parameters are checked against its config (``compiled`` is
    None for a file written before models remembered their loss)."""
    def parse(members):
        if "format" not in members or str(members["format"]) != MODEL_FORMAT:
            raise ValueError("not a fastopt MLP file")
        config = parse_json(str(members["config"]))
        params = members["params"]
        check_stored(config, params)
        compiled = parse_json(str(members["compile"])) if "compile" in members else None
        return build(config, params, compiled)

    return read_npz(path, "model file", "not a readable fastopt model file", parse)
