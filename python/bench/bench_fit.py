#!/usr/bin/python3
"""An epoch of ``dropkit.Model.fit`` on arrays in memory against an epoch of ``dropkit train``
on the same data, net and options (docs/python.md, "Speed"): the binding should add nothing
that shows. Fashion-MNIST (Debian's files, read into NumPy arrays for fit), the default net
unless ``--net``; the two run in alternation, ``--rounds`` times each, and the figures are the
epochs' own times (``epoch_seconds`` in metrics.jsonl and the history), which leave out the
evaluation after the epoch. Run from the repository root after scripts/build:

    PYTHONPATH=build/python /usr/bin/python3 python/bench/bench_fit.py [--cli build/dropkit]
"""

import argparse
import gzip
import json
import pathlib
import statistics
import subprocess
import tempfile

import numpy as np

import dropkit

DATA = pathlib.Path("/usr/share/datasets/fashion-mnist")


def idx(path):
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", default="build/dropkit")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--net", default=None, help="a --net spec (default: the trainer's)")
    args = ap.parse_args()
    x = idx(DATA / "train-images-idx3-ubyte.gz")
    y = idx(DATA / "train-labels-idx1-ubyte.gz")
    xt = idx(DATA / "t10k-images-idx3-ubyte.gz")
    yt = idx(DATA / "t10k-labels-idx1-ubyte.gz")
    options = {"epochs": args.epochs, "seed": 1}
    if args.net:
        options["net"] = args.net
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    cli, py = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            out = pathlib.Path(tmp) / f"cli{r}"
            subprocess.run([args.cli, "train", "--data", str(DATA), *flags, "--out", str(out)],
                           check=True, capture_output=True)
            cli += [json.loads(line)["epoch_seconds"]
                    for line in (out / "metrics.jsonl").read_text().splitlines()]
            history = dropkit.Model(**options).fit(x, y, xt, yt, out=pathlib.Path(tmp) / f"py{r}")
            py += [h["epoch_seconds"] for h in history]
    with open("/proc/cpuinfo") as f:
        cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    print(f"{cpu}; {len(cli)} epochs each")
    print(f"dropkit train epoch   median {statistics.median(cli):.3f} s  "
          f"[{min(cli):.3f} - {max(cli):.3f}]")
    print(f"Model.fit epoch       median {statistics.median(py):.3f} s  "
          f"[{min(py):.3f} - {max(py):.3f}]")
    print(f"fit / train           {statistics.median(py) / statistics.median(cli):.3f}")


if __name__ == "__main__":
    main()
