"""Train the same MLP from the same initial weights once per optimizer, batch
size or learning rate, and collect what ``fit`` returned, per-batch losses, and
the test loss and accuracy."""
import hashlib
import time

import numpy as np

import fastopt
from fastopt._validate import check_int, check_number
from fastopt.viz import _specs

DEFAULT_OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")
TABLE_COLUMNS = ("run", "loss", "accuracy", "val_loss", "val_accuracy", "test_loss",
                 "test_accuracy", "seconds_per_epoch", "updates")
# the kernels' argument names (as specs spell them) -> the Keras classes'
_KERAS_ARGS = {v: k for k, v in _specs.KERAS_NAMES.items()}


def compare(optimizers=None, *, batch_sizes=None, lrs=None, optimizer="sgd", batch_size=128,
            epochs=5, hidden=(128,), data=None, limit=None, validation_split=0.1, seed=0,
            draw=None):
    """Train one MLP per run and return the numbers (a dict).

    Exactly one of ``optimizers`` (names or specs such as ``"adam:lr=3e-3"``,
    each with Keras' defaults unless set; ``momentum`` is SGD with 0.9; the
    default when nothing is given: sgd, momentum, adagrad, rmsprop, adam),
    ``batch_sizes`` or ``lrs`` varies; the others come from ``optimizer`` and
    ``batch_size``.  Every run starts from the same initial weights (those of
    ``MLP(sizes, seed=seed)``) and shuffles in the same order; it trains on
    MNIST (``data``: a directory of the IDX files, default the bundled copy;
    ``limit``: the first N training images), holding out the last
    ``validation_split``.  The model: ``MLP([784, *hidden, 10])`` (ReLU,
    softmax output, sparse categorical cross-entropy, accuracy).

    Returns 'runs' (the labels), 'varied', 'title', 'table' (one row per run
    of :data:`TABLE_COLUMNS`: the last epoch's values of the History ``fit``
    returned, the test loss and accuracy, mean seconds per epoch, updates), and
    per label: 'history' (``History.history``), 'epoch', 'updates' and
    'seconds' (at each epoch's end), 'batch_loss' (each batch's mean loss,
    before its update) with 'batch_epoch', 'batch_updates', 'batch_seconds',
    'test_loss', 'test_accuracy' and 'initial_digest' (SHA-256 of the weights
    training started from).  'figure': as for :func:`fastopt.viz.paths`.
    """
    varied, runs = _runs(optimizers, batch_sizes, lrs, optimizer, batch_size)
    epochs = check_int(epochs, "epochs", minimum=1)
    hidden = [check_int(h, "hidden", minimum=1) for h in hidden]
    check_number(validation_split, "validation_split", minimum=0, maximum=1, max_open=True)
    from fastopt.cli._shared import load_data

    (x, y), test = load_data(data, None if limit is None else check_int(limit, "limit",
                                                                        minimum=1))
    n = len(x) - int(len(x) * validation_split)  # the last fraction validates, as in fit
    train, validation = (x[:n], y[:n]), ((x[n:], y[n:]) if n < len(x) else None)
    sizes = [x.shape[1], *hidden, 10]
    initial = fastopt.MLP(sizes, seed=seed).params.data.copy()
    result = {"runs": [label for label, *_ in runs], "varied": varied,
              "title": f"MLP {'-'.join(map(str, sizes))} on {n:,} MNIST images, "
                       f"{epochs} epochs"}
    for label, spec, rows in runs:
        result[label] = _train(sizes, seed, initial, spec, rows, train, validation, test,
                               epochs)
    result["table"] = [table_row(label, result[label]) for label in result["runs"]]
    from fastopt.viz._plot import maybe_draw

    result["figure"] = maybe_draw("compare", result, draw)
    return result


