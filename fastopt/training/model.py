"""A multilayer perceptron with Keras' ``compile`` / ``fit`` / ``evaluate``.

The model is thin Python over fused kernels: matrix products go to BLAS
(SciPy's ``sgemm``, called from Cython into preallocated buffers); bias + activation, their
backward, bias gradients, the loss with its gradient, and the optimizer
update are fastopt kernels.  All parameters live in one
:class:`~fastopt.optim.flat.FlatParameters` (weights first, then biases), so the
optimizer makes one kernel call per step, and no array is allocated per
training step.  The loss and metric policy is :mod:`fastopt._objectives`,
fit's data preparation :mod:`fastopt.training.data`, its epoch loop
:mod:`fastopt.training.loop`.
"""
import numpy as np

import fastopt._kernels as K
from fastopt._validate import check_bool, check_choice, check_int
from fastopt.optim.flat import FlatParameters
from fastopt import _objectives as objectives
from fastopt.training import architecture, data, files, parallel
from fastopt.training.callbacks import CallbackList, History, ModelCheckpoint, \
    resolve_verbose
from fastopt.training.loop import FitRun
from fastopt.training.losses import LossFunction
from fastopt.training.summary import dense_layer_table, summary_text
from fastopt.training.threads import blas_threads, check_threads

__all__ = ["History", "MLP"]


