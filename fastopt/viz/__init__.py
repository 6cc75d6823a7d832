"""See what each optimizer does, drawn by fastopt's own kernels.

:func:`paths` runs optimizers over 2-parameter test functions
(:data:`FUNCTIONS`); :func:`compare` trains the same MLP from the same initial
weights once per optimizer, batch size or learning rate.  Both return their
numbers as a dict of arrays, and the matplotlib figure where matplotlib is
installed (``pip install 'fastopt[plot]'``); nothing here needs matplotlib to
compute.
"""
from fastopt.viz._specs import OPTIMIZERS
from fastopt.viz.compare import compare
from fastopt.viz.functions import FUNCTIONS, TestFunction
from fastopt.viz.paths import paths

__all__ = ["FUNCTIONS", "OPTIMIZERS", "TestFunction", "compare", "paths"]
