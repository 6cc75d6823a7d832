"""fastopt.viz and the `compare` and `paths` commands: the paths are the
kernels' numbers (checked step by step against the float64 reference of each
rule), the stories the pictures tell hold on those numbers, and `compare`
trains every run from the same weights and reports what `fit` returned."""
import hashlib
import subprocess
import sys

import numpy as np
import pytest

import fastopt
import fastopt.viz as viz
from fastopt.cli import main
from fastopt.viz import _specs
from fastopt.viz.functions import FUNCTIONS
import reference as ref

F32_EPS = float(np.finfo(np.float32).eps)


# -- paths: the kernels' numbers ------------------------------------------------------

def _reference_step(family, settings, p, g, state, step):
    """One float64 reference step; returns the new p (``state`` updated)."""
    s = dict(settings)
    conv = s.pop("convention")
    lr = s.pop("lr")
    if family == "sgd":
        p, state["buf"] = ref.sgd(p, g, state.get("buf", np.zeros(2)), lr=lr, step=step,
                                  convention=conv, **s)
    elif family == "adagrad":
        p, state["s"] = ref.adagrad(p, g, state.get("s", np.zeros(2)), step=step, lr=lr,
                                    convention=conv, **s)
    elif family == "rmsprop":
        p, state["v"], state["buf"], _ = ref.rmsprop(p, g, state.get("v", np.zeros(2)),
                                                     state.get("buf", np.zeros(2)), lr=lr,
                                                     convention=conv, **s)
    else:
        if family == "adamw":
            s = {"weight_decay": 1e-2, **s, "decoupled_weight_decay": True}
        p, state["m"], state["v"], _ = ref.adam(p, g, state.get("m", np.zeros(2)),
                                                state.get("v", np.zeros(2)), step=step,
                                                lr=lr, convention=conv, **s)
    return p


def _check_against_reference(fn, name, run):
    """Each kernel step equals the reference step from the same float32 point
    with the same float32-stored gradient, within float32 rounding: of the
    point, and of the state, which carries the largest step so far."""
    family = _specs.OPTIMIZERS[name.partition(":")[0]][0]
    path, state, largest = run["path"], {}, np.zeros(2)
    for k in range(len(path) - 1):
        p = path[k]
        g = np.asarray(fn.gradient(*p), np.float64).astype(np.float32).astype(np.float64)
        expected = _reference_step(family, run["settings"], p, g, state, k + 1)
        largest = np.maximum(largest, np.abs(expected - p))
        tolerance = F32_EPS * (4 * np.abs(p) + 16 * largest)
        assert np.all(np.abs(path[k + 1] - expected) <= tolerance), (name, k, path[k + 1],
                                                                       expected)


@pytest.mark.parametrize("convention", ["torch", "keras"])
@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_paths_equal_the_float64_reference(function, convention):
    optimizers = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
    result = viz.paths(function, optimizers, steps=200, convention=convention, draw=False)
    assert result["optimizers"] == optimizers
    for name in optimizers:
        run = result[name]
        assert run["path"].shape == (201, 2) and not run["diverged"]
        np.testing.assert_array_equal(run["path"][0],
                                      np.float32(FUNCTIONS[function].start))
        np.testing.assert_array_equal(run["loss"], FUNCTIONS[function].value(
            run["path"][:, 0], run["path"][:, 1]))
        _check_against_reference(FUNCTIONS[function], name, run)


def test_tuned_specs_reach_the_kernel():
    result = viz.paths("bowl", ["adam:lr=0.02,beta2=0.99", "rmsprop:rho=0.9,momentum=0.5"],
                       steps=50, draw=False)
    assert result["adam:lr=0.02,beta2=0.99"]["settings"]["beta2"] == 0.99
    assert result["rmsprop:rho=0.9,momentum=0.5"]["settings"]["alpha"] == 0.9
    for name in result["optimizers"]:
        _check_against_reference(FUNCTIONS["bowl"], name, result[name])


# -- the stories, as numbers ------------------------------------------------------------

