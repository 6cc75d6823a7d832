"""An MLP's architecture: the checks of its configuration and its parameter
count, shared by :class:`~fastopt.training.model.MLP` and by the files that
store one (which check a stored configuration before allocating anything),
its weights' initialisation, and the check that an optimizer updates it."""
import math

import numpy as np

import fastopt._kernels as K
from fastopt import _objectives as objectives
from fastopt._validate import check_choice, check_int, check_number
from fastopt.optim import keras as keras_optimizers
from fastopt.optim._base import Optimizer

INITIALIZERS = ("glorot_uniform", "he_uniform")
CONFIG_KEYS = ("layer_sizes", "activation", "output", "seed", "kernel_initializer", "dropout",
               "layers")


def check_layer_sizes(layer_sizes):
    """``layer_sizes`` as a list of at least two ints >= 1."""
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__iter__"):
        raise TypeError(f"layer_sizes must be a sequence of ints, got {layer_sizes!r}")
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes must hold at least two ints >= 1 (input and "
                         f"output size), got {sizes!r}")
    return [check_int(s, f"layer_sizes[{k}]", minimum=1) for k, s in enumerate(sizes)]


def check_activations(activation, output, kernel_initializer, sizes):
    """The layers' activations (any of the compiled layers' ``ACTIVATIONS``,
    hidden or output; ``activation`` one name for every hidden layer or a
    list of one per hidden layer) and the initializer, checked against the
    layer ``sizes``: a softmax over one unit is refused (always 1.0)."""
    hidden = len(sizes) - 2
    if isinstance(activation, (list, tuple)):
        if len(activation) != hidden:
            raise ValueError(f"activation lists {len(activation)} names, the model has "
                             f"{hidden} hidden layers")
        names = list(activation)
    else:
        names = [activation] * hidden
        check_choice(activation, "activation", K.ACTIVATIONS)
    for k, name in enumerate(names):
        check_choice(name, f"activation[{k}]", K.ACTIVATIONS)
        if sizes[k + 1] == 1 and name == "softmax":
            objectives.check_single_unit(name)
    check_choice(output, "output", K.ACTIVATIONS)
    if sizes[-1] == 1:
        objectives.check_single_unit(output)
    check_choice(kernel_initializer, "kernel_initializer", INITIALIZERS)


def check_dropout(dropout, hidden):
    """The hidden layers' dropout rates as a list (empty for None): one
    rate in [0, 1) per hidden layer."""
    if dropout is None:
        return []
    if isinstance(dropout, (str, bytes)) or not hasattr(dropout, "__iter__"):
        raise TypeError(f"dropout must be None or a list of rates, got {dropout!r}")
    rates = list(dropout)
    if len(rates) != hidden:
        raise ValueError(f"dropout lists {len(rates)} rates, the model has {hidden} hidden "
                         f"layers (one rate each)")
    rates = [check_number(r, f"dropout[{k}]", minimum=0, maximum=1, max_open=True)
             for k, r in enumerate(rates)]
    return rates if any(rates) else []


def parameter_count(sizes):
    """Weights and biases of the dense layers between ``sizes``."""
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(sizes, sizes[1:]))


def check_stored(config, params):
    """ValueError unless ``config`` (read from a file) describes layer sizes
    whose parameters are exactly the float32 vector ``params``: checked
    before any model is allocated, so a config of huge layers costs nothing."""
    try:
        if not isinstance(config, dict) or not set(config) <= set(CONFIG_KEYS):
            raise ValueError(f"expected a dict with keys among {CONFIG_KEYS}, got {config!r}")
        sizes = check_layer_sizes(config.get("layer_sizes"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"holds an invalid model configuration ({exc})") from None
    needed = parameter_count(sizes)
    if params.dtype != "float32" or params.shape != (needed,):
        raise ValueError(f"holds {params.size} parameters of {params.dtype}, the "
                         f"architecture {sizes} needs {needed} float32")


def initialise(weights, kernel_initializer, rng):
    """Draw each (fan_in, fan_out) weight matrix from ``rng`` in place:
    Glorot-uniform, limit sqrt(6 / (fan_in + fan_out)) (Keras' default), or
    He-uniform, sqrt(6 / fan_in)."""
    for W in weights:
        fan_in, fan_out = W.shape
        denominator = fan_in + fan_out if kernel_initializer == "glorot_uniform" else fan_in
        limit = math.sqrt(6.0 / denominator)
        W[...] = rng.uniform(-limit, limit, W.shape)


def optimizer_for(optimizer, params):
    """``optimizer`` (a Keras name, a Keras-family instance, built over
    ``params`` here if it is not yet, or an instance of either family over
    ``params``) checked to update exactly the arrays of ``params``."""
    opt = keras_optimizers.get(optimizer) if isinstance(optimizer, str) else optimizer
    if not isinstance(opt, Optimizer):
        raise TypeError(f"optimizer must be a name or a fastopt optimizer, "
                        f"got {type(optimizer).__name__}")
    if isinstance(opt, keras_optimizers.KerasOptimizer) and not opt.built:
        opt.build(params)
    covered = sum(p.size for p, _ in opt.parameters)
    if covered != params.size or not all(
            np.shares_memory(p, params.data) for p, _ in opt.parameters):
        raise ValueError("the optimizer updates other arrays than this model's parameters; "
                         "construct it over model.params")
    return opt
