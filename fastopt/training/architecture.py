"""An MLP's architecture: the checks of its configuration and its parameter
count, shared by :class:`~fastopt.training.model.MLP` and by the files that
store one (which check a stored configuration before allocating anything)."""
import fastopt._kernels as K
from fastopt._validate import check_choice, check_int

INITIALIZERS = ("glorot_uniform", "he_uniform")
CONFIG_KEYS = ("layer_sizes", "activation", "output", "seed", "kernel_initializer")


def check_layer_sizes(layer_sizes):
    """``layer_sizes`` as a list of at least two ints >= 1."""
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__iter__"):
        raise TypeError(f"layer_sizes must be a sequence of ints, got {layer_sizes!r}")
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes must hold at least two ints >= 1 (input and "
                         f"output size), got {sizes!r}")
    return [check_int(s, f"layer_sizes[{k}]", minimum=1) for k, s in enumerate(sizes)]


def check_activations(activation, output, kernel_initializer):
    """The layers' activations (any of the compiled layers' ``ACTIVATIONS``,
    hidden or output) and the initializer, checked."""
    check_choice(activation, "activation", K.ACTIVATIONS)
    check_choice(output, "output", K.ACTIVATIONS)
    check_choice(kernel_initializer, "kernel_initializer", INITIALIZERS)


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