def test_momentum_passes_the_dip_where_sgd_stops():
    result = viz.paths("bumpy", ["sgd", "momentum"], draw=False)
    sgd, momentum = result["sgd"]["path"], result["momentum"]["path"]
    # SGD settles in the first dip (at x = -3) and stays there
    assert abs(sgd[-1, 0] + 3) < 0.2 and np.abs(sgd[-20:] - sgd[-1]).max() < 1e-3
    # momentum rolls through both dips to the bowl's minimum at the origin
    assert np.abs(momentum[-1]).max() < 0.05
    assert result["momentum"]["loss"][-1] < result["sgd"]["loss"][-1] - 0.1


def test_adagrads_effective_step_shrinks():
    result = viz.paths("rosenbrock", ["adagrad", "rmsprop"], draw=False)
    eff = result["adagrad"]["effective_lr"]
    assert eff.shape == (1000, 2)
    assert np.all(np.diff(eff, axis=0) <= 0)  # never grows: the sum of g^2 only grows
    assert np.all(eff[-1] < eff[0]) and np.all(eff[-1] < eff[100])
    # RMSprop forgets old gradients: its step grows again when they shrink
    assert np.any(np.diff(result["rmsprop"]["effective_lr"], axis=0) > 0)


def test_adam_reaches_rosenbrocks_valley_floor():
    fn = FUNCTIONS["rosenbrock"]
    result = viz.paths("rosenbrock", ["sgd", "adam"], draw=False)
    x, y = result["adam"]["path"].T
    across = 100 * (y - x * x) ** 2  # the valley's wall term
    assert across[0] > 5 and np.all(across[300:] < 1e-2)
    assert np.abs(result["adam"]["path"][-1] - fn.minimum).max() < 0.05
    assert result["adam"]["loss"][-1] < result["sgd"]["loss"][-1] / 100


# -- compare ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    """A small optimizer comparison on 600 bundled MNIST images."""
    return viz.compare(["sgd", "momentum", "adam:lr=3e-3"], epochs=2, hidden=(16,),
                       limit=600, batch_size=32, seed=3, draw=False)


def test_compare_starts_every_run_from_the_same_weights(small):
    initial = fastopt.MLP([784, 16, 10], seed=3).params.data
    digest = hashlib.sha256(initial.tobytes()).hexdigest()
    assert [small[r]["initial_digest"] for r in small["runs"]] == [digest] * 3
    batches = viz.compare(batch_sizes=[600, 1, 64], epochs=1, hidden=(16,), limit=600,
                          seed=3, draw=False)
    assert {batches[r]["initial_digest"] for r in batches["runs"]} == {digest}
    # batch GD makes 1 update an epoch, per-sample SGD one per sample
    assert [batches[r]["updates"][-1] for r in batches["runs"]] == [1, 540, 9]


def test_compare_table_is_what_fit_returns(small):
    (x, y), (xt, yt) = fastopt.cli._shared.load_data(None, 600)
    model = fastopt.MLP([784, 16, 10], seed=3)
    model.compile(fastopt.optim.keras.Adam(learning_rate=3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x[:540], y[:540], batch_size=32, epochs=2,
                        validation_data=(x[540:], y[540:]), verbose=0)
    row = small["table"][2]
    assert row["run"] == "adam:lr=3e-3"
    assert {k: row[k] for k in ("loss", "accuracy", "val_loss", "val_accuracy")} == \
        {k: v[-1] for k, v in history.history.items()}
    assert [row["test_loss"], row["test_accuracy"]] == model.evaluate(xt, yt)
    assert row["updates"] == 2 * 17
    assert small["adam:lr=3e-3"]["history"]["loss"].tolist() == history.history["loss"]


def test_batch_losses_add_up_to_the_epoch_loss(small):
    run = small["sgd"]
    sizes = np.array([32] * 16 + [540 - 16 * 32])
    for epoch, loss in enumerate(run["history"]["loss"]):
        batch = run["batch_loss"][epoch * 17:(epoch + 1) * 17]
        assert np.average(batch, weights=sizes) == pytest.approx(loss, rel=1e-9)
    assert run["batch_epoch"][16] == 1.0 and run["batch_epoch"][-1] == 2.0


def test_compare_varies_the_learning_rate():
    result = viz.compare(lrs=[0.1, 0.001], optimizer="momentum", epochs=1, hidden=(8,),
                         limit=200, draw=False)
    assert result["runs"] == ["lr 0.1", "lr 0.001"] and result["varied"] == "lr"
    assert result["lr 0.1"]["optimizer"] == "momentum:lr=0.1"


# -- arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize("call, error", [
    (lambda: viz.paths("nope"), ValueError),
    (lambda: viz.paths(3), TypeError),
    (lambda: viz.paths("bowl", steps=0), ValueError),
    (lambda: viz.paths("bowl", steps=2.5), TypeError),
    (lambda: viz.paths("bowl", ["adam:lr=abc"]), ValueError),
    (lambda: viz.paths("bowl", ["adam:lr"]), ValueError),
    (lambda: viz.paths("bowl", ["newton"]), ValueError),
    (lambda: viz.paths("bowl", ["sgd:amsgrad=true"]), ValueError),
    (lambda: viz.paths("bowl", [], draw=False), ValueError),
    (lambda: viz.paths("bowl", start=(1, np.nan)), ValueError),
    (lambda: viz.paths("bowl", convention="jax"), ValueError),
    (lambda: viz.paths("bowl", draw="yes"), TypeError),
    (lambda: viz.compare(["sgd"], lrs=[0.1]), ValueError),
    (lambda: viz.compare(batch_sizes=[0]), ValueError),
    (lambda: viz.compare(["sgd:rho=0.5"], limit=100, epochs=1), ValueError),
    (lambda: viz.compare(epochs=0), ValueError),
])
def test_bad_arguments_are_rejected(call, error):
    with pytest.raises(error):
        call()


