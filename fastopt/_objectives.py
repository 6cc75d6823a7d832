"""The loss and metric policy of fastopt's training: the one table of it.

For every loss name Keras accepts here (and its aliases): the canonical name,
the output activation the loss requires (its kernel then takes that layer's
logits, fused with the activation), how the mean loss is divided, the
accuracy rule, and the integer code of the compiled pass
(``fastopt._kernels.Network``).  The compiled pass only receives these codes
and returns raw sums and counts; the means reported by ``fit`` and
``evaluate`` are computed here.

This module imports nothing, so it sits at the bottom of the layers: the
compiled ``Network`` (``fastopt/_ext/network.pxi``) reads it to turn a loss
name into its codes, and the trainer (:mod:`fastopt.training`) reads it for
the names it accepts and the means it reports.  Neither owns a copy.
"""
from typing import NamedTuple

# The codes of network.pxi's ``LossKind`` (which fused loss kernel runs) ...
SPARSE_CE, CATEGORICAL_CE, BCE, MSE = 1, 2, 3, 4
# ... and of its ``AccuracyRule`` (how a prediction is counted correct),
ARGMAX_LABEL, ARGMAX_ONE_HOT, THRESHOLD = 0, 1, 2
# which with the summed errors are the metrics the pass computes.
ABS_ERROR, SQUARED_ERROR = 3, 4
METRIC_CODES = (ARGMAX_LABEL, ARGMAX_ONE_HOT, THRESHOLD, ABS_ERROR, SQUARED_ERROR)


class Loss(NamedTuple):
    name: str             # the canonical (Keras) name
    code: int             # the fused loss kernel of the compiled pass
    output: str = None    # the output activation it requires, taking its logits
    per_output: bool = False  # the mean is over every output, not every sample
    accuracy: int = ARGMAX_ONE_HOT  # argmax vs label / vs one-hot, or a 0.5 threshold
    labels: bool = False  # targets are integer class labels (N,)
    smoothing: float = 0.0  # label smoothing (Keras' rule for the loss)

    @property
    def from_logits(self):
        return self.output is not None


_LOSSES = (
    Loss("sparse_categorical_crossentropy", SPARSE_CE, "softmax", accuracy=ARGMAX_LABEL,
         labels=True),
    Loss("categorical_crossentropy", CATEGORICAL_CE, "softmax"),
    Loss("binary_crossentropy", BCE, "sigmoid", per_output=True, accuracy=THRESHOLD),
    Loss("mse", MSE, per_output=True),
)
#: Every accepted name (canonical and alias) -> its :class:`Loss`.
LOSSES = {loss.name: loss for loss in _LOSSES}
LOSSES["mean_squared_error"] = LOSSES["mse"]
#: The losses taking ``label_smoothing`` (Keras' rule: categorical targets
#: become ``t (1 - s) + s / classes``, binary ones ``t (1 - s) + s / 2``).
SMOOTHED = ("categorical_crossentropy", "binary_crossentropy")


class Metric(NamedTuple):
    name: str             # Keras' name of the metric function
    code: int = None      # the compiled pass's metric code; None: 'accuracy', which
                          # Keras resolves per model (see :func:`resolve_accuracy`)
    per_output: bool = False  # the mean is over every output, not every sample


ACCURACY = Metric("accuracy")
_METRICS = (
    Metric("binary_accuracy", THRESHOLD, per_output=True),
    Metric("categorical_accuracy", ARGMAX_ONE_HOT),
    Metric("sparse_categorical_accuracy", ARGMAX_LABEL),
    Metric("mean_squared_error", SQUARED_ERROR, per_output=True),
    Metric("mean_absolute_error", ABS_ERROR, per_output=True),
)
#: The metric names ``compile`` accepts (Keras' names and aliases) -> the metric.
METRICS = {m.name: m for m in _METRICS}
METRICS.update(accuracy=ACCURACY, acc=ACCURACY, mse=METRICS["mean_squared_error"],
               mae=METRICS["mean_absolute_error"])


def get(name, allow_none=False):
    """The :class:`Loss` called ``name`` (``None`` -> None if ``allow_none``);
    a dict ``{'name', 'from_logits', 'label_smoothing'}`` (as
    :func:`describe` writes it) gives that configured loss."""
    if name is None and allow_none:
        return None
    if isinstance(name, dict) and set(name) == {"name", "from_logits", "label_smoothing"}:
        return configure(get(name["name"]), name["from_logits"], name["label_smoothing"])
    expected = f"{'None or ' if allow_none else ''}one of {sorted(LOSSES)}"
    if not isinstance(name, str):
        raise TypeError(f"loss must be {expected} or a fastopt.losses object, got an object "
                        f"of type {type(name).__name__}")
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; loss must be {expected}")
    return LOSSES[name]


def configure(loss, from_logits=False, label_smoothing=0.0):
    """``loss`` taking the logits of a linear output (``from_logits``; the
    compiled pass fuses the softmax or sigmoid into the loss, as it does
    for a softmax or sigmoid output) and/or with label smoothing."""
    if type(from_logits) is not bool:
        raise TypeError(f"from_logits must be True or False, got {from_logits!r}")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)):
        raise TypeError(f"label_smoothing must be a number, got {label_smoothing!r}")
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    if from_logits and loss.output is None:
        raise ValueError(f"loss {loss.name!r} takes no from_logits")
    if label_smoothing and loss.name not in SMOOTHED:
        raise ValueError(f"loss {loss.name!r} takes no label_smoothing (Keras' neither); "
                         f"losses with it: {list(SMOOTHED)}")
    return loss._replace(output="linear" if from_logits else loss.output,
                         smoothing=float(label_smoothing))


