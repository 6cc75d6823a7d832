"""``fastopt train``: train the MLP on MNIST, then report the test loss and accuracy
(also what ``fastopt`` with no command, or with only options, runs)."""
import contextlib
import io
import math
import shlex
import sys
import time

import fastopt
import fastopt.cli._shared as _shared
from fastopt.cli._shared import CLIError, architecture
from fastopt.cli._schedule import SCHEDULES, make_schedule

DEFAULT_EPOCHS = 10


def add_parser(sub):
    t = _shared.add_command(
        sub, "train", help="train the MLP on MNIST",
        description="Train an MLP on MNIST (the bundled copy, or --data DIR) with a "
                    "Keras-compatible optimizer, then report the test loss and accuracy.",
        epilog="examples:\n"
               "  fastopt train\n"
               "  fastopt train --hidden 128,64 --optimizer rmsprop --lr 1e-3 --epochs 5\n"
               "  fastopt train --schedule cosine:warmup_epochs=1 --epochs 10\n"
               "  fastopt train --epochs 10 --checkpoint run.npz   # then, if interrupted:\n"
               "  fastopt train --resume run.npz\n"
               "  mpiexec -n 2 fastopt train --shard-optimizer   # data-parallel over MPI\n"
               "schedules (per optimizer step; options after ':'):\n"
               "  exponential:rate=0.9,epochs=1   inverse-time:rate=0.5,epochs=1\n"
               "  step:every=3,gamma=0.1          cosine:warmup_epochs=1,alpha=0")
    t.add_argument("--hidden", type=_shared.hidden_sizes,
                   default=_shared.hidden_sizes(_shared.DEFAULT_HIDDEN), metavar="SIZES",
                   help=f"hidden layer sizes (default {_shared.DEFAULT_HIDDEN})")
    t.add_argument("--activation", choices=("relu", "tanh", "sigmoid"), default="relu")
    t.add_argument("--optimizer", choices=_shared.OPTIMIZERS, default="adam")
    _add_optimizer_options(t)
    t.add_argument("--batch-size", type=_shared.positive_int, default=32)
    _shared.add_run_options(t, epochs=None, epochs_help=f"epochs in total (default "
                                                        f"{DEFAULT_EPOCHS})")
    t.add_argument("--schedule", default="none", metavar="NAME[:k=v,...]",
                   help=f"learning-rate schedule: {', '.join(SCHEDULES)}")
    t.add_argument("--early-stopping", type=_shared.positive_int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better validation loss, "
                        "keeping the best weights")
    t.add_argument("--history", metavar="FILE", help="write the history (.json or .csv)")
    t.add_argument("--plot", metavar="FILE", help="write training curves (.png; needs "
                                                  "matplotlib)")
    t.add_argument("--save", metavar="FILE", help="write the trained model (.npz)")
    t.add_argument("--checkpoint", metavar="FILE",
                   help="write a resumable checkpoint after every epoch (default with "
                        "--resume: the file resumed from)")
    t.add_argument("--resume", metavar="FILE", help="continue from a checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.add_argument("--distributed", action="store_true",
                   help="train data-parallel over MPI (needs mpi4py: pip install "
                        "'fastopt[mpi]'); on by itself when started by mpiexec")
    t.add_argument("--shard-optimizer", action="store_true",
                   help="with --distributed or under mpiexec: each rank keeps the "
                        "optimizer state of its shard of the parameters only (ZeRO-1)")
    t.set_defaults(func=run)


def _add_optimizer_options(t):
    t.add_argument("--lr", type=float, help="learning rate (default: the optimizer's Keras "
                                            "default)")
    for flag, used_by in (("momentum", "sgd, rmsprop"), ("beta1", "adam, adamw"),
                          ("beta2", "adam, adamw"), ("epsilon", "adam, adamw, rmsprop, adagrad"),
                          ("rho", "rmsprop"), ("weight-decay", "decoupled weight decay"),
                          ("clipnorm", "clip each gradient tensor to this norm")):
        t.add_argument(f"--{flag}", type=float, help=used_by)
    for flag, used_by in (("nesterov", "sgd"), ("amsgrad", "adam, adamw"),
                          ("centered", "rmsprop")):
        t.add_argument(f"--{flag}", action="store_true", help=used_by)


