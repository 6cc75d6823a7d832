"""Issue #19: Sequential models of Keras-style layers with per-layer
activations and Dropout, compiled into the one fused training pass."""
import numpy as np
import pytest

import fastopt
import fastopt._kernels as K
from fastopt import MLP, Sequential
from fastopt.layers import Dense, Dropout, Flatten, Input
from fastopt.optim import keras as fk
from frameworks import keras_on_torch


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2, 3)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(np.int64) + (x[:, 1, 2] > 0.5)
    return x, y


def _layers(dropout=0.0):
    return [Input((2, 3)), Flatten(), Dense(16, activation="relu")] + \
        ([Dropout(dropout)] if dropout else []) + \
        [Dense(12, activation="tanh"), Dense(8, activation="sigmoid"),
         Dense(3, activation="softmax")]


# -- dropout against a float64 reference -------------------------------------------

def _act(name, z):
    return {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh,
            "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "linear": lambda v: v}[name](z)


def _act_grad(name, a):
    return {"relu": (a > 0).astype(float), "tanh": 1 - a * a, "sigmoid": a * (1 - a),
            "linear": np.ones_like(a)}[name]


def _reference(model, x, t, masks):
    """Float64 forward and backward of the masked network (softmax +
    categorical cross-entropy, mean over the batch)."""
    Ws = [W.astype(np.float64) for W in model.weights]
    bs = [b.astype(np.float64) for b in model.biases]
    acts, inputs, a = model.activation, [], x.astype(np.float64)
    pre = []
    for k in range(len(Ws) - 1):
        inputs.append(a)
        h = _act(acts[k], a @ Ws[k] + bs[k])
        pre.append(h)
        a = h * masks[k]
    inputs.append(a)
    z = a @ Ws[-1] + bs[-1]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss = -np.mean(np.sum(t * np.log(p), 1))
    d = (p - t) / len(x)
    grads = [None] * len(Ws)
    for k in range(len(Ws) - 1, -1, -1):
        grads[k] = (inputs[k].T @ d, d.sum(0))
        if k:
            d = (d @ Ws[k].T) * masks[k - 1] * _act_grad(acts[k - 1], pre[k - 1])
    return loss, grads


def test_dropout_masks_are_inverted_and_keyed_by_their_counter():
    m = K.dropout_mask(400, 50, 0.3, 7, 0, 1)
    assert set(np.unique(m)) == {0.0, np.float32(1 / 0.7)}
    assert abs((m == 0).mean() - 0.3) < 0.01
    np.testing.assert_array_equal(m, K.dropout_mask(400, 50, 0.3, 7, 0, 1))
    for other in (K.dropout_mask(400, 50, 0.3, 8, 0, 1), K.dropout_mask(400, 50, 0.3, 7, 1, 1),
                  K.dropout_mask(400, 50, 0.3, 7, 0, 2)):
        assert (other != m).mean() > 0.3
    assert (K.dropout_mask(10, 10, 0.0, 1, 2, 3) == 1).all()


@pytest.mark.parametrize("args, exc, match", [
    ((-1, 5, 0.3, 7, 0, 1), ValueError, "rows must be >= 0"),
    ((4, True, 0.3, 7, 0, 1), TypeError, "columns must be an int"),
    ((4, 5, 1.0, 7, 0, 1), ValueError, r"rate must be in \[0, 1\)"),
    ((4, 5, 0.3, -7, 0, 1), ValueError, "seed must be >= 0"),
    ((4, 5, 0.3, 2**64, 0, 1), ValueError, "seed must be at most"),
    ((4, 5, 0.3, 7, 0.0, 1), TypeError, "step must be an int"),
    ((4, 5, 0.3, 7, 0, 2**31), ValueError, "layer must be at most"),
])
def test_dropout_mask_checks_its_arguments(args, exc, match):
    with pytest.raises(exc, match=match):
        K.dropout_mask(*args)


@pytest.mark.parametrize("acts,rates", [(["relu", "tanh"], [0.5, 0.2]),
                                        (["sigmoid", "linear"], [0.0, 0.6]),
                                        (["tanh", "relu"], [0.3, 0.0])])
def test_dropout_forward_and_backward_match_a_float64_reference(acts, rates):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, 5)).astype(np.float32)
    t = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 20)]
    model = MLP([5, 9, 7, 3], activation=acts, dropout=rates, seed=4)
    for b in model.biases:
        b[...] = rng.uniform(-0.3, 0.3, b.shape)
    model.compile("sgd", loss="categorical_crossentropy")
    net = model._network(20)
    net.reseed(99)
    for step in range(2):  # each call draws new masks: (seed, step, layer, row, column)
        masks = [K.dropout_mask(20, n, r, 99, step, k) if r else np.ones((20, n))
                 for k, (n, r) in enumerate(zip([9, 7], rates))]
        loss, grads = _reference(model, x, t, masks)
        got = net.gradients(x, t)[0]
        assert got == pytest.approx(loss, rel=1e-5)
        for k, (dW, db) in enumerate(grads):
            np.testing.assert_allclose(model._weight_grads[k], dW, rtol=2e-4, atol=1e-6)
            np.testing.assert_allclose(model._bias_grads[k], db, rtol=2e-4, atol=1e-6)


