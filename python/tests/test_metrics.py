"""dropkit.metrics: the numbers `dropkit predict --json` prints, from its own probabilities."""

import json
import math
import subprocess

import numpy as np
import pytest

import dropkit
import dropkit.metrics as dm

FLAGS = ["--arch", "64-96-4", "--lr", "0.3", "--val", "40", "--batch", "25", "--seed", "3"]


@pytest.mark.parametrize("mc", [0, 6])
def test_metrics_equal_predict_json(cli, tiny_data, tmp_path, mc):
    run = tmp_path / "run"
    r = subprocess.run([cli, "train", "--data", str(tiny_data), *FLAGS, "--epochs", "1",
                        "--out", str(run)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "preds.jsonl"
    r = subprocess.run([cli, "predict", "--model", str(run), "--data", str(tiny_data), "--mc",
                        str(mc), "--seed", "5", "--exclude-classes", "3", "--out", str(out),
                        "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)["mc" if mc else "deterministic"]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    probs = np.array([l["probs"] for l in lines])
    labels = np.array([l["label"] for l in lines])
    ind = labels != 3
    got = dm.evaluate(probs[ind], labels[ind])
    assert got["examples"] == summary["examples"]
    assert got["accuracy"] == summary["accuracy"]
    assert got["brier"] == summary["brier"]
    assert got["ece"] == summary["ece"]
    assert got["nll"] == pytest.approx(summary["nll"], rel=1e-9)
    # Out-of-distribution detection: class 3 against the rest, over every example.
    ood = summary["ood_auroc"]
    entropy = np.array([l["entropy"] for l in lines])
    confidence = np.array([l["confidence"] for l in lines])
    assert dm.auroc(entropy, labels == 3) == ood["entropy"]
    assert dm.auroc(1.0 - confidence, labels == 3) == ood["max_probability"]
    if mc:
        mi = np.array([l["mutual_information"] for l in lines])
        assert dm.auroc(mi, labels == 3) == ood["mutual_information"]


def test_nll_with_predicts_log_probabilities(tiny_data, tmp_path):
    run = tmp_path / "run"
    dropkit.train(run, data=tiny_data, epochs=1, arch="64-96-4", lr=0.3, val=40, batch=25, seed=3)
    raw = (tiny_data / "t10k-images-idx3-ubyte").read_bytes()
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 8, 8)
    labels = np.frombuffer((tiny_data / "t10k-labels-idx1-ubyte").read_bytes(), np.uint8, offset=8)
    p = dropkit.predict(run, images, labels, mc=4, seed=1)
    got = dm.evaluate(p["probs"], labels, log_prob_label=p["log_prob_label"])
    assert got == p["metrics"]
    assert dm.nll(p["probs"], labels) == pytest.approx(p["metrics"]["nll"], rel=1e-9)


def test_definitions_on_a_hand_example():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5], [0.2, 0.8]])
    labels = np.array([0, 0, 1, 1])
    # Predictions 0, 1, 0 (tie: the lower class), 1: right, wrong, wrong, right.
    assert dm.accuracy(probs, labels) == 0.5
    assert dm.nll(probs, labels) == pytest.approx(
        -np.mean(np.log([0.9, 0.4, 0.5, 0.8])))
    assert dm.brier(probs, labels) == pytest.approx(np.mean([0.02, 0.72, 0.5, 0.08]))
    # Confidences 0.9, 0.6, 0.5, 0.8 fall in bins 13, 8, 7, 11: one example each.
    assert dm.ece(probs, labels) == pytest.approx((0.1 + 0.6 + 0.5 + 0.2) / 4)
    assert dm.BINS == 15
    assert dm.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert dm.auroc([1, 1, 1], [1, 1, 0]) == 0.5
    assert math.isnan(dm.auroc([0.1, 0.2], [1, 1]))


def test_bad_inputs():
    with pytest.raises(ValueError, match="outside"):
        dm.evaluate(np.full((2, 3), 1 / 3), [0, 3])
    with pytest.raises(ValueError, match="one label per row"):
        dm.evaluate(np.full((2, 3), 1 / 3), [0])
    with pytest.raises(ValueError, match="axes"):
        dm.evaluate(np.ones(3), [0, 1, 2])
    with pytest.raises(TypeError, match="complex"):
        dm.evaluate(np.ones((2, 2), np.complex64), [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        dm.auroc([np.nan, 1.0], [0, 1])
    with pytest.raises(ValueError, match="differ in length"):
        dm.auroc([0.5, 1.0], [0, 1, 1])
    assert math.isnan(dm.evaluate(np.zeros((0, 3)), np.zeros(0, int))["ece"])
