"""The ``fastopt`` command line (also ``python -m fastopt``).

``fastopt`` with no arguments trains the default model, the 784-32-64-128-256-10
MLP with Adam on the bundled MNIST, and says what it is doing.  One module per
command (train, evaluate, predict, search, bench, info), each with its own
arguments; ``_shared`` holds what several use, ``_app`` assembles the parser and
runs it.
"""
from fastopt.cli._app import build_parser, main
from fastopt.cli._shared import CLIError

__all__ = ["CLIError", "build_parser", "main"]
