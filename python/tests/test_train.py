"""Training and prediction from Python: the same run directory and numbers as the CLI."""

import _thread
import json
import subprocess

import numpy as np
import pytest

import dropkit

OPTIONS = dict(arch="64-96-4", lr=0.3, val=40, batch=25, momentum=0.9, seed=3)
FLAGS = ["--arch", "64-96-4", "--lr", "0.3", "--val", "40", "--batch", "25", "--momentum", "0.9",
         "--seed", "3"]


def cli_train(cli, data, out, *extra):
    r = subprocess.run([cli, "train", "--data", str(data), *FLAGS, "--out", str(out), *extra],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def metrics(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("seconds", None)
        r.pop("epoch_seconds", None)
    return rows


def test_same_run_directory_as_the_cli(cli, tiny_data, tmp_path):
    ref = cli_train(cli, tiny_data, tmp_path / "cli", "--epochs", "2")
    seen = []
    history = dropkit.train(tmp_path / "py", data=tiny_data, epochs=2, on_epoch=seen.append,
                            threads=1, **OPTIONS)
    py = tmp_path / "py"
    assert (py / "checkpoint.safetensors").read_bytes() == \
        (ref / "checkpoint.safetensors").read_bytes()
    assert metrics(py) == metrics(ref)
    assert json.loads((py / "config.json").read_text()) == \
        json.loads((ref / "config.json").read_text())
    assert (py / "curves.svg").exists()
    assert [h["epoch"] for h in history] == [1, 2] and [s["epoch"] for s in seen] == [1, 2]


def test_resume_continues_bit_for_bit(tiny_data, tmp_path):
    dropkit.train(tmp_path / "straight", data=tiny_data, epochs=2, **OPTIONS)
    dropkit.train(tmp_path / "split", data=tiny_data, epochs=1, **OPTIONS)
    dropkit.train(resume=tmp_path / "split", epochs=2)
    assert (tmp_path / "split" / "checkpoint.safetensors").read_bytes() == \
        (tmp_path / "straight" / "checkpoint.safetensors").read_bytes()


def test_learned_drop_rates_are_the_clis_and_survive_a_resume(cli, tiny_data, tmp_path):
    net = "concrete_dropout:0.2,dense:48:relu,concrete_dropout:0.3:length_scale=2,dense:4"
    flags = ["--net", net, "--lr", "0.3", "--val", "40", "--batch", "25", "--seed", "3"]
    r = subprocess.run([cli, "train", "--data", str(tiny_data), *flags, "--epochs", "2", "--out",
                        str(tmp_path / "cli"), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cli_rates = json.loads(r.stdout)["drop_rates"]
    dropkit.train(tmp_path / "py", data=tiny_data, epochs=1, **dropkit.options_from_flags(flags))
    history = dropkit.train(resume=tmp_path / "py", epochs=2)
    assert [len(h["drop_rates"]) for h in history] == [2, 2]
    assert history[-1]["drop_rates"] == cli_rates  # the same bits, through a resume
    assert history[0]["drop_rates"] != [0.2, 0.3]  # they moved
    assert metrics(tmp_path / "py") == metrics(tmp_path / "cli")


def test_ctrl_c_stops_at_a_step_with_the_last_checkpoint_intact(tiny_data, tmp_path):
    dropkit.train(tmp_path / "straight", data=tiny_data, epochs=3, **OPTIONS)
    calls = []

    def progress(done, total, loss):
        calls.append((done, total))
        if len(calls) == total + 2:  # in the second epoch: a (simulated) SIGINT
            _thread.interrupt_main()

    with pytest.raises(KeyboardInterrupt):
        dropkit.train(tmp_path / "cut", data=tiny_data, epochs=3, progress=progress, **OPTIONS)
    total = calls[0][1]
    assert total + 2 <= len(calls) <= total + 3  # stopped at the next step boundary
    assert [r["epoch"] for r in metrics(tmp_path / "cut")] == [1]
    # The directory is unlocked, and its checkpoint (epoch 1) continues bit for bit.
    dropkit.train(resume=tmp_path / "cut", epochs=3)
    assert (tmp_path / "cut" / "checkpoint.safetensors").read_bytes() == \
        (tmp_path / "straight" / "checkpoint.safetensors").read_bytes()


def test_a_progress_exception_propagates(tiny_data, tmp_path):
    def progress(done, total, loss):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        dropkit.train(tmp_path / "r", data=tiny_data, epochs=1, progress=progress, **OPTIONS)


def test_option_errors_are_the_librarys(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="lr = -1"):
        dropkit.train(tmp_path / "r", data=tiny_data, epochs=1, lr=-1)
    with pytest.raises(ValueError, match="no_such_option"):
        dropkit.train(tmp_path / "r", data=tiny_data, no_such_option=1)
    with pytest.raises(TypeError, match="epochs"):
        dropkit.train(tmp_path / "r", data=tiny_data, epochs=[1])
    with pytest.raises(OSError):
        dropkit.train(tmp_path / "r", data=tmp_path / "missing", epochs=1)
    with pytest.raises(OSError):
        dropkit.train(resume=tmp_path / "missing", epochs=1)
    (tmp_path / "r").mkdir(exist_ok=True)
    assert not any((tmp_path / "r").iterdir())  # nothing written
    assert "lr" in dropkit.option_names() and "net" in dropkit.option_names()


def test_a_fresh_run_refuses_a_directory_with_another_run(tiny_data, tmp_path):
    dropkit.train(tmp_path / "r", data=tiny_data, epochs=1, **OPTIONS)
    with pytest.raises(ValueError):
        dropkit.train(tmp_path / "r", data=tiny_data, epochs=1, **OPTIONS)
    dropkit.train(tmp_path / "r", data=tiny_data, epochs=1, overwrite=True, **OPTIONS)


def idx_images(path):
    raw = path.read_bytes()
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(raw[3])]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


@pytest.mark.parametrize("mc", [0, 6])
def test_predict_equals_the_cli(cli, tiny_data, tmp_path, mc):
    run = tmp_path / "run"
    dropkit.train(run, data=tiny_data, epochs=2, **OPTIONS)
    images = idx_images(tiny_data / "t10k-images-idx3-ubyte")
    labels = idx_images(tiny_data / "t10k-labels-idx1-ubyte")
    out = tmp_path / "preds.jsonl"
    r = subprocess.run([cli, "predict", "--model", str(run), "--data", str(tiny_data),
                        "--mc", str(mc), "--seed", "5", "--out", str(out), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    got = dropkit.predict(run, images, labels, mc=mc, seed=5)
    np.testing.assert_array_equal(got["probs"], np.array([l["probs"] for l in lines]))
    for key in ("entropy", "mutual_information", "variance", "confidence"):
        np.testing.assert_array_equal(got[key], np.array([l[key] for l in lines]))
    assert got["metrics"]["accuracy"] == summary["mc" if mc else "deterministic"]["accuracy"]


def test_predict_errors(tiny_data, tmp_path):
    run = tmp_path / "run"
    dropkit.train(run, data=tiny_data, epochs=1, **OPTIONS)
    images = idx_images(tiny_data / "t10k-images-idx3-ubyte")
    with pytest.raises(OSError):
        dropkit.predict(tmp_path / "missing", images)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "checkpoint.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises((OSError, ValueError)):
        dropkit.predict(broken, images)
    with pytest.raises(ValueError, match="trained on uint8 images"):
        dropkit.predict(run, images.astype(np.float32))
    with pytest.raises(TypeError, match="complex"):
        dropkit.predict(run, images.astype(np.complex64))
    with pytest.raises(ValueError):
        dropkit.predict(run, np.zeros((3, 5, 5), np.uint8))
    with pytest.raises(ValueError):
        dropkit.predict(run, images, np.arange(3))
