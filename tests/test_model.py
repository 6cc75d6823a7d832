"""The MLP trainer: gradients, fit/evaluate/predict semantics, save/load."""
import io
import json
import os
import stat
import sys

import numpy as np
import pytest

from fastopt import MLP, optim
from fastopt.optim import keras as fk
from reference import MODEL_CASES


def _data(n=64, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w = rng.standard_normal((d, classes))
    y = np.argmax(x @ w + 0.1 * rng.standard_normal((n, classes)), axis=1)
    return x, y


# -- gradient check against a float64 reference --------------------------------

def _forward64(model, params, x):
    n = len(model.weights)
    sizes = model.layer_sizes
    offsets = np.cumsum([0] + [a * b for a, b in zip(sizes, sizes[1:])] + sizes[1:])
    Ws = [params[offsets[k]:offsets[k + 1]].reshape(sizes[k], sizes[k + 1]) for k in range(n)]
    bs = [params[offsets[n + k]:offsets[n + k + 1]] for k in range(n)]
    act = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh, "linear": lambda v: v,
           "sigmoid": lambda v: 1 / (1 + np.exp(-v))}
    a = x
    for k in range(n):
        a = a @ Ws[k] + bs[k]
        if k < n - 1:
            a = act[model.activation](a)
    return a  # the output layer's pre-activation


def _loss64(model, params, x, y):
    z = _forward64(model, params, x)
    if model.loss.endswith("categorical_crossentropy"):
        m = z.max(1, keepdims=True)
        logp = z - m - np.log(np.exp(z - m).sum(1, keepdims=True))
        t = np.eye(z.shape[1])[y] if y.ndim == 1 else y
        return -(t * logp).sum(1).mean()
    if model.loss == "binary_crossentropy":
        return np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
    out = {"linear": z, "sigmoid": 1 / (1 + np.exp(-z)), "tanh": np.tanh(z),
           "relu": np.maximum(z, 0),
           "softmax": np.exp(z - z.max(1, keepdims=True))
           / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)}[model.output]
    return np.mean((out - y) ** 2)


@pytest.mark.parametrize("activation,output,loss", MODEL_CASES)
def test_gradient_matches_finite_differences(activation, output, loss):
    rng = np.random.default_rng(1)
    model = MLP([5, 7, 4, 3], activation=activation, output=output, seed=2)
    model.compile("sgd", loss=loss)
    x = rng.standard_normal((9, 5)).astype(np.float32)
    labels = rng.integers(0, 3, 9)
    y = {"sparse_categorical_crossentropy": labels,
         "categorical_crossentropy": np.eye(3, dtype=np.float32)[labels],
         "binary_crossentropy": (rng.random((9, 3)) > 0.5).astype(np.float32),
         "mse": rng.standard_normal((9, 3)).astype(np.float32)}[loss]
    loss_value = model.compute_gradients(x, y)
    params = model.params.data.astype(np.float64)
    x64 = x.astype(np.float64)
    y64 = y if y.dtype.kind == "i" else y.astype(np.float64)
    assert loss_value == pytest.approx(_loss64(model, params, x64, y64), rel=1e-5)
    h = 1e-6
    numeric = np.empty_like(params)
    for i in range(params.size):
        old = params[i]
        params[i] = old + h
        up = _loss64(model, params, x64, y64)
        params[i] = old - h
        down = _loss64(model, params, x64, y64)
        params[i] = old
        numeric[i] = (up - down) / (2 * h)
    np.testing.assert_allclose(model.params.grad, numeric, rtol=1e-3,
                               atol=1e-5 * np.abs(numeric).max())


# -- fit semantics ---------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [1, 5, 32, 64, 1000])
def test_every_batch_size_trains(batch_size):
    x, y = _data()
    model = MLP([6, 16, 3], seed=0)
    model.compile(fk.SGD(learning_rate=0.1), metrics=["accuracy"])
    before = model.evaluate(x, y)
    hist = model.fit(x, y, batch_size=batch_size, epochs=30 if batch_size > 5 else 5,
                     verbose=0)
    after = model.evaluate(x, y)
    assert after[0] < before[0] and after[1] > 0.8
    assert hist.history["loss"][-1] == pytest.approx(hist.history["loss"][-1])
    assert len(hist.history["loss"]) == len(hist.epoch)


