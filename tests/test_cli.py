"""The `fastopt` command, run as a user runs it (in a subprocess)."""
import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

QUICK = ["--limit", "2000", "--epochs", "2", "--quiet"]


def run(*args, cwd=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "fastopt", *args], capture_output=True,
                          text=True, cwd=cwd or os.path.expanduser("~"), timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_train_writes_history_plot_and_model(tmp_path):
    pytest.importorskip("matplotlib")
    out = run("train", *QUICK, "--history", str(tmp_path / "h.csv"), "--plot",
              str(tmp_path / "c.png"), "--save", str(tmp_path / "m.npz"),
              "--history", str(tmp_path / "h.json"))
    assert "Training the 784-32-64-128-256-10 MLP (71,146 parameters" in out.stdout
    assert "Epoch 2/2" not in out.stdout  # --quiet
    assert "Test loss" in out.stdout and "test accuracy" in out.stdout
    rows = json.loads((tmp_path / "h.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(rows[0]) >= {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "m.npz").exists()


def test_train_csv_history_and_epoch_lines(tmp_path):
    out = run("train", "--limit", "1000", "--epochs", "2", "--history",
              str(tmp_path / "h.csv"), "--optimizer", "sgd", "--lr", "0.05", "--momentum",
              "0.9", "--nesterov", "--hidden", "16,16", "--schedule", "cosine")
    assert "Epoch 1/2" in out.stdout and "Epoch 2/2" in out.stdout
    assert "val_accuracy" in out.stdout
    with open(tmp_path / "h.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and float(rows[1]["loss"]) > 0


def test_flags_without_a_command_train():
    out = run("--limit", "500", "--epochs", "1")
    assert "no command given, so training the default model" in out.stdout
    assert "784-32-64-128-256-10" in out.stdout and "Test loss" in out.stdout


@pytest.mark.slow
def test_no_arguments_runs_the_main_job():
    """README's main job: `fastopt` alone trains the seed model for 10 epochs."""
    out = run()
    assert "no command given, so training the default model" in out.stdout
    assert "adam (lr 0.001), batch 32, 10 epochs" in out.stdout
    accuracy = float(out.stdout.split("test accuracy ")[1].split()[0])
    assert accuracy >= 0.965


def test_resume_equals_uninterrupted_run_bit_for_bit(tmp_path):
    common = ["--limit", "1500", "--quiet", "--optimizer", "rmsprop",
              "--schedule", "exponential:rate=0.5", "--seed", "3"]
    run("train", *common, "--epochs", "3", "--save", str(tmp_path / "full.npz"))
    run("train", *common, "--epochs", "1", "--checkpoint", str(tmp_path / "ck.npz"))
    out = run("train", "--resume", str(tmp_path / "ck.npz"), "--epochs", "3", "--save",
              str(tmp_path / "resumed.npz"))
    assert "Resuming" in out.stdout and "after epoch 1 of 3" in out.stdout
    full = np.load(tmp_path / "full.npz")["params"]
    resumed = np.load(tmp_path / "resumed.npz")["params"]
    np.testing.assert_array_equal(full, resumed)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small model saved by `fastopt train --save`, shared by this module's tests."""
    model = tmp_path_factory.mktemp("model") / "m.npz"
    run("train", *QUICK, "--save", str(model))
    return model


def test_evaluate_and_predict(tmp_path, model_file):
    model = model_file
    out = run("evaluate", str(model))
    assert "accuracy" in out.stdout and "most often mistaken for" in out.stdout
    from fastopt.datasets import load_mnist

    _, (xt, yt) = load_mnist()
    np.save(tmp_path / "digits.npy", xt[:2])
    out = run("predict", str(model), str(tmp_path / "digits.npy"), "--test-index", "0,1")
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("test[0]: ") and "label 7" in lines[2]
    assert lines[0].split(":")[1].split()[0] == lines[2].split(":")[1].split()[0]


def test_search_ranks_and_tests_the_best(tmp_path):
    out = run("search", "--param", "lr=1e-3,1e-2", "--param", "hidden=16,32-16", "--limit",
              "1000", "--output", str(tmp_path / "s.json"))
    assert "4 configurations" in out.stdout and "never the test set" in out.stdout
    assert "rank" in out.stdout and "Retraining the best configuration" in out.stdout
    result = json.loads((tmp_path / "s.json").read_text())
    accs = [t["val_accuracy"] for t in result["trials"]]
    assert accs == sorted(accs, reverse=True) and 0 <= result["test_accuracy"] <= 1
    out = run("search", "--method", "random", "--trials", "2", "--param", "lr=log:1e-4:1e-2",
              "--limit", "500", "--output", str(tmp_path / "s.csv"))
    assert "2 configurations" in out.stdout
    assert (tmp_path / "s.csv").read_text().startswith("lr,")


@pytest.mark.parametrize("args,message", [
    (["train", "--optimizer", "ftrl"], "invalid choice: 'ftrl'"),
    (["train", "--momentum", "0.9"], "--momentum does not apply to the adam optimizer"),
    (["train", "--data", "/nonexistent"], "/nonexistent: not a directory"),
    (["train", "--batch-size", "0"], "expected a positive integer"),
    (["train", "--schedule", "wave"], "unknown schedule 'wave'"),
    (["train", "--history", "h.txt"], "use a .json or .csv file name"),
    (["train", "--resume", "/nonexistent.npz"], "no such checkpoint file"),
    (["evaluate", "/nonexistent.npz"], "no such model file"),
    (["predict", "/nonexistent.npz", "--test-index", "0"], "no such model file"),
    (["search", "--param", "lr=abc"], "could not convert"),
    (["search", "--param", "depth=3"], "expected NAME=V1,V2"),
    (["search", "--param", "batch_size=32,0"], "batch_size must be an int >= 1, got 0"),
    (["search", "--param", "lr=1e-3,-1"], "lr must be a finite number > 0, got -1.0"),
    (["search", "--method", "random", "--param", "lr=log:1e-2:1e-3"],
     "HIGH must be a finite number > 0.01, got 0.001"),
    (["predict", "/nonexistent.npz", "d.npy", "--top", "0"], "expected a positive integer"),
    (["predict", "--bogus", "m.npz"], "unrecognized arguments: --bogus"),
    (["bench", "--source", "/nonexistent"], "no bench/ here: looked for /nonexistent/bench"),
    (["bogus"], "invalid choice: 'bogus'"),
])
def test_bad_input_is_one_line_and_nonzero(args, message):
    proc = run(*args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_corrupt_data_directory(tmp_path):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    proc = run("train", "--data", str(tmp_path), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "truncated" in proc.stderr or "expected 3 dimensions" in proc.stderr


def test_foreign_model_file(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    proc = run("evaluate", str(bad), check=False)
    assert proc.returncode == 1 and "neither a model saved by fastopt" in proc.stderr


def test_info_reports_the_build_and_times_adam():
    out = run("info", "--size", "5000", "--repeats", "3")
    assert "simd_used" in out.stdout and "speed-up over NumPy" in out.stdout


def test_bench_outside_a_checkout_says_so(tmp_path):
    proc = run("bench", "--source", str(tmp_path), check=False)
    assert proc.returncode == 1 and "no bench/ here" in proc.stderr


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["search"],
                                     ["bench"], ["info"]])
def test_help_everywhere_with_examples(command):
    out = run(*command, "--help")
    assert "usage: fastopt" in out.stdout
    if command != ["info"]:
        assert "example" in out.stdout


# -- options anywhere (issue #16) ----------------------------------------------------------

def _parsed(argv):
    from fastopt.cli._app import parse

    return vars(parse(argv))


@pytest.mark.parametrize("orders", [
    [["predict", "m.npz", "--top", "5", "d0.png", "d1.npy"],
     ["predict", "--top", "5", "m.npz", "d0.png", "d1.npy"],
     ["predict", "m.npz", "d0.png", "--top", "5", "d1.npy"],
     ["predict", "m.npz", "d0.png", "d1.npy", "--top", "5"]],
    [["predict", "m.npz", "--test-index", "0,1", "--invert", "d0.png"],
     ["predict", "--invert", "m.npz", "d0.png", "--test-index", "0,1"],
     ["predict", "--test-index", "0,1", "--invert", "m.npz", "d0.png"]],
    [["evaluate", "m.npz", "--data", "mnist"], ["evaluate", "--data", "mnist", "m.npz"]],
    [["train", "--epochs", "2", "--quiet", "--hidden", "16"],
     ["train", "--hidden", "16", "--epochs", "2", "--quiet"],
     ["train", "--quiet", "--hidden", "16", "--epochs", "2"]],
    [["search", "--param", "lr=1e-3", "--epochs", "2", "--method", "random"],
     ["search", "--method", "random", "--param", "lr=1e-3", "--epochs", "2"]],
    [["bench", "--quick", "-k", "adam", "--json", "b.json"],
     ["bench", "--json", "b.json", "-k", "adam", "--quick"]],
    [["info", "--size", "10", "--repeats", "2"], ["info", "--repeats", "2", "--size", "10"]],
], ids=["predict-top", "predict-mixed", "evaluate", "train", "search", "bench", "info"])
def test_options_anywhere(orders):
    first = _parsed(orders[0])
    assert first["command"] == orders[0][0]
    for argv in orders[1:]:
        assert _parsed(argv) == first, argv


def test_predict_with_options_between_files(tmp_path, model_file):
    """The command of issue #16, which argparse alone refused."""
    from fastopt.datasets import load_mnist

    _, (xt, _) = load_mnist()
    np.save(tmp_path / "d0.npy", xt[0])
    np.save(tmp_path / "d1.npy", xt[1])
    out = run("predict", str(model_file), "--top", "5", str(tmp_path / "d0.npy"),
              str(tmp_path / "d1.npy"))
    lines = out.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [str(tmp_path / "d0.npy"),
                                                       str(tmp_path / "d1.npy")]
    assert all(line.count("%") == 5 for line in lines)


# -- errors: user errors are one line, bugs show their traceback ----------------------------

def test_a_bug_is_not_reported_as_a_user_error(monkeypatch):
    from fastopt.cli import info, main

    def broken(n, repeats):
        raise TypeError("a bug")

    monkeypatch.setattr(info, "_time_adam", broken)
    with pytest.raises(TypeError, match="a bug"):
        main(["info", "--size", "10", "--repeats", "1"])


def test_closed_stdout_is_quiet(model_file):
    """`fastopt evaluate m.npz | head -1`: the reader goes away, fastopt stops
    quietly with 128 + SIGPIPE, as Unix tools do."""
    proc = subprocess.Popen([sys.executable, "-m", "fastopt", "evaluate", str(model_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.expanduser("~"))
    proc.stdout.close()  # before fastopt writes anything
    stderr = proc.stderr.read()
    assert proc.wait(timeout=600) == 128 + signal.SIGPIPE
    assert stderr == ""


# -- Ctrl-C during train (issue #16) ---------------------------------------------------------

def _interrupt_training(tmp_path, *args, ready):
    """Start a long `fastopt train`, wait until ``ready()``, press Ctrl-C."""
    proc = subprocess.Popen([sys.executable, "-m", "fastopt", "train", "--limit", "1000",
                             "--epochs", "1000", "--hidden", "16", "--quiet", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            # as from a terminal: a runner started in the background
                            # (`cmd &`) passes Ctrl-C on as ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().startswith("Training the")
        deadline = time.monotonic() + 300
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # into fit, whatever the machine's speed
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    return proc.returncode, stderr


def test_interrupted_run_with_a_checkpoint_says_how_to_resume(tmp_path):
    ck = tmp_path / "run.npz"
    status, stderr = _interrupt_training(tmp_path, "--checkpoint", "run.npz", ready=ck.exists)
    assert status == 130
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert "run.npz holds epoch" in stderr and "fastopt train --resume run.npz" in stderr
    from fastopt.checkpoint import load

    assert load(ck).epoch >= 1


def test_interrupted_run_without_a_checkpoint_says_nothing_was_saved(tmp_path):
    status, stderr = _interrupt_training(tmp_path, ready=lambda: True)
    assert status == 130
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert "nothing was saved" in stderr and "--checkpoint FILE" in stderr


def test_interrupted_message_names_the_file_to_resume_from():
    from fastopt.cli.train import interrupted_message

    assert "fastopt train --resume 'my run.npz'" in interrupted_message("my run.npz", 3, None)
    assert "fastopt train --resume a.npz" in interrupted_message("b.npz", None, "a.npz")
    assert "nothing was saved" in interrupted_message("b.npz", None, None)


# -- bench from a checkout, and from elsewhere (issue #16) -----------------------------------

ROOT = pathlib.Path(__file__).resolve().parents[1]
needs_checkout = pytest.mark.skipif(not (ROOT / "bench" / "report.py").exists(),
                                    reason="needs the source checkout's bench/")


def _console_script():
    script = pathlib.Path(sys.executable).with_name("fastopt")
    if not script.exists():
        pytest.skip("the fastopt console script is not installed beside this Python")
    return str(script)


@needs_checkout
@pytest.mark.parametrize("where", ["checkout", "elsewhere"])
def test_bench_imports_the_installed_package(where):
    """From the checkout root, whose unbuilt fastopt/ once shadowed the installed
    package ("cannot import name '_kernels'"), and from another directory."""
    pytest.importorskip("pytest_benchmark")
    args = ["--source", str(ROOT)] if where == "elsewhere" else []
    proc = subprocess.run([_console_script(), "bench", "--list", "--quick", "-k", "adam",
                           *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT if where == "checkout" else os.path.expanduser("~"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bench/test_optimizers.py::" in proc.stdout
    assert "cannot import" not in proc.stdout + proc.stderr


def test_bench_without_a_checkout_names_where_it_looked(tmp_path):
    import fastopt

    beside = pathlib.Path(fastopt.__file__).resolve().parents[1] / "bench"
    if (beside / "report.py").exists():
        pytest.skip("fastopt is installed from a source checkout")
    proc = run("bench", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert f"no bench/ here: looked for {tmp_path / 'bench'} and {beside}" in proc.stderr


def test_train_offers_every_keras_optimizer():
    """--optimizer takes exactly the names the Keras family registers."""
    import fastopt
    from fastopt.cli import _shared

    assert sorted(_shared.OPTIMIZERS) == sorted(fastopt.optim.keras.names())


def test_search_bayes_over_any_argument(tmp_path):
    pytest.importorskip("optuna")
    args = ("search", "--method", "bayes", "--trials", "3", "--param", "lr=log:1e-3:1e-1",
            "--param", "optimizer=sgd", "--param", "momentum=uniform:0:0.9",
            "--param", "batch_size=int:32:128", "--param", "hidden=16,32-16",
            "--limit", "500", "--seed", "1", "--output", str(tmp_path / "b.json"))
    out = run(*args)
    assert "Bayes search: 3 configurations" in out.stdout and "never the test set" in out.stdout
    result = json.loads((tmp_path / "b.json").read_text())
    assert len(result["trials"]) == 3 and set(result["best"]) == {
        "lr", "optimizer", "momentum", "batch_size", "hidden"}
    for t in result["trials"]:
        assert 1e-3 <= t["lr"] <= 1e-1 and 0 <= t["momentum"] <= 0.9
        assert 32 <= t["batch_size"] <= 128 and t["hidden"] in ([16], [32, 16])
    again = run(*args[:-1], str(tmp_path / "c.json"))  # seeded: the same trials
    trials = lambda p: [{k: v for k, v in t.items() if k != "seconds"}  # noqa: E731
                        for t in json.loads(p.read_text())["trials"]]
    assert trials(tmp_path / "b.json") == trials(tmp_path / "c.json")
    assert again.returncode == 0


@pytest.mark.parametrize("args,message", [
    (["search", "--param", "momentum=0.5"], "'momentum' is not an MLP, compile or fit"),
    (["search", "--method", "grid", "--param", "lr=log:1e-4:1e-2"],
     "grid search needs listed values"),
    (["search", "--param", "momentum=uniform:a:b"], "use NAME=uniform:LOW:HIGH"),
])
def test_search_bad_params(args, message):
    proc = run(*args, check=False)
    assert proc.returncode != 0 and message in proc.stderr