class MLP:
    """A fully connected network, e.g. ``MLP([784, 32, 64, 128, 256, 10])``.

    Parameters
    ----------
    layer_sizes : sequence of int
        Input size, hidden sizes, output size.
    activation : {'relu', 'sigmoid', 'tanh', 'linear', 'softmax'} or a list of them
        Activation of every hidden layer, or one per hidden layer.
    output : {'softmax', 'sigmoid', 'linear', 'relu', 'tanh'}
        Activation of the output layer.
    seed : int, optional
        Seeds the weight initialisation and the shuffling in ``fit``: the same
        seed (and thread count) gives the same weights bit for bit.
    kernel_initializer : {'glorot_uniform', 'he_uniform'}
        Keras' default, Glorot-uniform (limit sqrt(6 / (fan_in + fan_out))),
        or He-uniform (sqrt(6 / fan_in)); biases start at zero.
    dropout : list of float, optional
        One rate in [0, 1) per hidden layer: Keras' ``Dropout(rate)`` after
        that layer (inverted scaling, training only; see
        :class:`fastopt.layers.Dropout`).
    """

    _from_config = {}  # a config key -> the subclass that builds such configs

    def __init__(self, layer_sizes, activation="relu", output="softmax", seed=None,
                 kernel_initializer="glorot_uniform", dropout=None):
        sizes = architecture.check_layer_sizes(layer_sizes)
        architecture.check_activations(activation, output, kernel_initializer, sizes)
        self.dropout = architecture.check_dropout(dropout, len(sizes) - 2)
        self.layer_sizes = sizes
        self.activation = list(activation) if isinstance(activation, (list, tuple)) \
            else activation
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
        architecture.initialise(self.weights, kernel_initializer, self._rng)
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.objective = None
        self.history = None
        self.stop_training = False
        self._train_network = None

    # -- compile -------------------------------------------------------------
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None):
        """Choose the optimizer, the loss and the metrics (Keras' names).

        ``optimizer`` is a name of :func:`fastopt.optim.keras.names` ('sgd',
        'adam', 'adamw', 'rmsprop', 'adagrad', 'nadam', 'adamax', 'adadelta',
        'lion': the Keras-compatible class with Keras' defaults), a
        :mod:`fastopt.optim.keras` instance (built over this model's
        parameters here), or a :mod:`fastopt.optim` (PyTorch-style) instance
        constructed over ``model.params``.  ``loss`` is any name of
        :data:`fastopt._objectives.LOSSES`:
        'sparse_categorical_crossentropy', 'categorical_crossentropy' (both
        need ``output='softmax'`` and are computed from the logits, fused with
        the softmax), 'binary_crossentropy' (``output='sigmoid'``, likewise
        from the logits) or 'mse' ('mean_squared_error'), or a
        :mod:`fastopt.losses` object (``from_logits=True`` takes a linear
        output's logits; ``label_smoothing`` reaches the compiled pass).
        ``metrics``: names of :data:`fastopt._objectives.METRICS` ('accuracy'
        or 'acc' -- resolved as Keras 3 does --, 'binary_accuracy',
        'categorical_accuracy', 'sparse_categorical_accuracy', 'mse', 'mae',
        ...) or :mod:`fastopt.metrics` objects; ``fit``'s history reports each
        under the name given.  A loss that does not fit the output layer, or
        a metric that does not fit the loss's targets, is a ValueError.
        """
        objective = self._objective(loss, metrics)
        self.optimizer = architecture.optimizer_for(optimizer, self.params)
        self._set_objective(objective)
        return self

    def _objective(self, loss, metrics):
        """The checked :class:`~fastopt._objectives.Objective` of ``loss``
        and ``metrics`` for this model's output layer."""
        policy = loss.policy if isinstance(loss, LossFunction) else objectives.get(loss)
        outputs = self.layer_sizes[-1]
        objectives.check_output(policy, self.output, outputs)
        return objectives.Objective(policy, outputs,
                                    objectives.get_metrics(metrics, policy, outputs))

    def _set_objective(self, objective):
        self.objective = objective
        self.loss = objective.loss.name
        self.metrics = objective.names
        self._train_network = None

    # -- the training step ---------------------------------------------------
    def _network(self, rows, loss=True):
        """The compiled forward/backward passes over this model's weights
        and gradient arrays, for up to ``rows`` samples at a time."""
        return K.Network(self.weights, self.biases, self._weight_grads, self._bias_grads,
                         rows=rows, activation=self.activation, output=self.output,
                         loss=self.objective.loss if loss and self.objective else None,
                         metrics=self.objective.codes if loss and self.objective else (),
                         dropout=self.dropout + [0.0] if self.dropout else None)

    def _require_loss(self):
        if self.objective is None:
            raise RuntimeError("the model is not compiled: call model.compile(...) first")

    def _require_optimizer(self):
        self._require_loss()
        if self.optimizer is None:
            raise RuntimeError("the model has no optimizer (loaded from a file?): call "
                               "model.compile(optimizer, ...) first")

    def _dataset(self, x, y, prefix=""):
        """``x`` and ``y`` checked and converted once for this model."""
        x = data.as_inputs(x, self.layer_sizes[0], prefix + "x")
        return x, data.as_targets(y, len(x), self.objective.loss, self.layer_sizes[-1],
                                  prefix + "y")

    def compute_gradients(self, x, y):
        """The mean loss over (x, y), with its gradient written into
        ``model.params.grad``; no update.  For learners and gradient checks."""
        self._require_loss()
        x, y = self._dataset(x, y)
        if len(x) == 0:
            raise ValueError("x holds no samples")
        with blas_threads("auto"):
            return self._network(len(x)).gradients(x, y)[0]

    def train_on_batch(self, x, y):
        """One optimizer step on one batch; returns its mean loss."""
        self._require_optimizer()
        loss = self.compute_gradients(x, y)
        self.optimizer.step()
        return loss

    # -- fit / evaluate / predict --------------------------------------------
    def fit(self, x, y, batch_size=32, epochs=1, verbose="auto", validation_split=0.0,
            validation_data=None, shuffle=True, callbacks=None, checkpoint=None,
            initial_epoch=0, on_nonfinite="raise", threads="auto", distributed=False):
        """Train, as Keras' ``fit``; returns a :class:`History`.

        ``batch_size`` may be anything from 1 (per-sample SGD) to ``len(x)``
        (batch gradient descent); the last batch of an epoch may be partial.
        ``validation_split`` takes the *last* fraction of the samples, before
        shuffling, as Keras does; ``validation_data=(x_val, y_val)`` gives the
        validation set explicitly.  ``shuffle`` reshuffles the training
        samples every epoch with the model's seeded generator.  The reported
        training loss and accuracy are means over the epoch's batches as they
        were trained on (before each update), weighted by batch size.

        ``verbose``: 0 silent; 1 a progress bar (only when stderr is a
        terminal: a redirected log never gets carriage-return bars) and a
        line per epoch on stdout; 2 the line only; 'auto' (default) 1 on a
        terminal, else 2.  ``callbacks``: :mod:`fastopt.callbacks` instances.
        ``checkpoint``: a path rewritten (atomically) after every epoch with
        everything :func:`fastopt.checkpoint.load` needs to resume; resume
        with ``fit(..., initial_epoch=checkpoint.epoch)``.  Epochs run from
        ``initial_epoch`` to ``epochs``.

        A batch whose loss or gradient holds nan or inf is never applied:
        with ``on_nonfinite='raise'`` (default) fit raises FloatingPointError
        naming the epoch and batch, the weights being those before that
        batch; with ``'skip'`` the update is skipped and counted in the
        history's 'skipped_steps'.

        ``threads``: the matrix products' threads; 'auto' (default) is one,
        as :mod:`fastopt.training.threads` explains; an int asks for that many.

        ``distributed``: True trains data-parallel over MPI (under mpiexec),
        'sharded' also shards the optimizer state: :mod:`~.training.parallel`.
        """
        self._require_optimizer()
        threads = check_threads(threads)
        distributed = parallel.check_mode(distributed)
        check_choice(on_nonfinite, "on_nonfinite", ("raise", "skip"))
        verbose = resolve_verbose(verbose)
        callbacks = CallbackList(callbacks).callbacks  # checked before anything runs
        if checkpoint is not None:
            callbacks.append(ModelCheckpoint(checkpoint))
        x, y = self._dataset(x, y)
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        epochs = check_int(epochs, "epochs", minimum=0)
        initial_epoch = check_int(initial_epoch, "initial_epoch", minimum=0)
        shuffle = check_bool(shuffle, "shuffle")
        x, y, validation = data.training_and_validation(
            x, y, validation_split, validation_data, self._dataset)
        if len(x) == 0:
            raise ValueError("x holds no samples")
        rows = min(batch_size, len(x))
        par, callbacks, verbose = parallel.setup(self, distributed, (x, y, validation), rows,
                                                 callbacks, verbose, dict(
            batch_size=batch_size, epochs=epochs, initial_epoch=initial_epoch, shuffle=shuffle))
        run = FitRun(self, self._training_network(rows), x, y, rows=rows, shuffle=shuffle,
                     on_nonfinite=on_nonfinite, parallel=par,
                     validate=validation and parallel.validator(self, par, validation))
        return self._fit_run(run, callbacks, verbose, initial_epoch, epochs, threads)

    def _fit_run(self, run, callbacks, verbose, initial_epoch, epochs, threads):
        """Run ``run`` (a FitRun) through fit's callback list; a distributed
        run ends with the check that every rank holds the same parameters."""
        resumed = initial_epoch and self.history is not None \
            and len(self.history.epoch) == initial_epoch
        callback_list = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                                     model=self, verbose=verbose, epochs=epochs,
                                     steps=run.steps, history=self.history if resumed else None)
        with blas_threads(threads):
            if run.parallel is None:
                return run.run(callback_list, initial_epoch, epochs)
            history = run.parallel.run(lambda: run.run(callback_list, initial_epoch, epochs))
        if verbose:
            print(run.parallel.report())
        return history

    def _training_network(self, rows):
        """The training pass for batches of ``rows``, kept between fits."""
        if self._train_network is None or self._train_network.rows != rows:
            self._train_network = self._network(rows)
        return self._train_network

    def _evaluate(self, x, y, chunk=1024):
        """The logs (loss, and accuracy if compiled with it) over converted
        ``x`` and ``y``, computed ``chunk`` samples at a time."""
        total_loss, sums = self._evaluate_sums(x, y, chunk)
        return self.objective.logs(self.objective.mean_loss(total_loss, len(x)), sums, len(x))

    def _evaluate_sums(self, x, y, chunk=1024):
        """``(summed loss, the metrics' sums)`` over converted ``x`` and ``y``."""
        rows = min(chunk, len(x))
        network = self._network(rows)
        total_loss = 0.0
        sums = [0.0] * len(self.metrics)
        for lo in range(0, len(x), rows):
            total_loss += network.evaluate(x[lo:lo + rows], y[lo:lo + rows])[0]
            sums = [a + b for a, b in zip(sums, network.metric_sums)]
        return total_loss, sums

    def evaluate(self, x, y, batch_size=None, verbose=0, threads="auto"):
        """Mean loss over (x, y), and the compiled metrics: a float, or
        ``[loss, metric, ...]`` in the order compiled (as Keras).  ``batch_size`` only sets the
        chunk size of the computation, not the result.  A model loaded with
        :meth:`load` evaluates with the loss it was compiled with.
        ``threads`` as in :meth:`fit`."""
        self._require_loss()
        threads = check_threads(threads)
        x, y = self._dataset(x, y)
        if len(x) == 0:
            raise ValueError("x holds no samples")
        chunk = 1024 if batch_size is None else check_int(batch_size, "batch_size", minimum=1)
        with blas_threads(threads):
            logs = self._evaluate(x, y, chunk)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        return [logs["loss"]] + [logs[k] for k in self.metrics] if self.metrics else logs["loss"]

    def predict(self, x, batch_size=1024, threads="auto"):
        """The model's outputs for ``x`` (class probabilities with a softmax
        output), float32 of shape (N, outputs).  ``threads`` as in
        :meth:`fit`."""
        threads = check_threads(threads)
        x = data.as_inputs(x, self.layer_sizes[0])
        rows = max(1, min(check_int(batch_size, "batch_size", minimum=1), len(x)))
        network = self._network(rows, loss=False)
        out = np.empty((len(x), self.layer_sizes[-1]), np.float32)
        with blas_threads(threads):
            for lo in range(0, len(x), rows):
                network.forward(x[lo:lo + rows], out[lo:lo + rows])
        return out

    # -- training state --------------------------------------------------------
    @property
    def rng(self):
        """The generator of the initial weights and of fit's shuffling."""
        return self._rng

    @property
    def rng_state(self):
        """The state of :attr:`rng` (a dict, as NumPy's bit generators give it)."""
        return self._rng.bit_generator.state

    @rng_state.setter
    def rng_state(self, state):
        self._rng.bit_generator.state = state

    def resume(self, history, rng_state):
        """Continue a saved run (as :func:`fastopt.checkpoint.load` does):
        ``fit(..., initial_epoch=len(history.epoch))`` then appends to
        ``history`` and shuffles exactly as the run would have."""
        if not isinstance(history, History):
            raise TypeError(f"history must be a fastopt History, got {type(history).__name__}")
        self.rng_state = rng_state
        self.history = history

    # -- save / load ---------------------------------------------------------
    def get_config(self):
        config = {"layer_sizes": self.layer_sizes, "activation": self.activation,
                  "output": self.output, "seed": self.seed,
                  "kernel_initializer": self.kernel_initializer}
        if self.dropout:
            config["dropout"] = self.dropout
        return config

    @classmethod
    def from_config(cls, config):
        """The model :meth:`get_config` described (a subclass's config names
        it by a key of its own, e.g. a Sequential's 'layers')."""
        for key, subclass in MLP._from_config.items():
            if key in config:
                return subclass.from_config(config)
        return cls(**config)

    def compile_config(self):
        """How the model was compiled, as JSON-able data (None if it was not)."""
        if self.objective is None:
            return None
        return {"loss": objectives.describe(self.objective.loss), "metrics": self.metrics}

    def save(self, path):
        """Write architecture, weights and (if compiled) the loss and
        metrics to ``path`` (a NumPy ``.npz``), atomically: a failed save
        leaves any previous file intact."""
        files.write_model(path, self.get_config(), self.params.data, self.compile_config())

    @classmethod
    def load(cls, path):
        """A model from a file written by :meth:`save`, ready to
        ``predict`` and, if it was compiled when saved, to ``evaluate`` with
        its loss and metrics (as Keras' ``load_model``); ``compile`` it with
        an optimizer to train.  ValueError naming the file if it is not a
        model file, is damaged, or its parameters disagree with its
        architecture (checked before the model is allocated)."""
        def build(config, params, compiled):
            model = cls.from_config(config)
            model.params.data[:] = params
            if compiled is not None:
                model._set_objective(model._objective(compiled["loss"], compiled["metrics"]))
            return model

        return files.read_model(path, build)

    def layer_table(self):
        """``[(name, type, output shape, parameters)]`` of the layers, as
        Keras' summary lists them: an MLP's are Dense layers, each hidden
        one followed by a Dropout if it has a rate."""
        return dense_layer_table(self.weights, self.biases, self.dropout)

    def summary(self):
        """Print Keras' table of the layers (Layer (type), Output Shape,
        Param #) and the parameter totals; returns None, as Keras."""
        print(summary_text(type(self).__name__.lower(), self.layer_table(),
                           self.params.size))

    def __repr__(self):
        return (f"MLP({self.layer_sizes}, activation={self.activation!r}, "
                f"output={self.output!r})")