def test_steps_per_epoch_include_the_partial_batch():
    x, y = _data(n=10)
    model = MLP([6, 4, 3], seed=0)
    opt = fk.Adam()
    model.compile(opt)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert opt.iterations == 2 * 3  # batches of 4, 4, 2


def test_full_batch_equals_manual_gradient_descent():
    x, y = _data(n=20)
    a, b = MLP([6, 5, 3], seed=3), MLP([6, 5, 3], seed=3)
    a.compile(optim.SGD(a.params, lr=0.5))
    b.compile(optim.SGD(b.params, lr=0.5))
    a.fit(x, y, batch_size=len(x), epochs=3, shuffle=False, verbose=0)
    for _ in range(3):
        b.compute_gradients(x, y)
        b.params.data -= np.float32(0.5) * b.params.grad
    np.testing.assert_allclose(a.params.data, b.params.data, rtol=1e-6, atol=1e-7)


def test_validation_split_takes_the_last_fraction_before_shuffling():
    x, y = _data(n=50)
    model = MLP([6, 4, 3], seed=0)
    model.compile("adam", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=1, validation_split=0.2, verbose=0)
    # Keras: split_at = ceil(50 * 0.8) = 40 -> validation is samples 40..49
    val = model.evaluate(x[40:], y[40:])
    assert hist.history["val_loss"][0] == pytest.approx(val[0], rel=1e-6)
    assert hist.history["val_accuracy"][0] == pytest.approx(val[1])
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_validation_data():
    x, y = _data(n=40)
    xv, yv = _data(n=12, seed=5)
    model = MLP([6, 4, 3], seed=0)
    model.compile("adam")
    hist = model.fit(x, y, epochs=2, validation_data=(xv, yv), verbose=0)
    assert hist.history["val_loss"][-1] == pytest.approx(model.evaluate(xv, yv), rel=1e-6)


def test_same_seed_same_weights_bit_for_bit():
    x, y = _data()
    runs = []
    for _ in range(2):
        model = MLP([6, 8, 3], seed=7)
        model.compile("adam")
        model.fit(x, y, batch_size=8, epochs=3, verbose=0)
        runs.append(model.params.data.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    other = MLP([6, 8, 3], seed=8)
    assert not np.array_equal(other.params.data, MLP([6, 8, 3], seed=7).params.data)


def test_inputs_are_converted_once_any_real_dtype_and_image_shape():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 4, 4)).astype(np.uint8)
    y = rng.integers(0, 3, 20)
    model = MLP([16, 8, 3], seed=0)
    model.compile("adam")
    model.fit(images, y, epochs=1, verbose=0)
    p = model.predict(images.reshape(20, 16).astype(np.float64))
    assert p.shape == (20, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)


def test_big_endian_and_unaligned_float32_inputs_train_like_native_ones():
    """Inputs in a byte order or alignment the kernels cannot read are
    converted, not rejected: the run matches the native array's bit for bit."""
    x, y = _data()
    raw = np.zeros(x.nbytes + 1, np.uint8)
    unaligned = np.frombuffer(raw.data, np.float32, x.size, offset=1).reshape(x.shape)
    assert not unaligned.flags.aligned
    unaligned[...] = x  # frombuffer of a writable buffer is writable
    runs = []
    for inputs in (x, x.astype(">f4"), unaligned):
        model = MLP([6, 8, 3], seed=1)
        model.compile("adam")
        model.fit(inputs, y, batch_size=8, epochs=2, verbose=0)
        runs.append(model.params.data.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])


def test_glorot_uniform_initialisation():
    model = MLP([784, 32, 10], seed=0)
    limit = np.sqrt(6 / (784 + 32))
    w = model.weights[0]
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    assert abs(w.mean()) < 0.01 * limit and not any(b.any() for b in model.biases)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_every_optimizer_learns(optimizer):
    x, y = _data(n=200)
    model = MLP([6, 16, 3], seed=0)
    lr = {"sgd": 0.1, "adagrad": 0.1}.get(optimizer, 0.01)
    model.compile(fk.get(optimizer, learning_rate=lr), metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=20, verbose=0)
    assert model.evaluate(x, y)[1] > 0.9


