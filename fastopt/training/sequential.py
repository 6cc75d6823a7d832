"""Keras' ``Sequential`` over fastopt's layers: the layers compile into the
same fused training step as :class:`~fastopt.training.model.MLP` (one call
into C per batch: every Dense layer's product, bias and activation, each
Dropout's mask, the loss and the whole backward pass), because a Sequential
model *is* an MLP built from its layer list -- per-layer activations and
dropout rates included."""
from fastopt._validate import check_choice
from fastopt.training import architecture
from fastopt.training.layers import Dense, Dropout, Input, Layer
from fastopt.training.layers import from_config as layer_from_config
from fastopt.training.model import MLP


def _input_shape(layers):
    """The sample shape: an ``Input`` first, or a first layer's ``input_shape``."""
    first = layers[0]
    if isinstance(first, Input):
        return first.shape
    return first.input_shape


def _plan(layers):
    """``(sizes, activations, dropout)`` of an MLP computing ``layers``, or
    None while the list is incomplete (no input shape yet, or not ending in
    a Dense layer).  ValueError for a list fastopt cannot compile."""
    shape = _input_shape(layers)
    if shape is None or not isinstance(layers[-1], Dense):
        return None
    sizes, activations, dropout = [], [], []
    for k, layer in enumerate(layers):
        if isinstance(layer, Dropout):
            if not activations:
                raise ValueError(f"layer {k} ({layer.name}): fastopt takes Dropout after a "
                                 f"Dense layer only, not on the inputs")
            if dropout[-1]:
                raise ValueError(f"layer {k} ({layer.name}): two Dropout layers in a row; use "
                                 f"one (rates a and b drop like 1 - (1 - a)(1 - b))")
            dropout[-1] = layer.rate
            continue
        if isinstance(layer, Dense):
            if not sizes:
                layer.output_shape(shape)  # ValueError unless the samples are flat
                sizes.append(shape[0])
            sizes.append(layer.units)
            activations.append(layer.activation)
            dropout.append(0.0)
        shape = layer.output_shape(shape)
    return sizes, activations, dropout[:-1]


class Sequential(MLP):
    """Keras' ``Sequential([Input(shape), Flatten(), Dense(units,
    activation=...), Dropout(rate), ...])`` (also built with :meth:`add`).

    The model is built (weights drawn, Glorot-uniform as Keras, from
    ``seed``) as soon as its sample shape is known -- an ``Input`` first, or
    ``input_shape=`` on the first layer -- and it ends in a Dense layer; then
    ``compile`` / ``fit`` / ``evaluate`` / ``predict`` / ``save`` and
    checkpoints work exactly as for :class:`MLP` (which is the short form of
    a stack of Dense layers).  The last Dense layer's activation is the
    output activation; Dropout goes after a hidden Dense layer.
    """

    def __init__(self, layers=None, seed=None, kernel_initializer="glorot_uniform",
                 name="sequential"):
        check_choice(kernel_initializer, "kernel_initializer", architecture.INITIALIZERS)
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {name!r}")
        self._layers, self._counts = [], {}
        self.seed, self.kernel_initializer, self.name = seed, kernel_initializer, name
        self.objective = None
        self.built = False
        if layers is not None:
            if isinstance(layers, Layer) or not hasattr(layers, "__iter__"):
                raise TypeError(f"layers must be a list of fastopt.layers, got {layers!r}")
            for layer in layers:
                self.add(layer, build=False)
        self._build()

    def add(self, layer, build=True):
        """Append ``layer`` (a :mod:`fastopt.layers` instance); the model is
        (re)built when its list is complete.  Only before ``compile``."""
        if not isinstance(layer, Layer):
            raise TypeError(f"layer must be a fastopt.layers layer, got {layer!r}")
        if self.objective is not None:
            raise RuntimeError("the model is compiled: add its layers before compile")
        if self._layers and (isinstance(layer, Input) or layer.input_shape is not None):
            raise ValueError("only the first layer may be an Input or take input_shape")
        if layer.name is None:
            kind = type(layer).__name__.lower()
            count = self._counts.get(kind, 0)
            self._counts[kind] = count + 1
            layer.name = kind + (f"_{count}" if count else "")
        self._layers.append(layer)
        if build:
            self._build()

    def _build(self):
        plan = _plan(self._layers) if self._layers else None
        self.built = plan is not None
        if plan is None:
            return
        sizes, activations, dropout = plan
        MLP.__init__(self, sizes, activation=activations[:-1], output=activations[-1],
                     seed=self.seed, kernel_initializer=self.kernel_initializer,
                     dropout=dropout)

    def _require_built(self):
        if not self.built:
            raise RuntimeError("the model is not built: it needs its sample shape (an "
                               "Input(shape) first) and to end in a Dense layer")

    @property
    def layers(self):
        """The layers, without the Input (as Keras lists them)."""
        return [layer for layer in self._layers if not isinstance(layer, Input)]

    def compile(self, *args, **kwargs):
        self._require_built()
        return super().compile(*args, **kwargs)

    compile.__doc__ = MLP.compile.__doc__

    def predict(self, *args, **kwargs):
        self._require_built()
        return super().predict(*args, **kwargs)

    predict.__doc__ = MLP.predict.__doc__

    def layer_table(self):
        self._require_built()
        shape, rows, k = _input_shape(self._layers), [], 0
        for layer in self.layers:
            shape = layer.output_shape(shape) if not isinstance(layer, Dropout) else shape
            params = 0
            if isinstance(layer, Dense):
                params = self.weights[k].size + self.biases[k].size
                k += 1
            rows.append((layer.name, type(layer).__name__, (None,) + tuple(shape), params))
        return rows

    def summary(self):
        self._require_built()
        super().summary()

    summary.__doc__ = MLP.summary.__doc__

    def get_config(self):
        self._require_built()
        config = super().get_config()
        config["layers"] = [layer.get_config() for layer in self._layers]
        return config

    @classmethod
    def from_config(cls, config):
        """The model :meth:`get_config` described (ValueError for a plain
        MLP's config or layers that do not build its stored sizes)."""
        if "layers" not in config:
            raise ValueError("it describes an MLP, not a Sequential model: load it with "
                             "MLP.load")
        model = cls([layer_from_config(c) for c in config["layers"]], seed=config.get("seed"),
                    kernel_initializer=config.get("kernel_initializer", "glorot_uniform"))
        if not model.built or model.layer_sizes != config["layer_sizes"]:
            raise ValueError(f"its layers {config['layers']} do not build the stored "
                             f"architecture {config['layer_sizes']}")
        return model

    def __repr__(self):
        return f"Sequential({self._layers!r})"


MLP._from_config["layers"] = Sequential

__all__ = ["Sequential"]
