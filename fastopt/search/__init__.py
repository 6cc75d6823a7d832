"""Hyperparameter search over any ``compile`` / ``fit`` / architecture
argument, on any arrays, scored on a validation split only.

>>> from fastopt import search
>>> result = search.random_search(x, y, {"learning_rate": search.LogUniform(1e-4, 1e-1),
...                                      "batch_size": [32, 128], "hidden": [(64,), (128, 64)],
...                                      "optimizer": ["adam", "sgd"], "epochs": 3},
...                               n_trials=12, seed=0)
>>> result.best_params, result.best_score, result.best_model
>>> result.table          # ranked list of dicts; result.to_dataframe() with pandas

``grid_search`` tries every combination of the listed values,
``random_search`` draws ``n_trials`` configurations from a seeded NumPy
generator, and ``bayes_search`` asks Optuna's TPE sampler (seeded; an
optional dependency, ``pip install 'fastopt[search]'``, imported only
there).  :func:`search` takes the method by name.

Every configuration is trained with the same ``seed`` (the same initial
weights and shuffling for all: they differ only by what is searched) on the
training part of ``x``, ``y`` and scored by ``monitor`` after its last
epoch, on ``validation_split`` (the last fraction, as Keras' ``fit``) or on
``validation_data``.  A test set is never given to a trial: pass it as
``test_data`` and the best model alone is evaluated on it, once, after the
selection (``result.test_scores``).  The same arguments and seed give the
same table (timings aside).
"""
import itertools

import numpy as np

from fastopt._validate import check_bool, check_choice, check_int, check_number
from fastopt.search._result import SearchResult
from fastopt.search._trial import build_mlp, fit_arguments, optimizer_arguments, run_trial
from fastopt.search._trial import optimizer_arguments as check_arguments
from fastopt.search.space import Choice, Distribution, Int, LogUniform, Uniform, as_space

__all__ = ["Choice", "Distribution", "Int", "LogUniform", "SearchResult", "Uniform",
           "bayes_search", "check_arguments", "grid_search", "random_search", "search"]

METHODS = ("grid", "random", "bayes")


def search(x, y, space, *, method="random", n_trials=None, monitor="val_loss", mode="auto",
           validation_split=0.2, validation_data=None, model_fn=None, refit=False,
           test_data=None, seed=0, n_startup_trials=None, verbose=0, on_trial=None):
    """Search ``space`` ({argument: distribution, list of values, or fixed
    value}) by ``method`` ('grid', 'random' or 'bayes'); returns a
    :class:`SearchResult`.

    ``monitor``: the validation log ranked on ('val_loss', 'val_accuracy',
    ...), lower first if ``mode`` is 'min', higher if 'max' ('auto': 'max'
    for accuracies).  ``model_fn(params) -> compiled model`` builds any model
    (else an MLP, ``fastopt.search._trial``'s arguments); ``batch_size``,
    ``epochs`` and ``shuffle`` still go to ``fit``.  ``refit``: retrain the
    best configuration on all of ``x``, ``y`` (else keep the best trial's
    model).  ``n_startup_trials``: Bayesian search's random trials before
    TPE takes over (default ``max(2, min(10, n_trials // 3))``).
    ``verbose=1`` prints a line per trial; ``on_trial(row)`` is called with
    each trial's row as it ends.
    """
    method = check_choice(method, "method", METHODS)
    searched, fixed = as_space(space)
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    mode = _mode(monitor, mode)
    validation = _validation(validation_split, validation_data)
    if model_fn is None:
        optimizers = searched["optimizer"].grid("optimizer") if "optimizer" in searched \
            else [fixed.get("optimizer", "adam")]
        optimizer_arguments(list(searched) + list(fixed), optimizers)
        model_fn = lambda params: build_mlp(params, x, y, seed)  # noqa: E731
    elif not callable(model_fn):
        raise TypeError(f"model_fn must be callable, got {type(model_fn).__name__}")
    seed = check_int(seed, "seed", minimum=0)
    verbose = check_int(verbose, "verbose", minimum=0, maximum=1)
    if on_trial is not None and not callable(on_trial):
        raise TypeError(f"on_trial must be callable, got {type(on_trial).__name__}")
    runner = _Runner(model_fn, fixed, x, y, validation, monitor, mode, verbose, on_trial)
    if method == "grid":
        if n_trials is not None:
            raise ValueError("n_trials is for random and bayes search; grid search tries "
                             "every combination")
        names = list(searched)
        for values in itertools.product(*(searched[k].grid(k) for k in names)):
            runner(dict(zip(names, values)))
    else:
        n_trials = check_int(n_trials if n_trials is not None else 10, "n_trials", minimum=1)
        if method == "random":
            rng = np.random.default_rng(seed)
            for _ in range(n_trials):
                runner({k: d.sample(rng) for k, d in searched.items()})
        else:
            _bayes(runner, searched, n_trials, seed, n_startup_trials)
    return runner.result(method, refit=check_bool(refit, "refit"), test_data=test_data)


