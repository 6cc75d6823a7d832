"""The ``fastopt`` parser, assembled from one module per command, and ``main``:
parsing, the default command, and how errors and interruptions are reported."""
import argparse
import os
import signal
import sys

import fastopt.cli.bench as bench
import fastopt.cli.compare as compare
import fastopt.cli.evaluate as evaluate
import fastopt.cli.info as info
import fastopt.cli.paths as paths
import fastopt.cli.predict as predict
import fastopt.cli.search as search
import fastopt.cli.train as train
from fastopt.cli._shared import CLIError, Interrupted, Parser

COMMANDS = (train, evaluate, predict, search, compare, paths, bench, info)

# Errors a user can cause (a bad value, a missing, unreadable or corrupt file, a
# diverging run) are reported as one line; any other exception is a bug in fastopt
# and shows its traceback.
USER_ERRORS = (CLIError, ValueError, OSError, FloatingPointError)


def build_parser():
    """The ``fastopt`` argument parser, one sub-parser per command."""
    return _build()[0]


def _build():
    parser = Parser(
        prog="fastopt",
        description="Fused in-place optimizer kernels, and an MLP trainer for MNIST built on "
                    "them. With no command, trains the default model.",
        epilog="examples:\n"
               "  fastopt                                   train the default model\n"
               "  fastopt train --optimizer sgd --lr 0.01 --momentum 0.9 --epochs 5\n"
               "  fastopt train --save model.npz --history h.csv --plot curves.png\n"
               "  fastopt evaluate model.npz\n"
               "  fastopt predict model.npz --test-index 0,1,2\n"
               "  fastopt search --param lr=1e-3,3e-3 --param batch_size=32,128 --epochs 1\n"
               "  fastopt bench --quick                     (from a source checkout)\n"
               "  fastopt info",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser, sub.choices


def parse(argv):
    """The parsed command line; options may come anywhere among a command's
    positional arguments (``fastopt predict m.npz --top 5 d0.png d1.png``)."""
    parser, commands = _build()
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        # no command: train (the default model, or with the flags given)
        print("fastopt: no command given, so training the default model "
              "(see `fastopt --help` for the others).")
        argv = ["train", *argv]
    if argv[0] not in commands:  # --help, or an unknown command: the main parser says so
        return parser.parse_args(argv)
    args = commands[argv[0]].parse_intermixed_args(argv[1:])
    args.command = argv[0]
    return args


def main(argv=None):
    """Run the ``fastopt`` command line; its exit status."""
    args = parse(sys.argv[1:] if argv is None else list(argv))
    try:
        status = args.func(args)
        sys.stdout.flush()  # inside the try, so a closed pipe is handled below
    except BrokenPipeError:  # stdout's reader stopped early, as in `fastopt ... | head -1`
        return _closed_stdout()
    except Interrupted as exc:
        print(f"fastopt: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("fastopt: interrupted", file=sys.stderr)
        return Interrupted.status
    except USER_ERRORS as exc:
        print(f"fastopt: error: {exc}", file=sys.stderr)
        return getattr(exc, "status", 1)
    return status


def _closed_stdout():
    """Stop quietly, as Unix tools do when their reader goes away: exit status
    128 + SIGPIPE, and stdout pointed at /dev/null so that Python's own flush at
    exit does not fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 128 + getattr(signal, "SIGPIPE", 13)
