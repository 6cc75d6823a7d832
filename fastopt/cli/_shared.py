"""What several commands share: the user-error type, the parser class and its
argument types, the options common to training commands, data and model loading,
and writing a table of results."""
import argparse
import contextlib
import csv
import inspect
import json
import os

import numpy as np

import fastopt

DEFAULT_HIDDEN = "32,64,128,256"
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "nadam", "adamax", "adadelta",
              "lion")  # the Keras family's names (fastopt.optim.keras.names())

# command-line flag -> Keras-style optimizer argument
OPT_FLAGS = {"lr": "learning_rate", "momentum": "momentum", "beta1": "beta_1",
             "beta2": "beta_2", "epsilon": "epsilon", "rho": "rho",
             "weight_decay": "weight_decay", "nesterov": "nesterov", "amsgrad": "amsgrad",
             "centered": "centered", "clipnorm": "clipnorm"}


class CLIError(Exception):
    """A user error, reported as one line with exit status ``status``."""

    status = 1


class Interrupted(CLIError):
    """Ctrl-C, reported as one line saying what was kept (exit status 130,
    128 + SIGINT, as shells report an interrupted command)."""

    status = 130


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors point at ``--help``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_command(sub, name, *, help, description, epilog=None):
    """The parser of one command, with its examples shown as written."""
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


# -- argparse types (argparse-style errors) --------------------------------------------

def hidden_sizes(text):
    """``"32,64"`` (or ``"32-64"``) -> ``[32, 64]``, each size >= 1."""
    try:
        sizes = [int(s) for s in text.replace("-", ",").split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"hidden sizes must be integers like 32,64, "
                                         f"got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be >= 1, got {text!r}")
    return sizes


def positive_int(text):
    return _converted(text, int, lambda v: v >= 1, "a positive integer")


def fraction(text):
    return _converted(text, float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def _converted(text, convert, acceptable, expected):
    """``convert(text)`` if it converts and is ``acceptable``, else argparse's
    error saying what was ``expected``."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not acceptable(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def int_list(text):
    """``"0,1,2"`` -> ``[0, 1, 2]``."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2, got {text!r}") \
            from None


# -- options shared by the commands that train ----------------------------------------

def add_data_option(parser):
    parser.add_argument("--data", metavar="DIR",
                        help="directory with the four MNIST IDX files (default: the bundled "
                             "copy)")


def add_run_options(parser, *, epochs, epochs_help):
    """--epochs, --validation-split, --limit, --seed, --threads and --data, as
    `train` and `search` both take them."""
    parser.add_argument("--epochs", type=positive_int, default=epochs, help=epochs_help)
    parser.add_argument("--validation-split", type=fraction, default=0.1,
                        help="last fraction of the training set held out (default 0.1)")
    parser.add_argument("--limit", type=positive_int, metavar="N",
                        help="train on the first N training images only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=positive_int, help="BLAS and OpenMP threads (default: the kernels "
                        "choose, and training runs its matrix products on one thread)")
    add_data_option(parser)


# -- data, threads, optimizers, models ------------------------------------------------------

def load_data(data, limit=None):
    """MNIST (the bundled copy, or the IDX files in ``data``) as flat float32
    images scaled to [0, 1], the training set cut to its first ``limit``."""
    (x, y), (xt, yt) = fastopt.datasets.load_mnist(data)
    if limit:
        x, y = x[:limit], y[:limit]
    # scaled once to [0, 1] float32, as the learning material's x / 255.0
    return ((x.reshape(len(x), -1).astype(np.float32) / np.float32(255), y),
            (xt.reshape(len(xt), -1).astype(np.float32) / np.float32(255), yt))


def thread_limit(n):
    """Limit BLAS and OpenMP threads to ``n`` (threadpoolctl), or do nothing if None."""
    if n is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n)


def make_optimizer(name, options):
    """A Keras-compatible optimizer from the command line's flags (``OPT_FLAGS``
    keys; None and False mean "not given")."""
    cls = fastopt.optim.keras.get_class(name)
    accepted = inspect.signature(cls).parameters
    kwargs = {}
    for flag, value in options.items():
        if value is None or value is False:
            continue
        arg = OPT_FLAGS[flag]
        if arg not in accepted:
            raise CLIError(f"--{flag.replace('_', '-')} does not apply to the {name} optimizer")
        kwargs[arg] = value
    return cls(**kwargs)


def load_model(path):
    """A saved model or a checkpoint, compiled for evaluation."""
    if not os.path.isfile(path):
        raise CLIError(f"{path}: no such model file")
    try:
        model = fastopt.checkpoint.load(path).model
    except ValueError:
        try:
            model = fastopt.MLP.load(path)
        except ValueError:
            raise CLIError(f"{path}: neither a model saved by fastopt (`train --save`) nor "
                           f"a checkpoint") from None
        model.compile("adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if model.output != "softmax":
        raise CLIError(f"{path}: a classifier with a softmax output is expected")
    return model


def check_inputs(model, x):
    """CLIError unless the images ``x`` have as many pixels as the model has inputs."""
    if x.shape[1] != model.layer_sizes[0]:
        raise CLIError(f"the model takes {model.layer_sizes[0]} inputs, the images have "
                       f"{x.shape[1]} pixels")


def architecture(sizes):
    return "-".join(map(str, sizes))


# -- tables of results ---------------------------------------------------------------------

def check_table_path(flag, path):
    """CLIError unless ``path`` names a .json or .csv file (checked before any work)."""
    if path and not path.endswith((".json", ".csv")):
        raise CLIError(f"{flag} {path}: use a .json or .csv file name")


def write_table(path, rows, fieldnames, json_payload=None):
    """``rows`` (dicts) to ``path``: a CSV table with a header of ``fieldnames``
    (list values as JSON), or JSON (``json_payload`` if given, else the rows)."""
    if path.endswith(".json"):
        with open(path, "w") as f:
            json.dump(rows if json_payload is None else json_payload, f, indent=1,
                      default=str)
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows({k: (json.dumps(v) if isinstance(v, list) else v)
                          for k, v in r.items()} for r in rows)