def grid_search(x, y, space, **kwargs):
    """:func:`search` with ``method='grid'``: every combination of the
    listed values (``Choice``, lists, ``Int``)."""
    return search(x, y, space, method="grid", **kwargs)


def random_search(x, y, space, n_trials=10, **kwargs):
    """:func:`search` with ``method='random'``: ``n_trials`` configurations
    drawn independently from ``np.random.default_rng(seed)``."""
    return search(x, y, space, method="random", n_trials=n_trials, **kwargs)


def bayes_search(x, y, space, n_trials=10, **kwargs):
    """:func:`search` with ``method='bayes'``: Optuna's TPE sampler
    (``TPESampler(seed=seed)``), told each trial's score."""
    return search(x, y, space, method="bayes", n_trials=n_trials, **kwargs)


def _mode(monitor, mode):
    if not isinstance(monitor, str) or not monitor.startswith("val_"):
        raise ValueError(f"monitor must name a validation log ('val_loss', 'val_accuracy', "
                         f"...): the search scores on validation data only; got {monitor!r}")
    mode = check_choice(mode, "mode", ("auto", "min", "max"))
    if mode == "auto":
        mode = "max" if "acc" in monitor else "min"
    return mode


def _validation(split, data):
    if data is not None:
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise TypeError("validation_data must be a pair (x_val, y_val)")
        return {"validation_data": tuple(data)}
    return {"validation_split": check_number(split, "validation_split", minimum=0, maximum=1,
                                             min_open=True, max_open=True)}


def _bayes(runner, searched, n_trials, seed, n_startup_trials):
    """Ask Optuna's seeded TPE sampler for each configuration; tell it the
    score (a failed trial as FAIL, which TPE leaves out)."""
    try:
        import optuna
    except ImportError as exc:
        raise ImportError("method='bayes' needs Optuna, an optional dependency: "
                          "pip install 'fastopt[search]' (or pip install optuna)") from exc
    if n_startup_trials is None:
        n_startup_trials = max(2, min(10, n_trials // 3))
    n_startup_trials = check_int(n_startup_trials, "n_startup_trials", minimum=1)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="minimize" if runner.mode == "min" else "maximize",
                                    sampler=sampler)
        for _ in range(n_trials):
            trial = study.ask()
            row = runner({name: d.suggest(trial, name) for name, d in searched.items()})
            if row["status"] == "ok":
                study.tell(trial, row["score"])
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
    finally:
        optuna.logging.set_verbosity(level)


class _Runner:
    """Runs trials, keeps every row and the best model so far."""

    def __init__(self, model_fn, fixed, x, y, validation, monitor, mode, verbose, on_trial):
        self.model_fn, self.fixed, self.x, self.y = model_fn, fixed, x, y
        self.validation, self.monitor, self.mode, self.verbose = validation, monitor, mode, verbose
        self.on_trial = on_trial
        self.rows, self.best_model, self.best_row, self.best_params = [], None, None, None

    def __call__(self, params):
        row, model = run_trial({**self.fixed, **params}, self.model_fn, self.x, self.y,
                               self.validation, self.monitor)
        row = {"trial": len(self.rows), **params, **row}
        self.rows.append(row)
        if row["status"] == "ok" and (self.best_row is None or self._better(row, self.best_row)):
            self.best_row, self.best_model = row, model
            self.best_params = {**self.fixed, **params}
        if self.verbose:
            print(f"trial {row['trial']}: {params} -> {self.monitor} {row['score']:.6g}",
                  flush=True)
        if self.on_trial is not None:
            self.on_trial(row)
        return row

    def _better(self, a, b):
        return a["score"] < b["score"] if self.mode == "min" else a["score"] > b["score"]

    def result(self, method, refit, test_data):
        if self.best_row is None:
            raise RuntimeError(f"every one of the {len(self.rows)} trials failed; first "
                               f"error: {self.rows[0].get('error')}")
        result = SearchResult(method, self.monitor, self.mode, self.rows, self.best_params,
                              self.best_model, self._refit)
        if refit:  # the best configuration again, on every training sample
            result.refit(self.x, self.y)
        if test_data is not None:  # once, on the model already chosen
            result.test(*test_data)
        return result

    def _refit(self, params, x, y):
        model = self.model_fn(params)
        model.fit(x, y, verbose=0, **fit_arguments(params))
        return model