def distributed_mode(args):
    """fit's ``distributed`` for these arguments: False, True or 'sharded';
    a process started by mpiexec trains distributed by itself."""
    from fastopt.distributed import launched_by_mpiexec

    if not (args.distributed or args.shard_optimizer or launched_by_mpiexec()):
        return False
    return "sharded" if args.shard_optimizer else True


def run(args):
    """`fastopt train`; under MPI every rank trains, rank 0 alone prints and
    writes files."""
    mode = distributed_mode(args)
    rank = 0
    if mode:
        from fastopt.distributed import world
        rank = world().rank
    quiet = contextlib.redirect_stdout(io.StringIO()) if rank else contextlib.nullcontext()
    with quiet:
        return _run(args, mode, rank)


def _run(args, mode, rank):
    if args.checkpoint is None:
        args.checkpoint = args.resume
    if args.plot:
        _require_matplotlib()
    _shared.check_table_path("--history", args.history)
    cfg, resumed = _configuration(args)
    (x, y), (xt, yt) = _shared.load_data(cfg["data"], cfg["limit"])
    sizes = [x.shape[1], *cfg["hidden"], 10]
    n_train = math.ceil(len(x) * (1 - cfg["validation_split"]))
    if resumed:
        model = resumed.model
        print(f"Resuming {architecture(sizes)} from {args.resume} after epoch "
              f"{resumed.epoch} of {cfg['epochs']}")
    else:
        model = _compiled_model(cfg, sizes, n_train, len(x))
    with _shared.thread_limit(args.threads):
        start = time.perf_counter()
        history = _fit(model, x, y, cfg, args, resumed.epoch if resumed else 0, mode)
        seconds = time.perf_counter() - start
        loss, acc = model.evaluate(xt, yt, threads=args.threads or "auto")
    print(f"Test loss {loss:.4f} - test accuracy {acc:.4f} ({round(acc * len(xt)):,}/"
          f"{len(xt):,}) - training took {seconds:.1f}s")
    if rank == 0:
        _write_outputs(args, model, history, f"MLP {architecture(sizes)}, {cfg['optimizer']}")
    return 0


def _configuration(args):
    """This run's settings, and the checkpoint it resumes (or None): a resumed run
    takes the checkpoint's settings, and only its --epochs from the command line."""
    if not args.resume:
        epochs = DEFAULT_EPOCHS if args.epochs is None else args.epochs
        return _train_config(args, epochs), None
    resumed = fastopt.checkpoint.load(args.resume)
    cfg = dict(resumed.extra or {})
    if "hidden" not in cfg:
        raise CLIError(f"{args.resume}: was not written by `fastopt train`")
    if args.epochs is not None:
        cfg["epochs"] = args.epochs
    return cfg, resumed


def _train_config(args, epochs):
    return {"data": args.data, "hidden": args.hidden, "activation": args.activation,
            "optimizer": args.optimizer,
            "optimizer_options": {k: getattr(args, k) for k in _shared.OPT_FLAGS},
            "batch_size": args.batch_size, "epochs": epochs,
            "validation_split": args.validation_split, "schedule": args.schedule,
            "seed": args.seed, "limit": args.limit, "early_stopping": args.early_stopping}