def _runs(optimizers, batch_sizes, lrs, optimizer, batch_size):
    """('optimizer' | 'batch_size' | 'lr', [(label, spec, batch size)])."""
    given = [name for name, v in (("optimizers", optimizers), ("batch_sizes", batch_sizes),
                                  ("lrs", lrs)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"give only one of optimizers, batch_sizes and lrs, got "
                         f"{' and '.join(given)}")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    _specs.parse(optimizer)
    if batch_sizes is not None:
        sizes = [check_int(b, "batch_sizes", minimum=1) for b in _nonempty(batch_sizes,
                                                                            "batch_sizes")]
        return "batch_size", [(f"batch {b}", optimizer, b) for b in sizes]
    if lrs is not None:
        rates = [check_number(r, "lrs", minimum=0, min_open=True) for r in _nonempty(
            lrs, "lrs")]
        sep = "," if ":" in optimizer else ":"
        return "lr", [(f"lr {r:g}", f"{optimizer}{sep}lr={r!r}", batch_size) for r in rates]
    specs = list(DEFAULT_OPTIMIZERS if optimizers is None else _nonempty(
        _specs.split(optimizers) if isinstance(optimizers, str) else optimizers,
        "optimizers"))
    for spec in specs:
        _specs.parse(spec)
    return "optimizer", [(spec, spec, batch_size) for spec in specs]


def _nonempty(values, name):
    values = list(values)
    if not values:
        raise ValueError(f"{name} must hold at least one value")
    return values


def keras_optimizer(spec):
    """The Keras-compatible optimizer of a spec (Keras' defaults unless set)."""
    name, options = _specs.parse(spec)
    family, settings = _specs.OPTIMIZERS[name]
    kwargs = {_KERAS_ARGS.get(k, k): v for k, v in {**settings, **options}.items()}
    try:
        return fastopt.optim.keras.get_class(family)(**kwargs)
    except TypeError as exc:  # an option the optimizer does not take
        raise ValueError(f"{spec}: {exc}") from None


def _train(sizes, seed, initial, spec, rows, train, validation, test, epochs):
    model = fastopt.MLP(sizes, seed=seed)
    model.params.data[...] = initial  # the same start for every run
    model.compile(keras_optimizer(spec), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    log = BatchLog(rows, len(train[0]))
    history = model.fit(*train, batch_size=rows, epochs=epochs, validation_data=validation,
                        verbose=0, callbacks=[log])
    test_loss, test_accuracy = model.evaluate(*test)
    steps = np.cumsum(log.epoch_batches)
    return {"history": {k: np.array(v) for k, v in history.history.items()},
            "epoch": np.array(history.epoch) + 1, "updates": steps,
            "seconds": np.cumsum(history.epoch_seconds),
            "epoch_seconds": np.array(history.epoch_seconds),
            "batch_loss": np.array(log.losses), "batch_epoch": np.array(log.epochs),
            "batch_updates": np.arange(1, len(log.losses) + 1),
            "batch_seconds": np.array(log.seconds), "test_loss": test_loss,
            "test_accuracy": test_accuracy, "initial_digest": log.initial_digest,
            "batch_size": rows, "optimizer": spec}


def table_row(label, run):
    """One row of the comparison table (the last epoch of ``fit``'s History)."""
    h = run["history"]
    row = {"run": label, **{k: float(h[k][-1]) for k in TABLE_COLUMNS[1:5] if k in h},
           "test_loss": run["test_loss"], "test_accuracy": run["test_accuracy"],
           "seconds_per_epoch": float(np.mean(run["epoch_seconds"])),
           "updates": int(run["updates"][-1])}
    return row


class BatchLog(fastopt.callbacks.Callback):
    """Records each batch's mean loss, recovered from fit's running epoch mean
    ``logs['loss']`` (batch b's loss is ``(m_b n_b - m_(b-1) n_(b-1)) / (n_b -
    n_(b-1))``, n the rows seen, the last batch possibly partial), its time
    since training began and its fractional epoch; the number of batches of
    each epoch; and the SHA-256 of the weights training starts from.  ``rows``:
    the batch size; ``n``: the training samples."""

    def __init__(self, rows, n):
        self.rows, self.n = min(rows, n), n
        self.losses, self.seconds, self.epochs, self.epoch_batches = [], [], [], []
        self.initial_digest = None

    def on_train_begin(self, logs=None):
        self.initial_digest = hashlib.sha256(self.model.params.data.tobytes()).hexdigest()
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._sum, self._seen = epoch, 0.0, 0
        self.epoch_batches.append(0)

    def on_batch_end(self, batch, logs=None):
        seen = min((batch + 1) * self.rows, self.n)
        total = logs["loss"] * seen
        self.losses.append((total - self._sum) / (seen - self._seen))
        self._sum, self._seen = total, seen
        self.epoch_batches[-1] += 1
        self.seconds.append(time.perf_counter() - self._start)
        self.epochs.append(self._epoch + seen / self.n)
