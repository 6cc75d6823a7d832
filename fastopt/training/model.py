"""A multilayer perceptron with Keras' ``compile`` / ``fit`` / ``evaluate``.

The model is thin Python over fused kernels: matrix products go to BLAS
(SciPy's ``sgemm``, called from Cython into preallocated buffers); bias + activation, their
backward, bias gradients, the loss with its gradient, and the optimizer
update are fastopt kernels.  All parameters live in one
:class:`~fastopt.optim.flat.FlatParameters` (weights first, then biases), so the
optimizer makes one kernel call per step, and no array is allocated per
training step.
"""
import json
import math
import os
import time
import zipfile

import numpy as np

import fastopt._kernels as K
from fastopt._io import atomic_savez
from fastopt.optim.flat import FlatParameters
from fastopt.optim import keras as keras_optimizers
from fastopt.optim._base import Optimizer

_HIDDEN_ACTIVATIONS = ("relu", "sigmoid", "tanh", "linear")
_OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", "linear", "relu", "tanh")

# Keras loss name -> (canonical name, output activation it requires, or None)
_LOSSES = {
    "sparse_categorical_crossentropy": ("sparse_categorical_crossentropy", "softmax"),
    "categorical_crossentropy": ("categorical_crossentropy", "softmax"),
    "binary_crossentropy": ("binary_crossentropy", "sigmoid"),
    "mse": ("mse", None),
    "mean_squared_error": ("mse", None),
}
_FORMAT = "fastopt.MLP/1"


