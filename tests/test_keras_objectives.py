"""Issue #19: metrics by Keras' names and as objects, loss objects, and
wrong pairings as errors.  Values are checked against Keras 3 on its torch
backend (metrics over a model with the same weights; loss objects on the
same arrays)."""
import numpy as np
import pytest

import fastopt
from fastopt import MLP, losses, metrics
from frameworks import keras_on_torch


def _data(n=64, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    return x, np.minimum(y, classes - 1)


def _keras_copy(keras, model, activation, output):
    sizes = model.layer_sizes
    acts = activation if isinstance(activation, list) else [activation] * (len(sizes) - 2)
    layers = [keras.Input((sizes[0],))]
    layers += [keras.layers.Dense(u, activation=a) for u, a in zip(sizes[1:-1], acts)]
    layers.append(keras.layers.Dense(sizes[-1], activation=output))
    k = keras.Sequential(layers)
    k.set_weights([a for W, b in zip(model.weights, model.biases) for a in (W, b)])
    return k


# loss (as compiled by both), output activation, targets: labels, one-hot or 0/1 floats
METRIC_CASES = [
    ("sparse_categorical_crossentropy", "softmax", "labels",
     ["accuracy", "acc", "sparse_categorical_accuracy"]),
    ("categorical_crossentropy", "softmax", "one_hot",
     ["accuracy", "categorical_accuracy", "binary_accuracy", "mse", "mae"]),
    ("binary_crossentropy", "sigmoid", "binary", ["accuracy", "binary_accuracy", "mse", "mae"]),
    ("mse", "linear", "one_hot", ["mse", "mae", "categorical_accuracy"]),
]


def _targets(kind, y, classes=3):
    if kind == "labels":
        return y
    if kind == "one_hot":
        return np.eye(classes, dtype=np.float32)[y]
    return (np.eye(classes)[y] + (y[:, None] == 0)).clip(0, 1).astype(np.float32)


@pytest.mark.parametrize("loss,output,kind,names", METRIC_CASES)
def test_metric_values_match_keras(loss, output, kind, names):
    keras = keras_on_torch()
    x, y = _data()
    t = _targets(kind, y)
    model = MLP([6, 8, 3], activation="tanh", output=output, seed=1)
    model.compile("sgd", loss=loss, metrics=names)
    ours = model.evaluate(x, t)
    k = _keras_copy(keras, model, "tanh", output)
    k.compile(optimizer="sgd", loss=loss, metrics=names)
    theirs = k.evaluate(x, t, verbose=0, return_dict=True, batch_size=len(x))
    assert ours[0] == pytest.approx(theirs["loss"], rel=1e-5)
    for name, value in zip(names, ours[1:]):
        assert value == pytest.approx(theirs[name], rel=1e-5, abs=1e-7), name


def test_history_keys_are_the_names_given_and_objects_use_keras_names():
    x, y = _data()
    model = MLP([6, 8, 3], seed=0)
    model.compile("adam", loss="categorical_crossentropy",
                  metrics=["acc", "mse", metrics.MeanAbsoluteError(),
                           metrics.CategoricalAccuracy(), metrics.BinaryAccuracy(),
                           metrics.MeanSquaredError()])
    hist = model.fit(x, np.eye(3, dtype=np.float32)[y], epochs=2, verbose=0,
                     validation_split=0.25)
    assert list(hist.history) == [
        "loss", "acc", "mse", "mean_absolute_error", "categorical_accuracy",
        "binary_accuracy", "mean_squared_error", "val_loss", "val_acc", "val_mse",
        "val_mean_absolute_error", "val_categorical_accuracy", "val_binary_accuracy",
        "val_mean_squared_error"]
    assert hist.history["mse"] == hist.history["mean_squared_error"]
    assert hist.history["acc"] == hist.history["categorical_accuracy"]
    assert len(model.evaluate(x, np.eye(3)[y])) == 7


def test_training_metrics_are_the_means_over_the_batches_as_trained():
    # with a zero learning rate every batch sees the same weights: the
    # epoch's metrics equal evaluate's (up to summation order)
    x, y = _data(n=50)
    model = MLP([6, 8, 3], seed=0)
    model.compile(fastopt.optim.keras.SGD(learning_rate=0.0), loss="categorical_crossentropy",
                  metrics=["mse", "mae", "acc"])
    t = np.eye(3, dtype=np.float32)[y]
    hist = model.fit(x, t, batch_size=7, epochs=1, verbose=0)
    want = model.evaluate(x, t)
    got = [hist.history[k][0] for k in ("loss", "mse", "mae", "acc")]
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("make,kind,output", [
    (lambda m: m.MeanSquaredError(), "regression", None),
    (lambda m: m.BinaryCrossentropy(), "binary", "probabilities"),
    (lambda m: m.BinaryCrossentropy(from_logits=True), "binary", "logits"),
    (lambda m: m.BinaryCrossentropy(label_smoothing=0.2), "binary", "probabilities"),
    (lambda m: m.BinaryCrossentropy(from_logits=True, label_smoothing=0.1), "binary", "logits"),
    (lambda m: m.CategoricalCrossentropy(), "one_hot", "softmax"),
    (lambda m: m.CategoricalCrossentropy(from_logits=True), "one_hot", "logits"),
    (lambda m: m.CategoricalCrossentropy(label_smoothing=0.1), "one_hot", "softmax"),
    (lambda m: m.CategoricalCrossentropy(from_logits=True, label_smoothing=0.3), "one_hot",
     "logits"),
    (lambda m: m.SparseCategoricalCrossentropy(), "labels", "softmax"),
    (lambda m: m.SparseCategoricalCrossentropy(from_logits=True), "labels", "logits"),
])
def test_loss_objects_match_keras_on_arrays(make, kind, output):
    keras = keras_on_torch()
    rng = np.random.default_rng(5)
    z = rng.standard_normal((40, 4)).astype(np.float32) * 3
    labels = rng.integers(0, 4, 40)
    if kind == "regression":
        y, pred = rng.standard_normal((40, 4)).astype(np.float32), z
    elif kind == "binary":
        y = (rng.random((40, 4)) > 0.5).astype(np.float32)
        pred = z if output == "logits" else 1 / (1 + np.exp(-z))
    else:
        y = labels if kind == "labels" else np.eye(4, dtype=np.float32)[labels]
        e = np.exp(z - z.max(1, keepdims=True))
        pred = z if output == "logits" else e / e.sum(1, keepdims=True)
    pred = pred.astype(np.float32)
    ours = make(losses)(y, pred)
    theirs = float(make(keras.losses)(y, pred))
    assert isinstance(ours, float)
    assert ours == pytest.approx(theirs, rel=2e-6)


@pytest.mark.parametrize("loss,output,targets", [
    (losses.BinaryCrossentropy(from_logits=True), "linear", "binary"),
    (losses.BinaryCrossentropy(label_smoothing=0.2), "sigmoid", "binary"),
    (losses.CategoricalCrossentropy(label_smoothing=0.1), "softmax", "one_hot"),
    (losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2), "linear",
     "one_hot"),
    (losses.SparseCategoricalCrossentropy(from_logits=True), "linear", "labels"),
    (losses.MeanSquaredError(), "sigmoid", "one_hot"),
])
def test_loss_objects_train_in_the_fused_pass_as_keras(loss, output, targets):
    """label_smoothing and from_logits reach the compiled pass: the loss
    after one epoch of SGD equals Keras' from the same weights."""
    keras = keras_on_torch()
    x, y = _data(n=96)
    t = _targets(targets, y)
    model = MLP([6, 16, 3], activation="relu", output=output, seed=2)
    k = _keras_copy(keras, model, "relu", output)
    model.compile(fastopt.optim.keras.SGD(learning_rate=0.1), loss=loss)
    options = {key: v for key, v in loss.get_config().items() if key != "name" and v}
    k.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
              loss=getattr(keras.losses, type(loss).__name__)(**options))
    ours = model.fit(x, t, batch_size=16, epochs=1, shuffle=False, verbose=0)
    theirs = k.fit(x, t, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert ours.history["loss"][0] == pytest.approx(theirs.history["loss"][0], rel=1e-5)
    assert model.evaluate(x, t) == pytest.approx(k.evaluate(x, t, verbose=0), rel=1e-5)


def test_a_configured_loss_survives_save_and_load(tmp_path):
    x, y = _data()
    t = np.eye(3, dtype=np.float32)[y]
    model = MLP([6, 8, 3], output="linear", seed=0)
    model.compile("adam", loss=losses.CategoricalCrossentropy(from_logits=True,
                                                               label_smoothing=0.1),
                  metrics=["categorical_accuracy"])
    model.fit(x, t, epochs=1, verbose=0, checkpoint=tmp_path / "c.npz")
    model.save(tmp_path / "m.npz")
    loaded = MLP.load(tmp_path / "m.npz")
    assert loaded.objective.loss == model.objective.loss
    assert loaded.evaluate(x, t) == model.evaluate(x, t)
    resumed = fastopt.checkpoint.load(tmp_path / "c.npz").model
    assert resumed.objective.loss == model.objective.loss


# -- a wrong pairing is an error, never silent -------------------------------------

@pytest.mark.parametrize("build,match", [
    (lambda: MLP([4, 8, 1]), "softmax over one unit"),
    (lambda: MLP([4, 8, 1], activation=["relu"], output="softmax"), "softmax over one unit"),
    (lambda: MLP([4, 1, 3], activation="softmax"), "softmax over one unit"),
    (lambda: MLP([4, 8, 1], output="sigmoid").compile("adam", loss="sparse_categorical_"
                                                      "crossentropy"), "two output units"),
    (lambda: MLP([4, 8, 3], output="linear").compile("adam", loss="binary_crossentropy"),
     "needs output='sigmoid', or output='linear' with from_logits=True"),
    (lambda: MLP([4, 8, 3], output="softmax").compile(
        "adam", loss=losses.CategoricalCrossentropy(from_logits=True)),
     "needs output='linear'"),
    (lambda: MLP([4, 8, 3], output="sigmoid").compile("adam", loss="categorical_crossentropy"),
     "needs output='softmax'"),
    (lambda: MLP([4, 8, 3]).compile("adam", metrics=["sparse_categorical_accuracy"],
                                    loss="categorical_crossentropy"),
     "needs integer class labels"),
    (lambda: MLP([4, 8, 3]).compile("adam", metrics=["mse"]), "with integer labels"),
    (lambda: MLP([4, 8, 3]).compile("adam", metrics=["auc"]), "unknown metric 'auc'"),
    (lambda: losses.SparseCategoricalCrossentropy(from_logits=1), "from_logits"),
    (lambda: losses.CategoricalCrossentropy(label_smoothing=1.5), "label_smoothing"),
    (lambda: MLP([4, 8, 3]).compile("adam", loss=losses.MeanSquaredError(),
                                    metrics=[metrics.SparseCategoricalAccuracy()]),
     "needs integer class labels"),
])
def test_wrong_pairings_are_errors(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


@pytest.mark.parametrize("loss,output,y,match", [
    ("sparse_categorical_crossentropy", "softmax", lambda y: y + 0.5, "integer class labels"),
    ("sparse_categorical_crossentropy", "softmax", lambda y: np.eye(3)[y],
     "one-hot targets need loss='categorical_crossentropy'"),
    ("categorical_crossentropy", "softmax", lambda y: np.eye(4)[y], r"shape \(64, 3\)"),
    ("categorical_crossentropy", "softmax", lambda y: 2 * np.eye(3)[y], r"in \[0, 1\]"),
    ("binary_crossentropy", "sigmoid", lambda y: np.eye(3)[y] - 0.5, r"in \[0, 1\]"),
    ("sparse_categorical_crossentropy", "softmax", lambda y: y + 1, r"not a class label"),
])
def test_labels_that_do_not_fit_the_loss_are_errors(loss, output, y, match):
    x, labels = _data()
    model = MLP([6, 8, 3], output=output, seed=0)
    model.compile("sgd", loss=loss)
    before = model.params.data.copy()
    with pytest.raises(ValueError, match=match):
        model.fit(x, y(labels), verbose=0)
    np.testing.assert_array_equal(model.params.data, before)  # nothing written