def describe(loss):
    """``loss`` as JSON-able data :func:`get` reads back: its name, or a
    dict when it is configured."""
    if loss == LOSSES[loss.name]:
        return loss.name
    return {"name": loss.name, "from_logits": loss.output == "linear",
            "label_smoothing": loss.smoothing}


def check_output(loss, output, outputs=None):
    """ValueError unless the output activation ``output`` over ``outputs``
    units suits ``loss``: a cross-entropy needs its activation (or the
    logits of a linear output with ``from_logits=True``), and no loss
    trains a softmax over one unit (its output is always 1.0)."""
    if outputs == 1:
        check_single_unit(output)
        if loss.code in (SPARSE_CE, CATEGORICAL_CE):
            raise ValueError(f"loss {loss.name!r} needs at least two output units (one "
                             f"class is always right); for a yes/no target use one "
                             f"sigmoid unit and 'binary_crossentropy'")
    if loss.output is not None and output != loss.output:
        hint = (", or output='linear' with from_logits=True (fastopt.losses)"
                if loss.output != "linear" else "")
        raise ValueError(f"loss {loss.name!r} needs output='{loss.output}'{hint}; got output="
                         f"{output!r}")


def check_single_unit(output):
    """ValueError for a softmax over one unit (its output is always 1.0)."""
    if output == "softmax":
        raise ValueError("a softmax over one unit always outputs 1.0: use 'sigmoid' (a "
                         "probability) or 'linear' (regression) for one output unit")


def resolve_accuracy(loss, outputs):
    """The metric 'accuracy' means, as Keras 3 resolves it: binary accuracy
    for one output unit, sparse categorical against integer labels, else
    categorical."""
    if outputs == 1:
        return METRICS["binary_accuracy"]
    return METRICS["sparse_categorical_accuracy" if loss.labels else "categorical_accuracy"]


def _metric_entry(m):
    """(the name ``fit`` reports, the table key) of one entry of ``metrics``:
    a name, or a metric object (``name`` and ``identifier``)."""
    if isinstance(m, str):
        return m, m
    if isinstance(getattr(m, "name", None), str) and isinstance(
            getattr(m, "identifier", None), str):
        return m.name, m.identifier
    raise TypeError(f"metrics must hold metric names or fastopt.metrics objects, got {m!r}")


def get_metrics(metrics, loss, outputs):
    """``[(reported name, Metric)]`` for ``metrics`` (names or metric
    objects, or None) on ``loss`` over ``outputs`` units: the reported name
    is the one the user gave (Keras: 'acc' stays 'acc'), repeats dropped.
    ValueError for a metric whose targets do not fit the loss's."""
    if metrics is None:
        return []
    if isinstance(metrics, str) or not hasattr(metrics, "__iter__"):
        raise TypeError(f"metrics must be a list of names, got {metrics!r}")
    chosen = {}
    for m in metrics:
        key, identifier = _metric_entry(m)
        if identifier not in METRICS:
            raise ValueError(f"unknown metric {identifier!r}; supported: {sorted(METRICS)}")
        metric = METRICS[identifier]
        if metric.code is None:
            metric = resolve_accuracy(loss, outputs)
        if (metric.code == ARGMAX_LABEL) != loss.labels:
            need = ("integer class labels (loss 'sparse_categorical_crossentropy')"
                    if loss.labels is False else
                    "targets shaped like the outputs; with integer labels use "
                    "'sparse_categorical_accuracy' or 'accuracy'")
            raise ValueError(f"metric {key!r} does not fit loss {loss.name!r}: it needs "
                             f"{need}")
        chosen.setdefault(key, metric)
    return list(chosen.items())


def terms_per_sample(loss, outputs):
    """What the mean loss divides one sample's summed loss by: 1 for the
    cross-entropies, the output count for the element-wise losses."""
    return outputs if loss.per_output else 1


def accuracy_rule(loss, outputs):
    """The accuracy rule for ``loss`` on ``outputs`` outputs: a single output
    is thresholded (binary accuracy) whatever the loss, except against labels."""
    return THRESHOLD if outputs == 1 and not loss.labels else loss.accuracy


class Objective:
    """A compiled model's loss and metrics (``[(reported name, Metric)]``)
    over its ``outputs`` outputs: turns the compiled pass's sums and counts
    into the reported values."""

    def __init__(self, loss, outputs, metrics):
        self.loss, self.outputs, self.metrics = loss, outputs, list(metrics)

    @property
    def names(self):
        """The reported metric names, in the order compiled."""
        return [key for key, _ in self.metrics]

    @property
    def codes(self):
        """The metric codes the compiled pass computes, in that order."""
        return tuple(metric.code for _, metric in self.metrics)

    def mean_loss(self, total, samples):
        """A loss summed over ``samples`` samples, as the reported mean."""
        return total / (samples * terms_per_sample(self.loss, self.outputs))

    def logs(self, loss, sums, samples):
        """``{'loss': loss}`` and each metric's mean from its sum over
        ``samples`` samples (nan for no samples): per output for the
        element-wise metrics, per sample for the argmax accuracies."""
        logs = {"loss": loss}
        for (key, metric), total in zip(self.metrics, sums):
            count = samples * (self.outputs if metric.per_output else 1)
            logs[key] = total / count if samples else float("nan")
        return logs