class History:
    """What ``fit`` returns: ``history`` maps each metric ('loss',
    'accuracy', 'val_loss', 'val_accuracy') to one value per epoch."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.epoch_seconds = []

    def _record(self, epoch, logs, seconds):
        self.epoch.append(epoch)
        self.epoch_seconds.append(seconds)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class MLP:
    """A fully connected network, e.g. ``MLP([784, 32, 64, 128, 256, 10])``.

    Parameters
    ----------
    layer_sizes : sequence of int
        Input size, hidden sizes, output size.
    activation : {'relu', 'sigmoid', 'tanh', 'linear'}
        Activation of every hidden layer.
    output : {'softmax', 'sigmoid', 'linear', 'relu', 'tanh'}
        Activation of the output layer.
    seed : int, optional
        Seeds the weight initialisation and the shuffling in ``fit``: the same
        seed (and thread count) gives the same weights bit for bit.
    kernel_initializer : {'glorot_uniform', 'he_uniform'}
        Keras' default, Glorot-uniform (limit sqrt(6 / (fan_in + fan_out))),
        or He-uniform (sqrt(6 / fan_in)); biases start at zero.
    """

    def __init__(self, layer_sizes, activation="relu", output="softmax", seed=None,
                 kernel_initializer="glorot_uniform"):
        try:
            sizes = [int(s) for s in layer_sizes]
        except (TypeError, ValueError):
            raise TypeError(f"layer_sizes must be a sequence of ints, got {layer_sizes!r}") \
                from None
        if len(sizes) < 2 or any(s < 1 for s in sizes) or \
                any(isinstance(s, bool) or float(s) != int(s) for s in layer_sizes):
            raise ValueError(f"layer_sizes must hold at least two ints >= 1 (input and "
                             f"output size), got {list(layer_sizes)!r}")
        if activation not in _HIDDEN_ACTIVATIONS:
            raise ValueError(f"activation must be one of {_HIDDEN_ACTIVATIONS}, "
                             f"got {activation!r}")
        if output not in _OUTPUT_ACTIVATIONS:
            raise ValueError(f"output must be one of {_OUTPUT_ACTIVATIONS}, got {output!r}")
        if kernel_initializer not in ("glorot_uniform", "he_uniform"):
            raise ValueError(f"kernel_initializer must be 'glorot_uniform' or 'he_uniform', "
                             f"got {kernel_initializer!r}")
        self.layer_sizes = sizes
        self.activation = activation
        self.output = output
        self.seed = seed
        self.kernel_initializer = kernel_initializer
        pairs = list(zip(sizes, sizes[1:]))
        n = len(pairs)
        self.params = FlatParameters(
            [p for p in pairs] + [(o,) for _, o in pairs],
            names=[f"dense_{k}/kernel" for k in range(n)] + [f"dense_{k}/bias" for k in range(n)])
        self.weights = self.params.params[:n]
        self.biases = self.params.params[n:]
        self._weight_grads = self.params.grads[:n]
        self._bias_grads = self.params.grads[n:]
        self._rng = np.random.default_rng(seed)
        for W, (fan_in, fan_out) in zip(self.weights, pairs):
            denominator = fan_in + fan_out if kernel_initializer == "glorot_uniform" else fan_in
            limit = math.sqrt(6.0 / denominator)
            W[...] = self._rng.uniform(-limit, limit, W.shape)
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.history = None
        self._train_network = None

    # -- compile -------------------------------------------------------------
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None):
        """Choose the optimizer, the loss and the metrics (Keras' names).

        ``optimizer`` is a name ('sgd', 'adam', 'adamw', 'rmsprop', 'adagrad':
        the Keras-compatible class with Keras' defaults), a
        :mod:`fastopt.optim.keras` instance (built over this model's
        parameters here), or a :mod:`fastopt.optim` (PyTorch-style) instance
        constructed over ``model.params``.  ``loss`` is
        'sparse_categorical_crossentropy', 'categorical_crossentropy' (both
        need ``output='softmax'`` and are computed from the logits, fused with
        the softmax), 'binary_crossentropy' (``output='sigmoid'``, likewise
        from the logits) or 'mse'.  ``metrics`` may hold 'accuracy'.
        """
        if not isinstance(loss, str) or loss not in _LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(_LOSSES)}")
        canonical, needs = _LOSSES[loss]
        if needs is not None and self.output != needs:
            raise ValueError(f"loss {loss!r} needs output='{needs}', this model's output "
                             f"activation is {self.output!r}")
        metrics = list(metrics or [])
        for m in metrics:
            if m not in ("accuracy", "acc"):
                raise ValueError(f"unknown metric {m!r}; supported: 'accuracy'")
        opt = keras_optimizers.get(optimizer) if isinstance(optimizer, str) else optimizer
        if not isinstance(opt, Optimizer):
            raise TypeError(f"optimizer must be a name or a fastopt optimizer, "
                            f"got {type(optimizer).__name__}")
        if isinstance(opt, keras_optimizers.KerasOptimizer) and not opt.built:
            opt.build(self.params)
        covered = sum(p.size for p, _ in opt.parameters)
        if covered != self.params.size or not all(
                np.shares_memory(p, self.params.data) for p, _ in opt.parameters):
            raise ValueError("the optimizer updates other arrays than this model's parameters; "
                             "construct it over model.params")
        self.optimizer = opt
        self.loss = canonical
        self.metrics = ["accuracy"] if metrics else []
        self._train_network = None
        return self

    # -- data ----------------------------------------------------------------
    def _inputs(self, x, name="x"):
        """``x`` as a C-contiguous float32 (N, inputs) array, converted once."""
        if x is None:
            raise TypeError(f"{name} must be an array of inputs, got None")
        x = np.asarray(x)
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)) \
                or x.dtype == np.bool_:
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.layer_sizes[0]:
            raise ValueError(f"{name} must have shape (N, {self.layer_sizes[0]}) or "
                             f"(N, ...) with {self.layer_sizes[0]} values per sample, "
                             f"got {x.shape}")
        # aligned too, for the kernels; all_finite scans without a temporary
        x = np.require(x.reshape(len(x), -1), np.float32, ["C", "A"])
        if not K.all_finite(x):
            raise ValueError(f"{name} holds nan or inf")
        return x

    def _targets(self, y, n, name="y"):
        """``y`` in the form the compiled loss takes, converted once."""
        if y is None:
            raise TypeError(f"{name} must be an array of targets, got None")
        y = np.asarray(y)
        out = self.layer_sizes[-1]
        if len(y) != n:
            raise ValueError(f"{name} has {len(y)} samples but the inputs have {n}")
        if self.loss == "sparse_categorical_crossentropy":
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer)
                                   or (np.issubdtype(y.dtype, np.floating)
                                       and np.all(np.mod(y, 1) == 0))):
                raise ValueError(f"{name} must be integer class labels of shape ({n},) for "
                                 f"sparse_categorical_crossentropy, got {y.dtype} {y.shape}")
            y = y.astype(np.int64)
            if n and (y.min() < 0 or y.max() >= out):
                bad = int(np.flatnonzero((y < 0) | (y >= out))[0])
                raise ValueError(f"{name}[{bad}] = {y[bad]} is not a class label in "
                                 f"[0, {out})")
            return np.ascontiguousarray(y)
        if y.ndim == 1 and out == 1:
            y = y[:, None]
        if y.shape != (n, out):
            hint = (" (integer labels need loss='sparse_categorical_crossentropy')"
                    if y.ndim == 1 else "")
            raise ValueError(f"{name} must have shape ({n}, {out}) for {self.loss}, "
                             f"got {y.shape}{hint}")
        y = np.require(y, np.float32, ["C", "A"])
        if not K.all_finite(y):
            raise ValueError(f"{name} holds nan or inf")
        return y

    # -- the training step ---------------------------------------------------
    def _network(self, rows, loss=True):
        """The compiled forward/backward passes over this model's weights
        and gradient arrays, for up to ``rows`` samples at a time."""
        return K.Network(self.weights, self.biases, self._weight_grads, self._bias_grads,
                         rows=rows, activation=self.activation, output=self.output,
                         loss=self.loss if loss else None)

    def _require_compiled(self):
        if self.optimizer is None:
            raise RuntimeError("the model is not compiled: call model.compile(...) first")

    def compute_gradients(self, x, y):
        """The mean loss over (x, y), with its gradient written into
        ``model.params.grad``; no update.  For learners and gradient checks."""
        self._require_compiled()
        x = self._inputs(x)
        y = self._targets(y, len(x))
        if len(x) == 0:
            raise ValueError("x holds no samples")
        return self._network(len(x)).gradients(x, y)[0]

    def train_on_batch(self, x, y):
        """One optimizer step on one batch; returns its mean loss."""
        loss = self.compute_gradients(x, y)
        self.optimizer.step()
        return loss

    # -- fit / evaluate / predict --------------------------------------------
    def fit(self, x, y, batch_size=32, epochs=1, verbose=1, validation_split=0.0,
            validation_data=None, shuffle=True, callbacks=None, checkpoint=None,
            initial_epoch=0, on_nonfinite="raise"):
        """Train, as Keras' ``fit``; returns a :class:`History`.

        ``batch_size`` may be anything from 1 (per-sample SGD) to ``len(x)``
        (batch gradient descent); the last batch of an epoch may be partial.
        ``validation_split`` takes the *last* fraction of the samples, before
        shuffling, as Keras does; ``validation_data=(x_val, y_val)`` gives the
        validation set explicitly.  ``shuffle`` reshuffles the training
        samples every epoch with the model's seeded generator.  The reported
        training loss and accuracy are means over the epoch's batches as they
        were trained on (before each update), weighted by batch size.

        ``verbose``: 0 silent, 1 a progress bar and a line per epoch, 2 the
        line only.  ``callbacks``: :mod:`fastopt.callbacks` instances.
        ``checkpoint``: a path rewritten (atomically) after every epoch with
        everything :func:`fastopt.checkpoint.load` needs to resume; resume
        with ``fit(..., initial_epoch=checkpoint.epoch)``.  Epochs run from
        ``initial_epoch`` to ``epochs``.

        A batch whose loss or gradient holds nan or inf is never applied:
        with ``on_nonfinite='raise'`` (default) fit raises FloatingPointError
        naming the epoch and batch, the weights being those before that
        batch; with ``'skip'`` the update is skipped and counted in the
        history's 'skipped_steps'.
        """
        from fastopt.training.callbacks import ModelCheckpoint, ProgressBar, _as_list

        self._require_compiled()
        if on_nonfinite not in ("raise", "skip"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
        if verbose not in (0, 1, 2, True, False):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        callbacks = _as_list(callbacks)
        x = self._inputs(x)
        y = self._targets(y, len(x))
        batch_size = _check_int(batch_size, "batch_size", 1)
        epochs = _check_int(epochs, "epochs", 0)
        initial_epoch = _check_int(initial_epoch, "initial_epoch", 0)
        if isinstance(validation_split, bool) or not isinstance(
                validation_split, (int, float)) or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be a number in [0, 1), "
                             f"got {validation_split!r}")
        if validation_data is not None:
            if validation_split:
                raise ValueError("pass validation_split or validation_data, not both")
            try:
                x_val, y_val = validation_data
            except (TypeError, ValueError):
                raise TypeError("validation_data must be a pair (x_val, y_val)") from None
            x_val = self._inputs(x_val, "validation_data x")
            y_val = self._targets(y_val, len(x_val), "validation_data y")
        elif validation_split:
            split_at = int(math.ceil(len(x) * (1.0 - validation_split)))
            x, x_val = x[:split_at], x[split_at:]
            y, y_val = y[:split_at], y[split_at:]
            if not len(x_val) or not len(x):
                raise ValueError(f"validation_split={validation_split} leaves an empty "
                                 f"training or validation set for {len(x) + len(x_val)} "
                                 f"samples")
        else:
            x_val = y_val = None
        n = len(x)
        if n == 0:
            raise ValueError("x holds no samples")
        rows = min(batch_size, n)
        steps = math.ceil(n / rows)
        if verbose == 1:
            callbacks.append(ProgressBar(steps, epochs))
        if checkpoint is not None:
            callbacks.append(ModelCheckpoint(checkpoint))
        if self._train_network is None or self._train_network.rows != rows:
            self._train_network = self._network(rows)
        network = self._train_network
        resumed = initial_epoch and self.history is not None \
            and len(self.history.epoch) == initial_epoch
        history = self.history if resumed else History()
        self.stop_training = False
        for c in callbacks:
            c.set_model(self)
            c.on_train_begin()
        batch_logs = {}
        for epoch in range(initial_epoch, epochs):
            start = time.perf_counter()
            for c in callbacks:
                c.on_epoch_begin(epoch)
            # each epoch's order depends only on the generator's state, so a
            # run resumed from a checkpoint shuffles exactly as it would have
            order = self._rng.permutation(n) if shuffle else np.arange(n)
            total_loss = 0.0
            total_correct = 0
            seen = skipped = 0
            for batch, lo in enumerate(range(0, n, rows)):
                idx = order[lo:lo + rows]
                nb = len(idx)
                loss, correct = network.gradients(x, y, idx)
                # the loss can be finite while the backward pass overflowed
                bad = ("loss" if not math.isfinite(loss) else
                       None if K.all_finite(self.params.grad) else "gradient")
                if bad:
                    if on_nonfinite == "raise":
                        raise FloatingPointError(
                            f"non-finite {bad} (loss {loss}) at epoch {epoch + 1}, batch "
                            f"{batch + 1} of {steps}; training stopped before applying it "
                            f"(the weights are those after the previous batch)")
                    skipped += 1
                    continue
                self.optimizer.step()
                total_loss += loss * nb
                total_correct += correct
                seen += nb
                if callbacks:
                    batch_logs["loss"] = total_loss / seen
                    for c in callbacks:
                        c.on_batch_end(batch, batch_logs)
            logs = {"loss": total_loss / seen if seen else float("nan")}
            if self.metrics:
                logs["accuracy"] = (total_correct / (seen * self._accuracy_terms_per_sample())
                                    if seen else float("nan"))
            if x_val is not None:
                logs.update({"val_" + k: v for k, v in self._evaluate(x_val, y_val).items()})
            if on_nonfinite == "skip":
                logs["skipped_steps"] = skipped
            seconds = time.perf_counter() - start
            history._record(epoch, logs, seconds)
            self.history = history
            for c in callbacks:
                c.on_epoch_end(epoch, logs)
            if verbose:
                parts = " - ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}"
                                   for k, v in logs.items())
                print(f"Epoch {epoch + 1}/{epochs} - {seconds:.2f}s - {parts}", flush=True)
            if self.stop_training:
                break
        for c in callbacks:
            c.on_train_end(history.history)
        self.history = history
        return history

    def _loss_terms_per_sample(self):
        """Element-wise losses (mse, binary) average over a sample's outputs."""
        return 1 if self.loss.endswith("categorical_crossentropy") else self.layer_sizes[-1]

    def _accuracy_terms_per_sample(self):
        """Binary accuracy counts every output; categorical one per sample."""
        binary = self.loss == "binary_crossentropy" or self.layer_sizes[-1] == 1
        return self.layer_sizes[-1] if binary else 1

    def _evaluate(self, x, y, chunk=1024):
        rows = min(chunk, len(x))
        network = self._network(rows)
        total_loss = 0.0
        total_correct = 0
        for lo in range(0, len(x), rows):
            loss, correct = network.evaluate(x[lo:lo + rows], y[lo:lo + rows])
            total_loss += loss
            total_correct += correct
        logs = {"loss": total_loss / (len(x) * self._loss_terms_per_sample())}
        if self.metrics:
            logs["accuracy"] = total_correct / (len(x) * self._accuracy_terms_per_sample())
        return logs

    def evaluate(self, x, y, batch_size=None, verbose=0):
        """Mean loss over (x, y), and accuracy if compiled with it: a float,
        or ``[loss, accuracy]`` (as Keras).  ``batch_size`` only sets the
        chunk size of the computation, not the result."""
        self._require_compiled()
        x = self._inputs(x)
        y = self._targets(y, len(x))
        if len(x) == 0:
            raise ValueError("x holds no samples")
        chunk = 1024 if batch_size is None else _check_int(batch_size, "batch_size", 1)
        logs = self._evaluate(x, y, chunk)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        return [logs["loss"], logs["accuracy"]] if self.metrics else logs["loss"]

    def predict(self, x, batch_size=1024):
        """The model's outputs for ``x`` (class probabilities with a softmax
        output), float32 of shape (N, outputs)."""
        x = self._inputs(x)
        rows = max(1, min(_check_int(batch_size, "batch_size", 1), len(x)))
        network = self._network(rows, loss=False)
        out = np.empty((len(x), self.layer_sizes[-1]), np.float32)
        for lo in range(0, len(x), rows):
            network.forward(x[lo:lo + rows], out[lo:lo + rows])
        return out

    # -- save / load ---------------------------------------------------------
    def get_config(self):
        return {"layer_sizes": self.layer_sizes, "activation": self.activation,
                "output": self.output, "seed": self.seed,
                "kernel_initializer": self.kernel_initializer}

    def save(self, path):
        """Write architecture and weights to ``path`` (a NumPy ``.npz``),
        atomically: a failed save leaves any previous file intact."""
        atomic_savez(path, format=np.array(_FORMAT),
                     config=np.array(json.dumps(self.get_config())), params=self.params.data)

    @classmethod
    def load(cls, path):
        """A model from a file written by :meth:`save` (not compiled)."""
        path = os.fspath(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                if "format" not in data or str(data["format"]) != _FORMAT:
                    raise ValueError("not a fastopt MLP file")
                config = json.loads(str(data["config"]))
                params = data["params"]
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such model file") from None
        except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile,
                json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable fastopt model file ({exc})") from None
        try:
            model = cls(**config)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: holds an invalid model configuration ({exc})") from None
        if params.dtype != np.float32 or params.shape != (model.params.size,):
            raise ValueError(f"{path}: holds {params.size} parameters of {params.dtype}, the "
                             f"architecture {config['layer_sizes']} needs "
                             f"{model.params.size} float32")
        model.params.data[:] = params
        return model

    def summary(self):
        """A table of the layers and their parameter counts."""
        lines = [f"{'layer':<12}{'output':>10}{'params':>12}  activation"]
        for k, (W, b) in enumerate(zip(self.weights, self.biases)):
            act = self.activation if k < len(self.weights) - 1 else self.output
            lines.append(f"{'dense_' + str(k):<12}{W.shape[1]:>10}{W.size + b.size:>12,}  {act}")
        lines.append(f"total parameters: {self.params.size:,}")
        text = "\n".join(lines)
        print(text)
        return text

    def __repr__(self):
        return (f"MLP({self.layer_sizes}, activation={self.activation!r}, "
                f"output={self.output!r})")
