"""Runs: what one training is (Run), how the runs are trained and their results kept (Runner),
how a sweep is shared between processes (shard_of), and the small readers the summaries use.

Training goes through the Python package built beside the binary (build/python: dropkit.train);
measurements after training run `build/dropkit` (eval, predict --json) through Ctx."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DROPKIT = Path(os.environ.get("DROPKIT_BIN", ROOT / "build" / "dropkit"))  # tests point it elsewhere
# Training runs through the Python package built beside the binary (build/python).
sys.path.insert(0, os.environ.get("DROPKIT_PYTHONPATH", str(DROPKIT.parent / "python")))


@dataclass
class Run:
    exp: str
    name: str
    args: list
    epochs: int
    cost: float  # relative time, for the estimate of what is left
    dir: Path = None  # OUT/exp/name, set by plan_all
    result: dict = None  # result.json, once finished and loaded
    store: Path = None  # STORE/exp/name.json: the result kept in the repository (Mode.store)
    # What is measured on the trained model before its checkpoint may be gone: {key: dropkit
    # arguments}, run with --model DIR; each JSON output is kept in result["post"][key].
    post: dict = field(default_factory=dict)

    def stored(self):
        """The result written (here, or kept in the repository), or None."""
        f = self.dir / "result.json"
        if f.exists():
            return json.loads(f.read_text())
        return json.loads(self.store.read_text()) if self.store and self.store.exists() else None

    def missing_post(self, result):
        return [k for k in self.post if k not in result.get("post", {}) and not result.get("diverged")]

    def finished(self):
        result = self.stored()
        return result is not None and not self.missing_post(result)

    def load(self):
        self.result = self.stored()


class Runner:
    def __init__(self, data: str, threads: int, quiet: bool):
        self.data, self.threads, self.quiet = data, threads, quiet
        self.ctx = Ctx(data, threads)  # runs the post measurements
        self.done_cost = 0.0
        self.spent = 0.0

    def log(self, msg):
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def run_all(self, runs):
        """Trains the runs that have no result yet, then loads every run's result."""
        todo = [r for r in unique(runs) if not r.finished()]
        total = sum(r.cost for r in todo)
        self.log(f"{len(runs)} runs, {len(runs) - len(todo)} finished before, {len(todo)} to do")
        for i, r in enumerate(todo, 1):
            self.train(r, i, len(todo), total)
        for r in runs:
            r.load()

    def eta(self, total):
        if self.done_cost <= 0:
            return "?"
        left = (total - self.done_cost) * self.spent / self.done_cost
        return f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"

    def train(self, r: Run, i, n, total):
        """One run through the Python package (dropkit.train): a new run, or the resume of one
        interrupted after its first checkpoint; the final epoch's numbers go to result.json."""
        import dropkit  # here, not above: --render-only needs no build
        r.dir.parent.mkdir(parents=True, exist_ok=True)
        resumed = (r.dir / "checkpoint.safetensors").exists()
        t0 = time.time()
        before = r.stored()
        if before is not None and resumed:  # trained; only measurements added since are missing
            self.log(f"[{i}/{n}] {r.exp}/{r.name} (trained; measuring {', '.join(r.missing_post(before))})")
            self.finish(r, before, t0)
            return
        self.log(f"[{i}/{n}] {r.exp}/{r.name} ({'resumed' if resumed else 'new'}, {r.epochs} epochs; "
                 f"about {self.eta(total)} left)")

        def on_epoch(record):
            self.log(f"    {r.exp}/{r.name} epoch {record['epoch']}/{r.epochs}")

        common = dict(data=self.data, threads=self.threads, on_epoch=on_epoch, epochs=r.epochs)
        try:
            if resumed:
                history = dropkit.train(resume=r.dir, **common)
            else:  # a directory without a checkpoint was interrupted before its first epoch
                history = dropkit.train(r.dir, overwrite=r.dir.exists(), **common,
                                        **dropkit.options_from_flags(r.args))
            last = history[-1]
            result = {k: last[k] for k in ("test_accuracy", "test_loss", "train_accuracy",
                                           "train_loss", "val_accuracy", "val_loss")}
            result["epochs"] = len(history)
            result["train_seconds"] = sum(h.get("epoch_seconds", 0.0) for h in history)
            result["machine"] = machine()  # train_seconds depends on it; the bits do not
            result["date"] = time.strftime("%Y-%m-%d")
            if "drop_rates" in last:  # learned by concrete_dropout layers
                result["drop_rates"] = last["drop_rates"]
        except dropkit.TrainingDiverged as e:
            result = {"diverged": True, "message": str(e)}
        except (ValueError, OSError) as e:
            sys.exit(f"experiments: {r.exp}/{r.name}: {e}")
        self.finish(r, result, t0)

    def finish(self, r: Run, result, t0):
        """The run's post measurements (Run.post) added to its result, which is then written."""
        for key in r.missing_post(result):
            measured = cached_json(r.dir / f"{key}.json",
                                   self.ctx.dk(*r.post[key], "--model", r.dir, "--json"))
            measured.pop("model", None)  # this machine's path
            result.setdefault("post", {})[key] = measured
        write_atomic(r.dir / "result.json", json.dumps(result, indent=1))
        if r.store:  # kept in the repository: no machine trains this run again
            r.store.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(r.store, json.dumps(result, indent=1))
        self.spent += time.time() - t0
        self.done_cost += r.cost


def shard_of(text):
    """(I, N) from --shard I/N, else from an MPI launcher's or a Slurm job array's environment,
    else (0, 1)."""
    if text:
        try:
            i, n = (int(v) for v in text.split("/"))
        except ValueError:
            sys.exit(f"experiments: --shard {text}: expected I/N, e.g. 3/8")
        if not 0 <= i < n:
            sys.exit(f"experiments: --shard {text}: I must be in [0, N)")
        return i, n
    env = os.environ
    for rank, size in (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE")):
        if rank in env and size in env:
            return int(env[rank]), int(env[size])
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        return int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"])
    return 0, 1


def machine():
    """The machine kind that trains (vendor, family, model), as `dropkit bench --json` records it
    beside every speed figure: the library's, through the package."""
    import dropkit  # here, not above: --render-only needs no build
    return dropkit.machine()["kind"]


def write_atomic(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def cached_json(path: Path, cmd):
    """The JSON a dropkit command prints, computed once and kept in `path`."""
    if not path.exists():
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"experiments: {' '.join(map(str, cmd))} failed:\n{p.stderr}")
        write_atomic(path, p.stdout)
    return json.loads(path.read_text())


def metrics(run: Run):
    return [json.loads(l) for l in (run.dir / "metrics.jsonl").read_text().splitlines() if l]


def err(run: Run, key="test_accuracy"):
    """Final-epoch error in percent (100 for a diverged run)."""
    if run.result.get("diverged"):
        return 100.0
    return 100.0 * (1.0 - run.result[key])


def mean_std(xs):
    xs = list(xs)
    m = statistics.fmean(xs)
    s = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return m, s


def fmt_ms(m, s, n, digits=2):
    return f"{m:.{digits}f} ± {s:.{digits}f}" if n > 1 else f"{m:.{digits}f}"


class Ctx:
    """How summaries run dropkit (eval, predict) on the runs: the data and thread count given."""

    def __init__(self, data, threads):
        self.data, self.threads = data, threads

    def dk(self, *args):
        return [str(DROPKIT), *map(str, args), "--data", self.data, "--threads", str(self.threads)]


def unique(runs):
    """The runs in order, each training once (plan_all gives a shared run one directory)."""
    first = {}
    for r in runs:
        first.setdefault(r.dir, r)
    return list(first.values())