def test_torch_style_optimizer_and_parameter_groups():
    x, y = _data()
    model = MLP([6, 8, 3], seed=0)
    n = len(model.weights)
    pairs = list(model.params)
    opt = optim.AdamW([{"params": pairs[:n]}, {"params": pairs[n:], "weight_decay": 0.0}],
                      lr=0.01)
    assert opt.n_kernel_calls == 2  # weights are one span, biases another
    model.compile(opt, metrics=["accuracy"])
    model.fit(x, y, epochs=20, verbose=0)
    assert model.evaluate(x, y)[1] > 0.8


def test_save_and_load_round_trip(tmp_path):
    x, y = _data()
    model = MLP([6, 8, 3], activation="tanh", seed=0)
    model.compile("adam")
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = MLP.load(path)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.params.data, model.params.data)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_load_rejects_foreign_and_truncated_files(tmp_path):
    model = MLP([6, 8, 3], seed=0)
    good = tmp_path / "m.npz"
    model.save(good)
    truncated = tmp_path / "t.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable fastopt model file"):
        MLP.load(truncated)
    foreign = tmp_path / "f.npz"
    np.savez(foreign, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastopt MLP file"):
        MLP.load(foreign)
    text = tmp_path / "x.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable fastopt model file"):
        MLP.load(text)
    with pytest.raises(FileNotFoundError, match="no such model file"):
        MLP.load(tmp_path / "missing.npz")


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    model = MLP([6, 8, 3], seed=0)
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        MLP([6, 8, 3], seed=1).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


@pytest.mark.parametrize("call,exc,match", [
    (lambda m, x, y: m.fit(x, y[:10], verbose=0), ValueError, "y has 10 samples"),
    (lambda m, x, y: m.fit(x[:, :5], y, verbose=0), ValueError, r"x must have shape \(N, 6\)"),
    (lambda m, x, y: m.fit(x, y + 5, verbose=0), ValueError, r"is not a class label in \[0, 3\)"),
    (lambda m, x, y: m.fit(x, y, batch_size=0, verbose=0), ValueError, "batch_size must be"),
    (lambda m, x, y: m.fit(x, y, validation_split=1.0, verbose=0), ValueError,
     r"validation_split must be a number in \[0, 1\)"),
    (lambda m, x, y: m.fit(x, y, validation_split=0.1, validation_data=(x, y), verbose=0),
     ValueError, "not both"),
    (lambda m, x, y: m.fit(np.full_like(x, np.nan), y, verbose=0), ValueError,
     "x holds nan or inf"),
    (lambda m, x, y: m.fit(x, None, verbose=0), TypeError, "y must be an array"),
    (lambda m, x, y: m.compile("ftrl"), ValueError, "unknown optimizer 'ftrl'"),
    (lambda m, x, y: m.compile("adam", loss="hinge"), ValueError, "unknown loss 'hinge'"),
    (lambda m, x, y: m.compile("adam", loss="binary_crossentropy"), ValueError,
     "needs output='sigmoid'"),
    (lambda m, x, y: m.compile("adam", metrics=["auc"]), ValueError, "unknown metric 'auc'"),
    (lambda m, x, y: m.compile(optim.Adam([(np.zeros(3, np.float32),
                                            np.zeros(3, np.float32))])),
     ValueError, "other arrays than this model's parameters"),
    (lambda m, x, y: MLP([6, 8, 3]).fit(x, y), RuntimeError, "not compiled"),
    (lambda m, x, y: MLP([6]), ValueError, "at least two ints"),
    (lambda m, x, y: MLP([6, 3], activation="gelu"), ValueError, "activation must be one of"),
])
def test_bad_usage(call, exc, match):
    x, y = _data()
    model = MLP([6, 8, 3], seed=0)
    model.compile("adam")
    with pytest.raises(exc, match=match):
        call(model, x, y)


def test_categorical_targets_need_one_hot():
    x, y = _data()
    model = MLP([6, 8, 3], seed=0)
    model.compile("adam", loss="categorical_crossentropy", metrics=["accuracy"])
    with pytest.raises(ValueError, match="integer labels need loss='sparse_categorical"):
        model.fit(x, y, verbose=0)
    hist = model.fit(x, np.eye(3)[y], epochs=3, verbose=0)
    sparse = MLP([6, 8, 3], seed=0)
    sparse.compile("adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    sparse_hist = sparse.fit(x, y, epochs=3, verbose=0)
    assert hist.history == sparse_hist.history  # one-hot targets: the same loss and metric
    np.testing.assert_array_equal(model.params.data, sparse.params.data)


# -- progress output (issue #16) -----------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("verbose,lines", [(0, 0), (1, 2), (2, 2), ("auto", 2),
                                           (True, 2), (False, 0)])