def test_dropout_is_off_in_evaluate_and_predict():
    x, y = _data()
    with_dropout = Sequential(_layers(dropout=0.5), seed=3)
    without = Sequential(_layers(), seed=3)
    np.testing.assert_array_equal(with_dropout.params.data, without.params.data)
    for m in (with_dropout, without):
        m.compile("sgd", metrics=["acc"])
    np.testing.assert_array_equal(with_dropout.predict(x), without.predict(x))
    assert with_dropout.evaluate(x, y) == without.evaluate(x, y)
    # ... and on in training: the same weights train differently
    a = with_dropout.fit(x, y, epochs=1, shuffle=False, verbose=0).history["loss"]
    b = without.fit(x, y, epochs=1, shuffle=False, verbose=0).history["loss"]
    assert a != b
    # the masks come from the model's seeded generator: the same seed, the same run
    again = Sequential(_layers(dropout=0.5), seed=3)
    again.compile("sgd", metrics=["acc"])
    assert again.fit(x, y, epochs=1, shuffle=False, verbose=0).history["loss"] == a


# -- Keras parity ----------------------------------------------------------------------

def _keras_model(keras, model):
    k = keras.Sequential([keras.Input((2, 3)), keras.layers.Flatten(),
                          keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(12, activation="tanh"),
                          keras.layers.Dense(8, activation="sigmoid"),
                          keras.layers.Dense(3, activation="softmax")])
    k.set_weights([a for W, b in zip(model.weights, model.biases) for a in (W, b)])
    return k


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_per_layer_activations_match_a_keras_model_from_the_same_weights(optimizer):
    keras = keras_on_torch()
    x, y = _data()
    model = Sequential(_layers(), seed=5)
    k = _keras_model(keras, model)
    model.compile(fk.get(optimizer, learning_rate=0.05), metrics=["accuracy"])
    k.compile(optimizer=keras.optimizers.get({"class_name": optimizer,
                                              "config": {"learning_rate": 0.05}}),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ours = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0).history
    theirs = k.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0).history
    assert ours["loss"][0] == pytest.approx(theirs["loss"][0], rel=1e-5)
    assert ours["accuracy"][0] == pytest.approx(theirs["accuracy"][0])
    np.testing.assert_allclose(model.predict(x), k.predict(x, verbose=0), atol=2e-5)


def test_summary_prints_keras_table_and_returns_none(capsys):
    keras = keras_on_torch()
    model = Sequential(_layers(dropout=0.25), seed=0)
    assert model.summary() is None
    ours = capsys.readouterr().out
    k = keras.Sequential([keras.Input((2, 3)), keras.layers.Flatten(),
                          keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.25),
                          keras.layers.Dense(12, activation="tanh"),
                          keras.layers.Dense(8, activation="sigmoid"),
                          keras.layers.Dense(3, activation="softmax")])
    k.summary()
    theirs = capsys.readouterr().out

    def rows(text):  # the table's rows, Keras' global layer counters aside
        return [" ".join(line.split()[2:]) for line in text.splitlines() if "(" in line]

    assert rows(ours) == rows(theirs)
    assert " Total params: 447 (1.75 KB)" in ours and " Total params: 447 (1.75 KB)" in theirs


# -- building ------------------------------------------------------------------------

