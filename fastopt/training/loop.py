"""``fit``'s loop, split as Keras splits it: one function runs the epochs
through the callbacks, one runs an epoch, one trains a batch.

A training step is one call into the compiled pass (``network.gradients``:
forward, loss and backward over the batch's rows, gathered by index) and one
``optimizer.step``; the optimizer's own non-finite scan decides whether a
batch is applied.
"""
import math

from fastopt.training.data import batches, epoch_order


class FitRun:
    """One ``fit``: the training pass ``network`` of ``model`` over the
    converted ``x`` and ``y`` in batches of ``rows``; ``validate()`` returns
    the validation logs (or is None); ``on_nonfinite`` is 'raise' or 'skip'."""

    def __init__(self, model, network, x, y, *, rows, shuffle, on_nonfinite, validate=None):
        self.model, self.network, self.x, self.y = model, network, x, y
        self.rows, self.shuffle, self.on_nonfinite = rows, shuffle, on_nonfinite
        self.validate = validate
        self.steps = math.ceil(len(x) / rows)

    def run(self, callbacks, initial_epoch, epochs):
        """Epochs ``initial_epoch`` .. ``epochs - 1`` through ``callbacks``
        (a CallbackList with a History), until one sets
        ``model.stop_training``; returns the History."""
        self.model.stop_training = False
        callbacks.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            callbacks.on_epoch_begin(epoch)
            logs = self.epoch(epoch, callbacks)
            callbacks.on_epoch_end(epoch, logs)
            if self.model.stop_training:
                break
        finalize = getattr(self.model.optimizer, "finalize_variable_values", None)
        if finalize is not None and epochs > 0:  # Keras': EMA weights replace the model's
            finalize()
        callbacks.on_train_end(callbacks.history.history)
        return callbacks.history

    def epoch(self, epoch, callbacks):
        """One pass over the (reshuffled) training set; returns the epoch's
        logs: the training loss and accuracy are means over the batches as
        they were trained on (before each update), weighted by batch size."""
        total_loss, total_correct, seen, skipped = 0.0, 0, 0, 0
        batch_logs = {}
        order = epoch_order(self.model.rng, len(self.x), self.shuffle)
        for batch, index in enumerate(batches(order, self.rows)):
            result = self.batch(index, epoch, batch)
            if result is None:
                skipped += 1
                continue
            total_loss += result[0] * len(index)
            total_correct += result[1]
            seen += len(index)
            batch_logs["loss"] = total_loss / seen
            callbacks.on_batch_end(batch, batch_logs)
        logs = self.model.objective.logs(total_loss / seen if seen else float("nan"),
                                          total_correct, seen)
        if self.validate is not None:
            logs.update({"val_" + k: v for k, v in self.validate().items()})
        if self.on_nonfinite == "skip":
            logs["skipped_steps"] = skipped
        return logs

    def batch(self, index, epoch, batch):
        """Gradients of the rows ``index`` and one optimizer step:
        ``(mean loss, correct count)``, or None for a batch skipped because
        its loss or gradient holds nan or inf (with 'raise',
        FloatingPointError instead; nothing is applied either way)."""
        loss, correct = self.network.gradients(self.x, self.y, index)
        # the loss can be finite while the backward pass overflowed: the
        # optimizer scans the gradient before applying anything
        if not math.isfinite(loss):
            bad = "loss"
        elif self.model.optimizer.step(skip_nonfinite=True):
            bad = "gradient"
        else:
            return loss, correct
        if self.on_nonfinite == "raise":
            raise FloatingPointError(
                f"non-finite {bad} (loss {loss}) at epoch {epoch + 1}, batch {batch + 1} of "
                f"{self.steps}; training stopped before applying it (the weights are those "
                f"after the previous batch)")
        return None