def test_verbose_on_a_redirected_stream_writes_lines_never_bars(capsys, verbose, lines):
    x, y = _data()
    model = MLP([6, 8, 3], seed=0)
    model.compile("adam", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=verbose)
    out, err = capsys.readouterr()
    assert "\r" not in out + err and err == ""
    assert out.count("\n") == lines
    if lines:
        assert out.startswith("Epoch 1/2 - ") and " - loss: " in out and "accuracy: " in out


@pytest.mark.parametrize("verbose,bar", [(1, True), ("auto", True), (2, False), (0, False)])
def test_the_bar_is_drawn_only_on_a_terminal(monkeypatch, capsys, verbose, bar):
    pytest.importorskip("tqdm")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    x, y = _data()
    model = MLP([6, 8, 3], seed=0)
    model.compile("adam")
    model.fit(x, y, epochs=1, verbose=verbose)
    assert ("\r" in terminal.getvalue()) == bar
    assert capsys.readouterr().out.count("Epoch 1/1 - ") == (verbose != 0)


@pytest.mark.parametrize("verbose,exc", [(3, ValueError), (-1, ValueError), ("loud", ValueError),
                                         (1.0, TypeError), (None, TypeError)])
def test_bad_verbose(verbose, exc):
    x, y = _data()
    model = MLP([6, 8, 3], seed=0)
    model.compile("adam")
    with pytest.raises(exc, match="verbose"):
        model.fit(x, y, verbose=verbose)


# -- model files (issue #16) ---------------------------------------------------------