def test_a_spec_list_splits_before_names():
    assert _specs.split("sgd,adam:lr=3e-3,beta2=0.99,rmsprop") == \
        ["sgd", "adam:lr=3e-3,beta2=0.99", "rmsprop"]


# -- matplotlib stays optional ------------------------------------------------------------

def test_viz_computes_without_matplotlib(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import fastopt, fastopt.viz as viz\n"
        "r = viz.paths('bowl', ['sgd'], steps=5)\n"
        "assert r['figure'] is None and r['sgd']['path'].shape == (6, 2)\n"
        "try:\n"
        "    viz.paths('bowl', ['sgd'], steps=5, draw=True)\n"
        "except ImportError as e:\n"
        "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout
    assert "pip install 'fastopt[plot]'" in out


def test_importing_fastopt_viz_imports_no_matplotlib(tmp_path):
    code = ("import sys, fastopt, fastopt.viz, fastopt.cli\n"
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout
    assert out.strip() == "False"


# -- figures and the commands ---------------------------------------------------------

def test_figures_have_a_legend_entry_per_optimizer(small):
    pytest.importorskip("matplotlib")
    fig = viz.paths("saddle", ["sgd", "adam"], steps=20)["figure"]
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[:2] == ["sgd", "adam"]
    from fastopt.viz._plot import draw_compare

    fig = draw_compare(small)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == small["runs"]
    assert [ax.get_xlabel() for ax in fig.axes[:3]] == ["epoch", "updates (optimizer steps)",
                                                          "seconds"]


def test_paths_command(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png, gif = tmp_path / "p.png", tmp_path / "p.gif"
    assert main(["paths", "--function", "bumpy", "--optimizers", "sgd,momentum:lr=0.05",
                 "--steps", "30", "--plot", str(png), "--gif", str(gif)]) == 0
    out = capsys.readouterr().out
    assert "momentum:lr=0.05" in out and "Paths drawn to" in out
    assert png.read_bytes()[:4] == b"\x89PNG" and gif.read_bytes()[:3] == b"GIF"


def test_compare_command(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png, table = tmp_path / "c.png", tmp_path / "t.csv"
    assert main(["compare", "--optimizers", "sgd,adam", "--opt", "adam:lr=3e-3",
                 "--epochs", "1", "--hidden", "8", "--limit", "300", "--plot", str(png),
                 "--output", str(table)]) == 0
    out = capsys.readouterr().out
    assert "adam:lr=3e-3" in out and "test_acc" in out
    assert table.read_text().splitlines()[0].startswith("run,loss,accuracy,val_loss")
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv, message", [
    (["paths", "--optimizers", "newton"], "optimizer must be one of"),
    (["compare", "--optimizers", "sgd:rho=2", "--limit", "100", "--epochs", "1"], "sgd"),
    (["compare", "--batch-sizes", "0", "--limit", "100"], "batch_sizes"),
])
def test_commands_report_user_errors(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastopt: error:") and message in err
