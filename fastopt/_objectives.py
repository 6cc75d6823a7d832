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
# ... and of its ``AccuracyRule`` (how a prediction is counted correct).
ARGMAX_LABEL, ARGMAX_ONE_HOT, THRESHOLD = 0, 1, 2


class Loss(NamedTuple):
    name: str             # the canonical (Keras) name
    code: int             # the fused loss kernel of the compiled pass
    output: str = None    # the output activation it requires, taking its logits
    per_output: bool = False  # the mean is over every output, not every sample
    accuracy: int = ARGMAX_ONE_HOT  # argmax vs label / vs one-hot, or a 0.5 threshold
    labels: bool = False  # targets are integer class labels (N,)

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

#: The metric names ``compile`` accepts -> the name ``fit`` reports.
METRICS = {"accuracy": "accuracy", "acc": "accuracy"}


def get(name, allow_none=False):
    """The :class:`Loss` called ``name`` (``None`` -> None if ``allow_none``)."""
    if name is None and allow_none:
        return None
    expected = f"{'None or ' if allow_none else ''}one of {sorted(LOSSES)}"
    if not isinstance(name, str):
        raise TypeError(f"loss must be {expected}, got an object of type "
                        f"{type(name).__name__}")
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; loss must be {expected}")
    return LOSSES[name]


def check_output(loss, output):
    """ValueError unless the output activation ``output`` suits ``loss``."""
    if loss.output is not None and output != loss.output:
        raise ValueError(f"loss {loss.name!r} needs output='{loss.output}', got output="
                         f"{output!r}")


def get_metrics(metrics):
    """The reported names of ``metrics`` (a list of names, or None)."""
    if metrics is None:
        return []
    if isinstance(metrics, str):
        raise TypeError(f"metrics must be a list of names, got {metrics!r}")
    names = []
    for m in metrics:
        if not isinstance(m, str):
            raise TypeError(f"metrics must hold metric names, got {m!r}")
        if m not in METRICS:
            raise ValueError(f"unknown metric {m!r}; supported: 'accuracy'")
        names.append(METRICS[m])
    return sorted(set(names))


def terms_per_sample(loss, outputs):
    """What the mean loss divides one sample's summed loss by: 1 for the
    cross-entropies, the output count for the element-wise losses."""
    return outputs if loss.per_output else 1


def accuracy_rule(loss, outputs):
    """The accuracy rule for ``loss`` on ``outputs`` outputs: a single output
    is thresholded (binary accuracy) whatever the loss, except against labels."""
    return THRESHOLD if outputs == 1 and not loss.labels else loss.accuracy


class Objective:
    """A compiled model's loss and metrics over its ``outputs`` outputs:
    turns the compiled pass's sums and counts into the reported values."""

    def __init__(self, loss, outputs, metrics):
        self.loss, self.outputs, self.metrics = loss, outputs, list(metrics)

    def mean_loss(self, total, samples):
        """A loss summed over ``samples`` samples, as the reported mean."""
        return total / (samples * terms_per_sample(self.loss, self.outputs))

    def accuracy(self, correct, samples):
        """Binary accuracy counts every output, the argmax rules one
        prediction per sample."""
        per_sample = self.outputs if accuracy_rule(self.loss, self.outputs) == THRESHOLD else 1
        return correct / (samples * per_sample)

    def logs(self, loss, correct, samples):
        """``{'loss': loss}``, with 'accuracy' when compiled with it (nan
        for no samples)."""
        logs = {"loss": loss}
        if "accuracy" in self.metrics:
            logs["accuracy"] = self.accuracy(correct, samples) if samples else float("nan")
        return logs