def test_a_loaded_model_evaluates_with_its_compile_loss_and_metrics(tmp_path):
    x, y = _data()
    model = MLP([6, 8, 1], output="sigmoid", seed=0)
    model.compile("adam", loss="binary_crossentropy", metrics=["acc"])
    model.fit(x, (y == 1).astype(float), epochs=2, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = MLP.load(tmp_path / "m.npz")
    # the metric keeps the name it was compiled with, as Keras' history does (issue #19)
    assert loaded.loss == "binary_crossentropy" and loaded.metrics == ["acc"]
    assert loaded.evaluate(x, y == 1) == model.evaluate(x, y == 1)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    with pytest.raises(RuntimeError, match="no optimizer"):
        loaded.fit(x, y == 1, verbose=0)
    loaded.compile("sgd", loss="mse")  # compiling again replaces the saved loss
    assert loaded.loss == "mse" and loaded.metrics == []


def test_a_model_file_without_compile_settings_loads_as_before(tmp_path):
    model = MLP([6, 8, 3], seed=0)
    path = tmp_path / "old.npz"
    np.savez(path, format=np.array("fastopt.MLP/1"),
             config=np.array(json.dumps(model.get_config())), params=model.params.data)
    loaded = MLP.load(path)
    np.testing.assert_array_equal(loaded.params.data, model.params.data)
    with pytest.raises(RuntimeError, match="not compiled"):
        loaded.evaluate(*_data())


def test_a_config_that_disagrees_with_the_stored_parameters_is_refused_first(tmp_path):
    path = tmp_path / "huge.npz"
    config = {"layer_sizes": [3_000_000_000, 2], "activation": "relu", "output": "softmax",
              "seed": 0, "kernel_initializer": "glorot_uniform"}
    np.savez(path, format=np.array("fastopt.MLP/1"), config=np.array(json.dumps(config)),
             params=np.zeros(17, np.float32))
    with pytest.raises(ValueError, match=r"huge\.npz: .*holds 17 parameters of float32, the "
                                         r"architecture \[3000000000, 2\] needs 6000000002"):
        MLP.load(path)
    config["layer_sizes"] = [6, "x"]
    np.savez(path, format=np.array("fastopt.MLP/1"), config=np.array(json.dumps(config)),
             params=np.zeros(17, np.float32))
    with pytest.raises(ValueError, match=r"huge\.npz: .*invalid model configuration"):
        MLP.load(path)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_models_get_the_mode_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        MLP([6, 8, 3], seed=0).save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("call,match", [
    (lambda m, x, y: m.fit(x, y, batch_size=2.0, verbose=0), "batch_size must be an int"),
    (lambda m, x, y: m.fit(x, y, epochs="2", verbose=0), "epochs must be an int"),
    (lambda m, x, y: m.fit(x, y, validation_split="0.1", verbose=0),
     "validation_split must be a number"),
    (lambda m, x, y: m.fit(x, y, shuffle=1, verbose=0), "shuffle must be True or False"),
    (lambda m, x, y: m.fit(x, y, on_nonfinite=None, verbose=0), "on_nonfinite must be one of"),
    (lambda m, x, y: m.compile("adam", metrics=[1]), "metrics must hold metric names"),
    (lambda m, x, y: m.compile("adam", loss=3), "loss must be one of"),
    (lambda m, x, y: m.predict(x, batch_size=None), "batch_size must be an int"),
    (lambda m, x, y: MLP([6.0, 3]), r"layer_sizes\[0\] must be an int"),
    (lambda m, x, y: MLP([6, 3], output=None), "output must be one of"),
])
def test_a_wrong_type_is_a_type_error(call, match):
    x, y = _data()
    model = MLP([6, 8, 3], seed=0)
    model.compile("adam")
    before = model.params.data.copy()
    with pytest.raises(TypeError, match=match):
        call(model, x, y)
    np.testing.assert_array_equal(model.params.data, before)


# -- threads: the trainer's matrix products, one thread by default -------------------------

def _blas_threads():
    from threadpoolctl import threadpool_info

    return {i["filepath"]: i["num_threads"] for i in threadpool_info()
            if i["user_api"] == "blas"}


def test_fit_runs_blas_on_one_thread_by_default_and_restores_it():
    """With threads='auto' every BLAS library runs one thread during fit,
    evaluate and predict (as seen from a callback), and the caller's setting
    is back afterwards; threads=n asks for n."""
    from threadpoolctl import threadpool_limits

    from fastopt.callbacks import Callback

    class Record(Callback):
        def __init__(self):
            self.seen = []

        def on_batch_end(self, batch, logs=None):
            self.seen.append(set(_blas_threads().values()))

    x, y = _data(n=96, d=8)
    model = MLP([8, 16, 3], seed=0).compile("adam", metrics=["accuracy"])
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        record = Record()
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[record])
        assert record.seen and all(s == {1} for s in record.seen)
        assert _blas_threads() == before
        record2 = Record()
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[record2], threads=2)
        assert record2.seen and all(s == {2} for s in record2.seen)
        assert _blas_threads() == before


def test_fit_gives_the_same_bits_whatever_the_callers_blas_threads():
    """The default does not depend on how many threads BLAS was given, at
    sizes where OpenBLAS splits a product over two threads and one and two
    threads give different bits (checked first: without that the test
    would prove nothing, and it says so)."""
    from threadpoolctl import threadpool_limits

    x, y = _data(n=256, d=300, classes=4)

    def trained(**fit_args):
        model = MLP([300, 64, 32, 4], seed=3).compile("adam")
        model.fit(x, y, batch_size=32, epochs=2, verbose=0, **fit_args)
        return model.params.data.copy()

    if np.array_equal(trained(threads=1), trained(threads=2)):
        pytest.skip("this BLAS gives the same bits on one and two threads here")
    weights = []
    for limit in (1, 2):
        with threadpool_limits(limits=limit, user_api="blas"):
            weights.append(trained())
    np.testing.assert_array_equal(weights[0], weights[1])


@pytest.mark.parametrize("threads,error", [("many", ValueError), (0, ValueError),
                                           (1.5, TypeError), (True, TypeError)])
def test_threads_is_checked_before_anything_runs(threads, error):
    x, y = _data()
    model = MLP([6, 8, 3], seed=0).compile("adam")
    before = model.params.data.copy()
    with pytest.raises(error, match="threads"):
        model.fit(x, y, epochs=1, verbose=0, threads=threads)
    with pytest.raises(error, match="threads"):
        model.evaluate(x, y, threads=threads)
    with pytest.raises(error, match="threads"):
        model.predict(x, threads=threads)
    np.testing.assert_array_equal(model.params.data, before)
