"""NumPy data end to end: .npz files NumPy itself wrote, read by `dropkit train --data` and by
dropkit.train, and dropkit.Model on arrays in memory: the same bits as the CLI on the same
data."""

import json
import os
import pty
import subprocess
import sys

import numpy as np
import pytest

import dropkit
from test_train import metrics
from conftest import synthetic

OPTIONS = dict(net="dense:32:relu,dropout:0.3,dense:4", lr=0.2, val=20, batch=25, momentum=0.9,
               seed=11)
FLAGS = ["--net", OPTIONS["net"], "--lr", "0.2", "--val", "20", "--batch", "25", "--momentum",
         "0.9", "--seed", "11"]


def arrays(floats):
    """synthetic() data as uint8 images (N, 8, 8) or float features (N, 64) in [0, 1)."""
    (x, y), (xt, yt) = synthetic(200, 8, 4, 1), synthetic(60, 8, 4, 2)
    if floats:
        x = (x.reshape(len(x), -1) / 256.0).astype(np.float32)
        xt = (xt.reshape(len(xt), -1) / 256.0).astype(np.float32)
    return x, y.astype(np.int64), xt, yt.astype(np.int64)


@pytest.mark.parametrize("floats", [False, True])
@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_cli_python_and_model_train_the_same_bits_from_npz(cli, tmp_path, floats, save):
    x, y, xt, yt = arrays(floats)
    npz = tmp_path / "data.npz"
    save(npz, x_train=x, y_train=y, x_test=xt, y_test=yt)
    r = subprocess.run([cli, "train", "--data", str(npz), *FLAGS, "--epochs", "2", "--out",
                        str(tmp_path / "cli")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    dropkit.train(tmp_path / "py", data=npz, epochs=2, threads=1, **OPTIONS)
    model = dropkit.Model(OPTIONS["net"], **{k: v for k, v in OPTIONS.items() if k != "net"})
    history = model.fit(x, y, xt, yt, out=tmp_path / "model", epochs=2, threads=3)
    ref = (tmp_path / "cli" / "checkpoint.safetensors").read_bytes()
    for run in ("py", "model"):
        assert (tmp_path / run / "checkpoint.safetensors").read_bytes() == ref, run
        assert metrics(tmp_path / run) == metrics(tmp_path / "cli"), run
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["test_accuracy"] > 0.5  # the classes are learnable
    # The config names the .npz for the CLI run, nothing for arrays held in memory.
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["data"] == str(npz)
    assert json.loads((tmp_path / "model" / "config.json").read_text())["data"] == ""


def test_model_predictions_equal_the_cli(cli, tmp_path):
    x, y, xt, yt = arrays(True)
    npz = tmp_path / "data.npz"
    np.savez(npz, x_train=x, y_train=y, x_test=xt, y_test=yt)
    model = dropkit.Model(**OPTIONS)
    model.fit(x, y, xt, yt, epochs=2)  # no out: a temporary run directory
    out = tmp_path / "preds.jsonl"
    r = subprocess.run([cli, "predict", "--model", model.run_dir, "--data", str(npz), "--mc", "7",
                        "--seed", "5", "--out", str(out), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    mc = model.predict_mc(xt, samples=7, seed=5, labels=yt)
    np.testing.assert_array_equal(mc["probs"], np.array([l["probs"] for l in lines]))
    for key in ("entropy", "mutual_information", "variance"):
        np.testing.assert_array_equal(mc[key], np.array([l[key] for l in lines]))
    # Examples are keyed by their index in x: the first rows alone draw the same masks (the
    # products of a 9-row block may round differently from a 60-row one's in the last bits).
    head = model.predict_mc(xt[:9], samples=7, seed=5)
    np.testing.assert_allclose(head["probs"], mc["probs"][:9], rtol=1e-5, atol=1e-7)
    other_seed = model.predict_mc(xt[:9], samples=7, seed=6)
    assert np.abs(other_seed["probs"] - head["probs"]).max() > 1e-3
    probs = model.predict(xt)
    assert probs.shape == (60, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    # A loaded model predicts the same.
    again = dropkit.Model.load(model.run_dir)
    np.testing.assert_array_equal(again.predict(xt), probs)


def test_model_resume_continues_bit_for_bit(tmp_path):
    x, y, xt, yt = arrays(False)
    straight = dropkit.Model(**OPTIONS)
    straight.fit(x, y, xt, yt, out=tmp_path / "a", epochs=2)
    split = dropkit.Model(**OPTIONS)
    split.fit(x, y, xt, yt, out=tmp_path / "b", epochs=1)
    split.fit(x, y, xt, yt, resume=True, epochs=2)
    assert (tmp_path / "a" / "checkpoint.safetensors").read_bytes() == \
        (tmp_path / "b" / "checkpoint.safetensors").read_bytes()


def test_a_run_on_arrays_resumed_from_the_cli_must_name_its_data(cli, tmp_path):
    x, y, xt, yt = arrays(False)
    dropkit.Model(**OPTIONS).fit(x, y, xt, yt, out=tmp_path / "run", epochs=1)
    r = subprocess.run([cli, "train", "--resume", str(tmp_path / "run"), "--epochs", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "trained on arrays" in r.stderr and "--data" in r.stderr


def test_model_bad_input_raises_the_documented_exceptions(tmp_path):
    x, y, xt, yt = arrays(True)
    model = dropkit.Model(**OPTIONS)
    with pytest.raises(ValueError, match="not been fit"):
        model.predict(xt)
    with pytest.raises(TypeError, match="complex"):
        model.fit(x.astype(np.complex64), y, xt, yt, epochs=1)
    with pytest.raises(ValueError, match="axes"):
        model.fit(x.reshape(-1), y, xt, yt, epochs=1)
    bad = x.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="example 3"):
        model.fit(bad, y, xt, yt, epochs=1)
    with pytest.raises(ValueError, match="labels for"):
        model.fit(x, y[:-1], xt, yt, epochs=1)
    with pytest.raises(ValueError, match="differ"):
        model.fit(x, y, xt[:, :10], yt, epochs=1)
    with pytest.raises(ValueError, match="lr"):
        model.fit(x, y, xt, yt, epochs=1, lr=-1)
    with pytest.raises(ValueError, match="`val` = 5000 must be below the 200 training"):
        dropkit.Model(OPTIONS["net"]).fit(x, y, xt, yt, epochs=1)  # the default val
    with pytest.raises(ValueError, match="input_shape"):
        dropkit.Model(OPTIONS["net"], input_shape=(8, 9)).fit(x, y, xt, yt, epochs=1)
    with pytest.raises(FileNotFoundError):
        dropkit.Model.load(tmp_path / "nothing")
    model.fit(x, y, xt, yt, epochs=1)
    with pytest.raises(ValueError, match="samples"):
        model.predict_mc(xt, samples=0)
    # A non-contiguous view and float64 are converted once, with the same result.
    np.testing.assert_array_equal(model.predict(xt.astype(np.float64)[::1]),
                                  model.predict(np.asfortranarray(xt)))


@pytest.mark.parametrize("case", ["missing_test", "labels_out_of_range", "not_a_zip",
                                  "fortran", "object"])
def test_bad_npz_exits_2_and_writes_nothing(cli, tmp_path, case):
    x, y, xt, yt = arrays(True)
    npz = tmp_path / "bad.npz"
    if case == "missing_test":
        np.savez(npz, x_train=x, y_train=y)
    elif case == "labels_out_of_range":
        np.savez(npz, x_train=x, y_train=y + 20, x_test=xt, y_test=yt)
    elif case == "not_a_zip":
        npz.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    elif case == "fortran":
        np.savez(npz, x_train=np.asfortranarray(x), y_train=y, x_test=xt, y_test=yt)
    else:
        np.savez(npz, x_train=x.astype(object), y_train=y, x_test=xt, y_test=yt)
    out = tmp_path / "run"
    r = subprocess.run([cli, "train", "--data", str(npz), *FLAGS, "--epochs", "1", "--out",
                        str(out)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert str(npz) in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert not out.exists() or not any(out.iterdir())


def test_options_from_flags_parses_as_the_cli_does():
    flags = ["--lr", "0.1", "--epochs=3", "--augment-flip", "--net", "dense:8:relu,dense:4",
             "--exclude-classes", "8,9", "--max-norm", "0"]
    assert dropkit.options_from_flags(flags) == {
        "lr": 0.1, "epochs": 3, "augment_flip": True, "net": "dense:8:relu,dense:4",
        "exclude_classes": "8,9", "max_norm": 0.0}
    with pytest.raises(ValueError, match="no_such"):
        dropkit.options_from_flags(["--no-such", "1"])
    with pytest.raises(ValueError, match="lr"):
        dropkit.options_from_flags(["--lr", "fast"])
    with pytest.raises(ValueError, match="needs a value"):
        dropkit.options_from_flags(["--lr"])
    with pytest.raises(ValueError, match="not a flag"):
        dropkit.options_from_flags(["lr", "0.1"])


def test_fit_draws_a_progress_line_only_on_a_terminal(tmp_path):
    code = ("import numpy as np, dropkit, sys; sys.path.insert(0, %r); from test_model import "
            "arrays, OPTIONS; x, y, xt, yt = arrays(True); dropkit.Model(**OPTIONS).fit(x, y, xt, "
            "yt, epochs=2)" % os.path.dirname(__file__))
    env = dict(os.environ)
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr == ""  # not a terminal: nothing
    leader, follower = pty.openpty()
    p = subprocess.Popen([sys.executable, "-c", code], stderr=follower, stdout=subprocess.DEVNULL,
                         env=env)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    assert p.wait() == 0
    os.close(leader)
    assert b"epoch 1/2  step 8/8  loss" in seen and b"epoch 2/2" in seen, seen[-300:]
    with pytest.raises(ValueError, match="progress"):
        x, y, xt, yt = arrays(True)
        dropkit.Model(**OPTIONS).fit(x, y, xt, yt, epochs=1, progress="bar")
