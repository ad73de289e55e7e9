"""Sweep overhead: N trials of a fixed small budget, in a plain loop vs through ``study.run``.

    python -m benchmarks.sweep [--trials 4] [--epochs 2] [--classes 5] [--space none]
        [--cpus-per-trial 1] [--gpus-per-trial G] [--max-concurrent C] [--data PATH]
        [--only both|plain|ray] [--set key=value ...]

(a) plain: ``study.training.run_trial`` N times one after another in this process (seeds
    0..N-1, the space's fixed settings, the data decoded once from the cache);
(b) ray: ``study.run.main`` with ``--num-samples N`` on a fresh local Ray cluster: the same
    space, budget and data, trials packed as ``--cpus-per-trial``/``--gpus-per-trial`` allow
    (``--grace-period`` = the budget, so ASHA stops nothing and both run N x epochs).
Wall time of (b) is everything ``study.run`` does: starting Ray and its dashboard, loading the
data into the object store, Optuna, a checkpoint per epoch, the trial table. Per-trial work is
the same in both; only the learning rate differs (Optuna samples it in (b)).
``--trial-threads`` (default: CPUs / concurrent trials) sets torch's threads in (a); in (b) a
trial's torch threads equal its --cpus-per-trial (study.resources).
Ends with one line: ``sweep wall_s plain=P ray=R ratio=R/P``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import torch

from study.config import make_config, parse_set
from study.spaces import load_space
from study.datasets import load_splits
from study.training import run_trial

from .common import DEFAULT_DATA, fmt, machine


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=2, help="epochs per trial (the fixed budget)")
    p.add_argument("--classes", type=int, default=5, help="5 classes x 2 epochs ~ 30 s a trial on 2 CPU cores")
    p.add_argument("--space", default="none", help="search space of the ray run (default: none, lr only)")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--cpus-per-trial", type=float, default=None,
                   help="default: all CPUs on a GPU-less machine (one trial at a time, as the plain loop), "
                        "else 1")
    p.add_argument("--gpus-per-trial", type=float, default=None, help="default: 0.25 with a GPU, else 0")
    p.add_argument("--max-concurrent", type=int, default=None)
    p.add_argument("--trial-threads", type=int, default=0, help="torch threads of the plain loop (0: torch's default)")
    p.add_argument("--only", choices=("both", "plain", "ray"), default="both")
    p.add_argument("--keep", help="results directory to keep (default: a temporary one, removed)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return p


def run_plain(fixed: dict, trials: int, splits, threads: int) -> float:
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    for seed in range(trials):
        t1 = time.perf_counter()
        m = run_trial(make_config({**fixed, "seed": seed}), data=splits)
        print(f"[plain] trial {seed}: {time.perf_counter() - t1:.1f}s, val_loss {m['val_loss']:.4f}, "
              f"{m['samples_per_s']:.0f} images/s", flush=True)
    return time.perf_counter() - t0


def run_ray(args, results_dir: str) -> float:
    import ray

    from study import run

    argv = ["--space", args.space, "--data", args.data, "--classes", str(args.classes),
            "--max-epochs", str(args.epochs), "--grace-period", str(args.epochs),
            "--num-samples", str(args.trials), "--cpus-per-trial", str(args.cpus_per_trial),
            "--gpus-per-trial", str(args.gpus_per_trial), "--name", "bench", "--results-dir", results_dir]
    if args.max_concurrent:
        argv += ["--max-concurrent", str(args.max_concurrent)]
    for item in args.set:
        argv += ["--set", item]
    print(f"[ray] python -m study.run {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    try:
        rc = run.main(argv)
    finally:
        wall = time.perf_counter() - t0
        if ray.is_initialized():
            ray.shutdown()
    if rc != 0:
        raise SystemExit(f"study.run failed with exit code {rc}")
    return wall


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parser().parse_args(argv)
    cuda = torch.cuda.is_available()
    ncpu = os.cpu_count() or 1
    if args.gpus_per_trial is None:
        args.gpus_per_trial = 0.25 if cuda else 0.0
    if args.cpus_per_trial is None:
        args.cpus_per_trial = 1.0 if cuda else float(ncpu)
    space = load_space(args.space)
    fixed = {**space.fixed, **parse_set(args.set), "data": args.data, "classes": args.classes,
             "epochs": args.epochs}
    make_config(fixed)  # bad settings fail here, before anything is timed
    print(f"machine: {machine()}")
    print(f"settings: trials={args.trials} epochs={args.epochs} classes={args.classes} space={args.space} "
          f"cpus_per_trial={args.cpus_per_trial:g} gpus_per_trial={args.gpus_per_trial:g} "
          f"max_concurrent={args.max_concurrent or 'auto'}", flush=True)
    out = {"plain": float("nan"), "ray": float("nan")}
    if args.only in ("both", "plain"):
        t0 = time.perf_counter()
        splits = load_splits(make_config(fixed))  # the ray run loads once in its driver too
        load_s = time.perf_counter() - t0
        out["plain"] = load_s + run_plain(fixed, args.trials, splits, args.trial_threads)
        del splits
    if args.only in ("both", "ray"):
        results = args.keep or tempfile.mkdtemp(prefix="regstudy-sweep-bench-")
        try:
            out["ray"] = run_ray(args, results)
        finally:
            if not args.keep:
                shutil.rmtree(results, ignore_errors=True)
    out["ratio"] = out["ray"] / out["plain"]
    print(f"sweep wall_s plain={fmt(out['plain'])} ray={fmt(out['ray'])} ratio={fmt(out['ratio'])}", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main() and 0)