def test_add_builds_the_same_model_and_mlp_is_the_short_form():
    a = Sequential(_layers(dropout=0.1), seed=2)
    b = Sequential(seed=2)
    for layer in _layers(dropout=0.1):
        b.add(layer)
    np.testing.assert_array_equal(a.params.data, b.params.data)
    c = MLP([6, 16, 12, 8, 3], activation=["relu", "tanh", "sigmoid"], dropout=[0.1, 0, 0],
            seed=2)
    np.testing.assert_array_equal(a.params.data, c.params.data)
    assert a.layer_sizes == c.layer_sizes and a.dropout == c.dropout
    assert [l.name for l in a.layers] == ["flatten", "dense", "dropout", "dense_1", "dense_2",
                                          "dense_3"]
    d = Sequential([Dense(4, activation="relu", input_shape=(6,)), Dense(2, "softmax")])
    assert d.layer_sizes == [6, 4, 2]


@pytest.mark.parametrize("layers,exc,match", [
    (lambda: [Input((3,)), Dropout(0.5), Dense(2, "softmax")], ValueError, "not on the inputs"),
    (lambda: [Input((3,)), Dense(4), Dropout(0.5), Dropout(0.5), Dense(2, "softmax")],
     ValueError, "two Dropout layers"),
    (lambda: [Input((2, 3)), Dense(2, "softmax")], ValueError, "put a Flatten"),
    (lambda: [Input((3,)), Dense(1, "softmax")], ValueError, "softmax over one unit"),
    (lambda: [Input((3,)), Dense(4, "gelu")], ValueError, "activation must be one of"),
    (lambda: [Input((3,)), Dropout(1.0)], ValueError, "rate"),
    (lambda: [Input((3,)), Dense(0)], ValueError, "units"),
    (lambda: [Input((3,)), Input((3,))], ValueError, "only the first layer"),
    (lambda: ["dense"], TypeError, "fastopt.layers"),
])
def test_bad_layer_lists(layers, exc, match):
    with pytest.raises(exc, match=match):
        Sequential(layers())


def test_an_unbuilt_model_says_what_it_needs():
    model = Sequential([Dense(4), Dense(2, "softmax")])
    with pytest.raises(RuntimeError, match=r"Input\(shape\)"):
        model.compile("adam")
    model = Sequential([Input((3,)), Dense(4), Dropout(0.2)])
    with pytest.raises(RuntimeError, match="end in a Dense"):
        model.summary()
    model.add(Dense(2, "softmax"))
    model.compile("adam")
    with pytest.raises(RuntimeError, match="before compile"):
        model.add(Dense(2))


def test_save_load_and_checkpoints_keep_a_sequential_model(tmp_path):
    x, y = _data()
    model = Sequential(_layers(dropout=0.3), seed=1)
    model.compile("adam", metrics=["acc"])
    model.fit(x, y, epochs=2, verbose=0, checkpoint=tmp_path / "c.npz")
    model.save(tmp_path / "m.npz")
    loaded = MLP.load(tmp_path / "m.npz")
    assert type(loaded) is Sequential and loaded.dropout == model.dropout
    assert type(Sequential.load(tmp_path / "m.npz")) is Sequential
    MLP([6, 3], output="softmax").save(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="plain.npz: .*describes an MLP"):
        Sequential.load(tmp_path / "plain.npz")
    assert [l.get_config() for l in loaded.layers] == [l.get_config() for l in model.layers]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.evaluate(x, y) == model.evaluate(x, y)
    # resuming from the epoch-1 checkpoint ends as the uninterrupted run (dropout included)
    straight = Sequential(_layers(dropout=0.3), seed=1)
    straight.compile("adam", metrics=["acc"])
    straight.fit(x, y, epochs=2, verbose=0, checkpoint=tmp_path / "c1.npz",
                 callbacks=[_StopAfter(1)])
    ckpt = fastopt.checkpoint.load(tmp_path / "c1.npz")
    assert type(ckpt.model) is Sequential and ckpt.epoch == 1
    ckpt.model.fit(x, y, epochs=2, initial_epoch=1, verbose=0)
    np.testing.assert_array_equal(ckpt.model.params.data, model.params.data)


class _StopAfter(fastopt.callbacks.Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            self.model.stop_training = True
