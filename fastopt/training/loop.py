"""``fit``'s loop, split as Keras splits it: one function runs the epochs
through the callbacks, one runs an epoch, one trains a batch.

A training step is one call into the compiled pass (``network.gradients``:
forward, loss and backward over the batch's rows, gathered by index) and one
``optimizer.step``; the optimizer's own non-finite scan decides whether a
batch is applied.
"""
import math

from fastopt.training.data import batches, epoch_order
from fastopt.training.parallel import epoch_sums


class FitRun:
    """One ``fit``: the training pass ``network`` of ``model`` over the
    converted ``x`` and ``y`` in batches of ``rows``; ``validate()`` returns
    the validation logs (or is None); ``on_nonfinite`` is 'raise' or 'skip';
    ``parallel``: a :class:`~fastopt.training.parallel.DataParallel` when
    the fit is distributed (this rank then trains on its rows of each batch)."""

    def __init__(self, model, network, x, y, *, rows, shuffle, on_nonfinite, validate=None,
                 parallel=None):
        self.model, self.network, self.x, self.y = model, network, x, y
        self.rows, self.shuffle, self.on_nonfinite = rows, shuffle, on_nonfinite
        self.validate, self.parallel = validate, parallel
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
            if self.parallel is not None:
                self.parallel.before_epoch_callbacks()
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
        total_loss, seen, skipped = 0.0, 0, 0
        sums = [0.0] * len(self.model.objective.metrics)
        batch_logs = {}
        order = epoch_order(self.model.rng, len(self.x), self.shuffle)
        if self.model.dropout:  # this epoch's dropout masks, from the model's generator
            self.network.reseed(int(self.model.rng.integers(2 ** 63)))
        for batch, index in enumerate(batches(order, self.rows)):
            result = self.batch(index, epoch, batch)
            if result is None:  # skipped: the callbacks see its non-finite loss
                skipped += 1
                callbacks.on_batch_end(batch, {"loss": float("nan")})
            else:
                total_loss += result[0] * result[2]
                sums = [u + v for u, v in zip(sums, result[1])]
                seen += result[2]
                if seen:
                    batch_logs["loss"] = total_loss / seen  # this rank's, when distributed
                callbacks.on_batch_end(batch, batch_logs)
            if self.model.stop_training:  # as Keras, a callback may stop mid-epoch
                break
        total_loss, sums, seen = epoch_sums(self.parallel, total_loss, sums, seen)
        logs = self.model.objective.logs(total_loss / seen if seen else float("nan"),
                                          sums, seen)
        if self.validate is not None:
            logs.update({"val_" + k: v for k, v in self.validate().items()})
        if self.on_nonfinite == "skip":
            logs["skipped_steps"] = skipped
        lr = self.model.optimizer.param_groups[0]["lr"]
        if callbacks.records_learning_rate and not callable(lr):
            logs["learning_rate"] = float(lr)  # the epoch's, as Keras' callbacks log it
        return logs

    def batch(self, index, epoch, batch):
        """Gradients of the rows ``index`` (this rank's part of them, when
        distributed) and one optimizer step: ``(mean loss, the metrics' sums,
        rows)`` over the rows this process computed, or None for a batch skipped
        because its loss or gradient holds nan or inf (with 'raise',
        FloatingPointError instead; nothing is applied either way)."""
        rows = index if self.parallel is None else self.parallel.local(index)
        if len(rows):  # the gradient of this rank's share of the batch's mean loss
            loss = self.network.gradients(self.x, self.y, rows, len(index))[0]
            sums = self.network.metric_sums
        else:  # a rank's share of a last batch smaller than the number of ranks
            loss, sums = 0.0, [0.0] * len(self.model.objective.metrics)
            self.model.params.grad.fill(0)
        # the loss can be finite while the backward pass overflowed: the
        # optimizer scans the gradient before applying anything
        if self.parallel is not None:
            skipped = self.parallel.step(len(rows), math.isfinite(loss))
        else:
            skipped = not math.isfinite(loss) or self.model.optimizer.step(skip_nonfinite=True)
        if not skipped:
            return loss, sums, len(rows)
        bad = "gradient" if math.isfinite(loss) else "loss"
        if self.on_nonfinite == "raise":
            raise FloatingPointError(
                f"non-finite {bad} (loss {loss}) at epoch {epoch + 1}, batch {batch + 1} of "
                f"{self.steps}; training stopped before applying it (the weights are those "
                f"after the previous batch)")
        return None
