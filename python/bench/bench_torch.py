#!/usr/bin/python3
"""Speed of dropkit from Python, in one run (docs/python.md, "Speed"):

- ``dropkit.torch.Dropout`` forward + backward on a 16M-float tensor against ``F.dropout``'s;
- ``dropkit.dropout`` on 16M floats from NumPy against the C++ kernel's time in
  ``dropkit bench kernels`` at the same thread count;
- the per-call time of ``dropkit.dropout`` on 1,000 elements (the binding's overhead).

Times are medians (min - max in brackets) over ``--reps`` repetitions. The gradient fed to the
backwards is allocated once, so both sides time dropout, not the caller's gradient. Run from the
repository root after scripts/build:

    PYTHONPATH=build/python /usr/bin/python3 python/bench/bench_torch.py [--cli build/dropkit]
"""

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def times(f, reps, warmup=2):
    for _ in range(warmup):
        f()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return out


def ms(ts):
    return f"{statistics.median(ts) * 1e3:8.2f} ms [{min(ts) * 1e3:.2f} - {max(ts) * 1e3:.2f}]"


def bench_torch(n, reps):
    import torch
    import torch.nn.functional as F

    import dropkit.torch as dt

    x = torch.randn(n, requires_grad=True)
    g = torch.ones(n)
    ours = dt.Dropout(0.5, seed=1)

    def dropkit_fb():
        ours(x).backward(g)
        x.grad = None

    def torch_fb():
        F.dropout(x, 0.5, training=True).backward(g)
        x.grad = None

    a = times(dropkit_fb, reps)
    b = times(torch_fb, max(3, reps // 3))
    print(f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}")
    print(f"forward + backward, {n} floats, p = 0.5:")
    print(f"  dropkit.torch.Dropout {ms(a)}")
    print(f"  F.dropout             {ms(b)}")
    print(f"  ratio (median)        {statistics.median(b) / statistics.median(a):8.1f}x")


def cxx_kernel(cli, n):
    """Median seconds of the C++ dropout_forward kernel per thread count, from the CLI."""
    out = subprocess.run([cli, "bench", "kernels", "--json", "--sizes", str(n)], check=True,
                         capture_output=True, text=True).stdout
    return {r["threads"]: r["seconds_median"] for r in json.loads(out)["results"]
            if r["op"] == "dropout_forward" and r["n"] == n}


def bench_numpy(n, reps, cli):
    import dropkit

    x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    out = np.empty_like(x)
    kernel = cxx_kernel(cli, n) if cli else {}
    print(f"dropkit.dropout, {n} floats from NumPy (out= given), against the C++ kernel "
          f"(dropkit bench kernels, dropout_forward):")
    for threads in sorted(kernel) or [0]:
        ts = times(lambda: dropkit.dropout(x, 0.5, seed=1, out=out, threads=threads), reps)
        line = f"  threads = {threads}: Python {ms(ts)}"
        if threads in kernel:
            line += (f", C++ {kernel[threads] * 1e3:.2f} ms, ratio "
                     f"{statistics.median(ts) / kernel[threads]:.2f}")
        print(line)
    ts = times(lambda: dropkit.dropout(x, 0.5, seed=1), reps)
    print(f"  a new output array each call:  {ms(ts)}")
    small = np.ones(1000, np.float32)
    small_out = np.empty_like(small)
    calls = 20000
    per_call = [t / calls for t in times(
        lambda: [dropkit.dropout(small, 0.5, seed=1, out=small_out) for _ in range(calls)], 5)]
    print(f"dropkit.dropout on 1,000 floats: {statistics.median(per_call) * 1e6:.2f} us per call "
          f"[{min(per_call) * 1e6:.2f} - {max(per_call) * 1e6:.2f}]")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=16 * 1024 * 1024, help="elements (16M)")
    ap.add_argument("--reps", type=int, default=15, help="repetitions per measurement")
    ap.add_argument("--cli", default=os.environ.get("DROPKIT_CLI", "build/dropkit"),
                    help="the dropkit CLI for the C++ kernel time ('' to skip)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    args = ap.parse_args()
    if args.cli and not os.path.exists(args.cli):
        sys.exit(f"bench_torch: no CLI at {args.cli} (--cli PATH, or --cli '' to skip)")
    # torch (and its OpenMP runtime) first, as in a torch user's process; dropkit's extension after.
    if not args.no_torch:
        importlib.import_module("torch")
    import dropkit

    m = dropkit.machine()
    print(f"{m['cpu']} ({m['kind']}, {m['isa']}), {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d')}")
    if not args.no_torch:
        bench_torch(args.n, args.reps)
    bench_numpy(args.n, args.reps, args.cli)


if __name__ == "__main__":
    main()
