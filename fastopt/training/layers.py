"""Keras' layers for :class:`~fastopt.training.sequential.Sequential`
(public as :mod:`fastopt.layers`): ``Input``, ``Flatten``, ``Dense`` and
``Dropout``.  They hold configuration only; a Sequential model compiles them
into one fused pass (:class:`fastopt._kernels.Network`): no layer runs
Python during training."""
import math

import fastopt._kernels as K
from fastopt._validate import check_choice, check_int, check_number


def _shape(shape, name):
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not shape:
        raise TypeError(f"{name} must be a tuple of ints, got {shape!r}")
    return tuple(check_int(d, f"{name}[{k}]", minimum=1) for k, d in enumerate(shape))


class Layer:
    """A layer's configuration; ``name`` is set by the model (Keras'
    naming: dense, dense_1, ...) unless given."""

    def __init__(self, name=None, input_shape=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {name!r}")
        self.name = name
        self.input_shape = None if input_shape is None else _shape(input_shape, "input_shape")

    def get_config(self):
        config = {"class_name": type(self).__name__, "name": self.name}
        config.update(self._config())
        return config

    def _config(self):
        return {}

    def output_shape(self, shape):
        """This layer's output shape (without the batch) for inputs of ``shape``."""
        return shape

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._config().items())})"


class Input(Layer):
    """Keras' ``Input(shape)``: the shape of one sample."""

    def __init__(self, shape, name=None):
        super().__init__(name)
        self.shape = _shape(shape, "shape")

    def _config(self):
        return {"shape": list(self.shape)}


class Flatten(Layer):
    """Keras' ``Flatten()``: each sample as one vector."""

    def output_shape(self, shape):
        return (math.prod(shape),)


class Dense(Layer):
    """Keras' ``Dense(units, activation=None)``: ``act(x @ W + b)``, W
    Glorot-uniform (the model's ``kernel_initializer``), b zeros;
    ``activation`` one of 'relu', 'sigmoid', 'tanh', 'softmax', 'linear'
    (None is 'linear', as Keras)."""

    def __init__(self, units, activation=None, name=None, input_shape=None):
        super().__init__(name, input_shape)
        self.units = check_int(units, "units", minimum=1)
        activation = "linear" if activation is None else activation
        check_choice(activation, "activation", K.ACTIVATIONS)
        self.activation = activation

    def _config(self):
        return {"units": self.units, "activation": self.activation}

    def output_shape(self, shape):
        if len(shape) != 1:
            raise ValueError(f"Dense takes one vector per sample, got samples of shape "
                             f"{shape}: put a Flatten() before it")
        return (self.units,)


class Dropout(Layer):
    """Keras' ``Dropout(rate)``: while training, each activation of the
    layer before is zeroed with probability ``rate`` and the others are
    scaled by ``1 / (1 - rate)`` (inverted dropout); ``evaluate`` and
    ``predict`` pass them unchanged.  The masks come from a counter-based
    generator keyed by a seed the model draws each epoch from its own
    generator.  fastopt takes Dropout after a hidden Dense layer only."""

    def __init__(self, rate, name=None):
        super().__init__(name)
        self.rate = check_number(rate, "rate", minimum=0, maximum=1, max_open=True)

    def _config(self):
        return {"rate": self.rate}


KINDS = {cls.__name__: cls for cls in (Input, Flatten, Dense, Dropout)}


def from_config(config):
    """The layer :meth:`Layer.get_config` described."""
    config = dict(config)
    kind = KINDS.get(config.pop("class_name", None))
    if kind is None:
        raise ValueError(f"unknown layer in {config!r}")
    if kind is Input:
        config["shape"] = tuple(config["shape"])
    return kind(**config)


__all__ = ["Dense", "Dropout", "Flatten", "Input", "Layer"]