def _compiled_model(cfg, sizes, n_train, n_samples):
    """A new MLP compiled with the configured optimizer and schedule; says so."""
    model = fastopt.MLP(sizes, activation=cfg["activation"], seed=cfg["seed"])
    opt = _shared.make_optimizer(cfg["optimizer"], dict(cfg["optimizer_options"]))
    steps = math.ceil(n_train / cfg["batch_size"])
    sched = make_schedule(cfg["schedule"], opt.learning_rate, steps, cfg["epochs"])
    if sched is not None:
        opt.learning_rate = sched
    model.compile(opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"Training the {architecture(sizes)} MLP ({model.params.size:,} "
          f"parameters, {cfg['activation']}) on "
          f"{'the bundled MNIST' if cfg['data'] is None else cfg['data']}: "
          f"{cfg['optimizer']} (lr {opt.param_groups[0]['lr'] if sched is None else sched}), "
          f"batch {cfg['batch_size']}, {cfg['epochs']} epochs, "
          f"{n_train:,} training / {n_samples - n_train:,} validation samples, seed "
          f"{cfg['seed']}")
    return model


class _Checkpoint(fastopt.callbacks.ModelCheckpoint):
    """ModelCheckpoint that remembers the last epoch it wrote."""

    saved_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.saved_epoch = epoch + 1


def _fit(model, x, y, cfg, args, initial_epoch, mode=False):
    """model.fit with the run's callbacks; Ctrl-C becomes :class:`Interrupted`
    saying whether and how the run can be resumed."""
    callbacks = []
    if cfg["early_stopping"]:
        callbacks.append(fastopt.callbacks.EarlyStopping(
            "val_loss" if cfg["validation_split"] else "loss",
            patience=cfg["early_stopping"], restore_best_weights=True))
    checkpoint = None
    if args.checkpoint:  # the checkpoint also keeps this run's settings, for --resume
        checkpoint = _Checkpoint(args.checkpoint, extra=cfg)
        callbacks.append(checkpoint)
    verbose = 1 if sys.stderr.isatty() and not args.quiet else (0 if args.quiet else 2)
    try:
        return model.fit(x, y, batch_size=cfg["batch_size"], epochs=cfg["epochs"],
                         validation_split=cfg["validation_split"], verbose=verbose,
                         callbacks=callbacks, initial_epoch=initial_epoch,
                         threads=args.threads or "auto", distributed=mode)
    except KeyboardInterrupt:
        saved = checkpoint.saved_epoch if checkpoint else None
        raise _shared.Interrupted(interrupted_message(args.checkpoint, saved, args.resume)) \
            from None


def interrupted_message(checkpoint, saved_epoch, resumed_from):
    """What an interrupted `train` kept: the checkpoint to resume from, if any."""
    resume_from = checkpoint if saved_epoch is not None else resumed_from
    if resume_from:
        kept = (f"{checkpoint} holds epoch {saved_epoch}" if saved_epoch is not None
                else f"no epoch ended since {resumed_from} was loaded")
        return f"interrupted; {kept}: continue with `fastopt train --resume " \
               f"{shlex.quote(resume_from)}`"
    if checkpoint:
        return (f"interrupted before the first epoch ended, so nothing was saved "
                f"({checkpoint} is written after every epoch)")
    return ("interrupted; nothing was saved (train with --checkpoint FILE to write a "
            "checkpoint after every epoch, and continue with --resume FILE)")


def _write_outputs(args, model, history, title):
    if args.history:
        _write_history(args.history, history)
        print(f"History written to {args.history}")
    if args.plot:
        _plot(args.plot, history, title)
        print(f"Training curves written to {args.plot}")
    if args.save:
        model.save(args.save)
        print(f"Model written to {args.save}")


def _write_history(path, history):
    keys = list(history.history)
    rows = [{"epoch": e + 1, **{k: history.history[k][i] for k in keys},
             "seconds": history.epoch_seconds[i]} for i, e in enumerate(history.epoch)]
    _shared.write_table(path, rows, ["epoch", *keys, "seconds"])


def _require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install 'fastopt[plot]'") from None


def _plot(path, history, title):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    h = history.history
    epochs = [e + 1 for e in history.epoch]
    metrics = [m for m in ("loss", "accuracy") if m in h]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        ax.plot(epochs, h[metric], "o-", label="training")
        if "val_" + metric in h:
            ax.plot(epochs, h["val_" + metric], "s--", label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
