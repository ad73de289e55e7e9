"""The sweep against what a researcher would write instead: the same study run three ways.

    python -m benchmarks.peers [--trials 8] [--epochs 5] [--classes 5] [--space l2] [--concurrency 1]
        [--seed 0] [--data PATH] [--out DIR] [--only loop,optuna,ray_asha,ray_noasha] [--set key=value ...]
        [--checkpoint-every E]

Same data, model, space, trial count, epochs, trial seed and concurrency in each:

(a) ``loop``: ``python -m study.train_once`` processes, ``--concurrency`` at a time, over
    configurations drawn at random from the space (Optuna's RandomSampler, ``--seed``);
(b) ``optuna``: Optuna alone in this process: TPE (``--seed``, the same random start-up trials as
    study.run's: half the trials, at most 10) with ``SuccessiveHalvingPruner`` at
    the space's grace period and reduction factor (ASHA's rungs), ``n_jobs`` = the concurrency,
    the objective ``study.training.run_trial`` reporting val_loss per epoch;
(c) ``ray_asha`` / ``ray_noasha``: ``python -m study.run`` with ``--max-concurrent`` = the
    concurrency and no ``--cpus-per-trial`` (the thread rule gives each trial its share), ASHA as
    the space says / ASHA off (``--grace-period`` = the epochs).

Threads: (a) and (c) give each trial CPUs / concurrency threads; (b) runs its jobs as threads of one
process sharing torch's CPUs-wide pool. Each approach's wall time runs from its command's start
to its end (the data is decoded into the cache once before, untimed).

For each: wall time, trials and epochs per hour, the machine's mean CPU use (/proc/stat, all
processes: other users' too), and the best val_loss reached as a function of wall time (anytime
curve: ``DIR/anytime.csv`` and ``DIR/anytime.png``); for (c) also the fixed cost (command start to
the first trial's first epoch) and each trial's time outside its epochs and its final test
evaluation (``test_time_s``, the same work in every approach). Each approach's record
is kept in ``DIR/<approach>.json``: a later ``--only`` run adds to the same table.
Ends with one line: ``peers wall_s loop=L optuna=O ray_asha=A ray_noasha=N``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from study.config import make_config, parse_set
from study.spaces import define_by_run, load_space

from .common import DEFAULT_DATA, REPO, fmt, machine

APPROACHES = ("loop", "optuna", "ray_asha", "ray_noasha")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--space", default="l2")
    p.add_argument("--concurrency", type=int, default=1, help="trials at once in every approach")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (the trials' own seed is the space's)")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--out", default=str(REPO / "results" / "peers"), help="records, CSV and figure (not in git)")
    p.add_argument("--only", default=",".join(APPROACHES), help="comma-separated subset of " + ", ".join(APPROACHES))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--checkpoint-every", type=int, help="(c): study.run's --checkpoint-every (default: study.run's)")
    return p


class CpuUse:
    """The machine's mean CPU use between start and stop, from /proc/stat (every process's)."""

    def __init__(self):
        self.t0 = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]  # idle + iowait
        return sum(v) - idle, sum(v)

    def stop(self) -> float:
        busy1, total1 = self._read()
        return (busy1 - self.t0[0]) / max(1, total1 - self.t0[1])


def draws(space, n: int, seed: int) -> list[dict]:
    """n configurations drawn at random from the space: what a loop over a grid or random draws uses."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        t = study.ask()
        define_by_run(space.search, t)
        out.append(dict(t.params))
    return out


# --- (a) a loop of train_once processes ----------------------------------------------------------

def run_loop(args, fixed: dict, space, t0: float) -> dict:
    threads = max(1, (os.cpu_count() or 1) // args.concurrency)
    events, lock = [], threading.Lock()

    def one(i: int, params: dict) -> None:
        cmd = [sys.executable, "-m", "study.train_once", "--data", args.data, "--classes", str(args.classes),
               "--epochs", str(args.epochs)]
        for k, v in {**fixed, **params}.items():
            if k not in ("data", "classes", "epochs"):
                cmd += ["--set", f"{k}={v}"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO) as p:
            header = None
            for line in p.stdout:
                cols = line.split()
                if cols and cols[0] == "epoch":
                    header = cols
                elif header and len(cols) == len(header) and cols[0].isdigit():
                    row = dict(zip(header, cols))
                    with lock:
                        events.append({"t": time.time() - t0, "trial": i, "epoch": int(row["epoch"]),
                                       "val_loss": float(row["val_loss"]),
                                       "epoch_time_s": float(row["epoch_time_s"])})
        if p.returncode != 0:
            print(f"[loop] trial {i} exited {p.returncode}", flush=True)

    configs = draws(space, args.trials, args.seed)
    todo = list(enumerate(configs))
    workers = [threading.Thread(target=lambda: _drain(todo, one, lock)) for _ in range(args.concurrency)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return {"events": events, "trials": len(configs)}


def _drain(todo: list, fn, lock) -> None:
    while True:
        with lock:
            if not todo:
                return
            item = todo.pop(0)
        fn(*item)


# --- (b) Optuna alone ----------------------------------------------------------------------------

def run_optuna(args, fixed: dict, space, t0: float, grace: int, rf: float) -> dict:
    import optuna
    import torch

    from study.datasets import load_splits
    from study.training import run_trial

    torch.set_num_threads(os.cpu_count() or 1)  # one process: the jobs share its pool
    splits = load_splits(make_config(fixed))  # (inside the timed span: the loop and study.run load too)
    events, lock = [], threading.Lock()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from study.comparison import startup_trials

    # (the same TPE as study.run's: its random start-up trials follow the budget)
    sampler = optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=startup_trials(args.trials))
    study = optuna.create_study(direction="minimize", sampler=sampler,
                                pruner=optuna.pruners.SuccessiveHalvingPruner(
                                    min_resource=grace, reduction_factor=int(rf), min_early_stopping_rate=0))

    def objective(trial):
        define_by_run(space.search, trial)
        cfg = make_config({**fixed, **trial.params})

        def report(m, _state):
            with lock:
                events.append({"t": time.time() - t0, "trial": trial.number, "epoch": int(m["epoch"]),
                               "val_loss": float(m["val_loss"]), "epoch_time_s": float(m["epoch_time_s"])})
            trial.report(m["val_loss"], m["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned()

        return run_trial(cfg, report, data=splits)["val_loss"]

    study.optimize(objective, n_trials=args.trials, n_jobs=args.concurrency)
    return {"events": events, "trials": len(study.trials)}


# --- (c) study.run ------------------------------------------------------------------------------

def run_sweep(args, asha: bool, t0: float, results: Path) -> dict:
    name = "asha" if asha else "noasha"
    cmd = [sys.executable, "-m", "study.run", "--space", args.space, "--data", args.data,
           "--classes", str(args.classes), "--max-epochs", str(args.epochs), "--num-samples", str(args.trials),
           "--seed", str(args.seed), "--max-concurrent", str(args.concurrency), "--name", name,
           "--results-dir", str(results)]
    if not asha:
        cmd += ["--grace-period", str(args.epochs)]
    if args.checkpoint_every is not None:
        cmd += ["--checkpoint-every", str(args.checkpoint_every)]
    for item in args.set:
        cmd += ["--set", item]
    print(f"[{name}] {' '.join(cmd[1:])}", flush=True)
    log = Path(args.out) / f"{name}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # (line times are read as lines arrive)
    with open(log, "w") as f, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                               cwd=REPO, env=env) as p:
        for line in p.stdout:  # each line with its time since the command's start: where the fixed cost goes
            f.write(f"{time.time() - t0:8.2f} {line}")
    rc = p.returncode
    if rc != 0:
        raise SystemExit(f"study.run failed with exit code {rc}; see {log}")
    events, outside = [], []
    from study.trial_table import read_trial_rows
    for d in sorted((results / name / "ray" / "search").glob("trial_*")):
        rows = [r for r in read_trial_rows(d) if "epoch" in r]
        for r in rows:
            # (reported_at: the trainable's own stamp, to the microsecond, where it has one)
            events.append({"t": r.get("reported_at", r["timestamp"]) - t0, "trial": d.name, "epoch": int(r["epoch"]),
                           "val_loss": float(r["val_loss"]),
                           "epoch_time_s": float(r["epoch_time_s"]) + float(r.get("checkpoint_time_s") or 0.0)})
        if rows:  # inside the trainable, outside the epochs: setup, data, checkpoints, reports (the
            # final test evaluation is the trial's work, as in the loop's and Optuna's trials)
            test_s = float(rows[-1].get("test_time_s") or 0.0)
            outside.append((rows[0]["timestamp"],
                            rows[-1]["time_total_s"] - sum(r["epoch_time_s"] for r in rows) - test_s))
    first = min(events, key=lambda e: e["t"])
    outside = [o for _, o in sorted(outside)]  # in start order: the first trial of an actor imports torch's
    return {"events": events, "trials": len({e["trial"] for e in events}),  # optimizer machinery (dynamo)
            "fixed_s": first["t"] - first["epoch_time_s"], "outside_by_trial_s": outside,
            "trial_outside_epochs_s": sum(outside) / len(outside) if outside else float("nan"),
            # (the first trial's set-up is also in fixed_s: everything before its first epoch)
            "trial_outside_after_first_s": sum(outside[1:]) / (len(outside) - 1) if len(outside) > 1 else float("nan")}


# --- the table and the figure --------------------------------------------------------------------

def anytime(events: list[dict]) -> list[tuple[float, float]]:
    """(time, best val_loss so far) at each report, in time order."""
    best, out = float("inf"), []
    for e in sorted(events, key=lambda e: e["t"]):
        best = min(best, e["val_loss"])
        out.append((e["t"], best))
    return out


def best_at(curve: list[tuple[float, float]], t: float) -> float:
    vals = [b for s, b in curve if s <= t]
    return vals[-1] if vals else float("nan")


def first_reach(curve: list[tuple[float, float]], target: float) -> float:
    # (the loop's losses come from train_once's printed table: 4 decimals)
    return next((s for s, b in curve if b <= target + 1e-4), float("nan"))


def report(out: Path, concurrency: int) -> dict:
    recs = {a: json.loads((out / f"{a}.json").read_text()) for a in APPROACHES if (out / f"{a}.json").exists()}
    curves = {a: anytime(r["events"]) for a, r in recs.items()}
    loop_best = curves["loop"][-1][1] if curves.get("loop") else float("nan")
    loop_wall = recs["loop"]["wall_s"] if "loop" in recs else float("nan")
    print(f"{'approach':11s} {'wall_s':>7s} {'trials/h':>8s} {'epochs/h':>8s} {'cpu':>5s} {'best_end':>8s} "
          f"{'best_half':>9s} {'t_to_loop_best':>14s} {'epochs_s':>8s} {'outside_s':>9s}")
    for a, r in recs.items():
        wall, c = r["wall_s"], curves[a]
        # training time (the epochs, as each trial measured them, over the concurrency) and the rest:
        # on a shared machine the epochs' speed varies with other users' load, the rest much less
        epochs_s = sum(e["epoch_time_s"] for e in r["events"]) / concurrency
        line = (f"{a:11s} {wall:7.0f} {r['trials'] / wall * 3600:8.1f} {len(r['events']) / wall * 3600:8.0f} "
                f"{r['cpu_use']:5.0%} {c[-1][1]:8.4f} {best_at(c, wall / 2):9.4f} {first_reach(c, loop_best):14.0f} "
                f"{epochs_s:8.0f} {wall - epochs_s:9.0f}")
        if "fixed_s" in r:
            line += (f"  fixed {r['fixed_s']:.1f}s, outside epochs {r['trial_outside_epochs_s']:.2f}s/trial "
                     f"({r.get('trial_outside_after_first_s', float('nan')):.2f}s after the first)")
            if r.get("outside_by_trial_s"):
                line += f" ({', '.join(f'{o:.2f}' for o in r['outside_by_trial_s'])} in start order)"
        print(line)
    with open(out / "anytime.csv", "w") as f:
        f.write("approach,t_s,trial,epoch,val_loss,best_val_loss\n")
        for a, r in recs.items():
            best = float("inf")
            for e in sorted(r["events"], key=lambda e: e["t"]):
                best = min(best, e["val_loss"])
                f.write(f"{a},{e['t']:.2f},{e['trial']},{e['epoch']},{e['val_loss']:.5f},{best:.5f}\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        for a, c in curves.items():
            ax.step([0] + [s for s, _ in c] + [recs[a]["wall_s"]], [c[0][1]] + [b for _, b in c] + [c[-1][1]],
                    where="post", label=f"{a} (ends {recs[a]['wall_s']:.0f} s)")
        ax.set_xlabel("wall time since the command's start (s)")
        ax.set_ylabel("best val_loss so far")
        ax.set_title(f"anytime: best val_loss vs wall time (concurrency {concurrency})")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "anytime.png", dpi=100)
    except ImportError:
        print("(matplotlib not installed: no figure)")
    if {"loop", "ray_noasha"} <= recs.keys():
        print(f"target ray_noasha wall / loop wall <= 1.0: {recs['ray_noasha']['wall_s'] / loop_wall:.2f}")
    if {"loop", "ray_asha"} <= recs.keys():
        print(f"target ray_asha time to the loop's final best / loop wall <= 0.6: "
              f"{first_reach(curves['ray_asha'], loop_best) / loop_wall:.2f}")
    if {"optuna", "ray_asha"} <= recs.keys():
        print(f"target ray_asha wall / optuna wall <= 1.1: {recs['ray_asha']['wall_s'] / recs['optuna']['wall_s']:.2f}")
    return {a: r["wall_s"] for a, r in recs.items()}


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    only = [a.strip() for a in args.only.split(",") if a.strip()]
    if set(only) - set(APPROACHES):
        raise SystemExit(f"--only: unknown {sorted(set(only) - set(APPROACHES))}; known: {', '.join(APPROACHES)}")
    space = load_space(args.space)
    fixed = {**space.fixed, **parse_set(args.set), "data": args.data, "classes": args.classes, "epochs": args.epochs}
    cfg = make_config(fixed)  # bad settings fail here, before anything is timed
    sweep = space.sweep or {}
    grace = min(int(sweep.get("grace_period", 1)), args.epochs)
    rf = float(sweep.get("reduction_factor", 2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    print(f"settings: trials={args.trials} epochs={args.epochs} classes={args.classes} space={args.space} "
          f"concurrency={args.concurrency} seed={args.seed} pruning: grace={grace} reduction_factor={rf:g}", flush=True)
    from study.datasets import load_splits
    load_splits(cfg)  # decode into the cache once, untimed: every approach then reads the cache
    for a in only:
        print(f"[{a}] start (load {os.getloadavg()[0]:.2f})", flush=True)
        cpu, t0 = CpuUse(), time.time()
        with tempfile.TemporaryDirectory(prefix="regstudy-peers-") as tmp:
            if a == "loop":
                rec = run_loop(args, fixed, space, t0)
            elif a == "optuna":
                rec = run_optuna(args, fixed, space, t0, grace, rf)
            else:
                rec = run_sweep(args, a == "ray_asha", t0, Path(tmp))
            rec.update(wall_s=time.time() - t0, cpu_use=cpu.stop(), load_end=os.getloadavg()[0])
        print(f"[{a}] wall {rec['wall_s']:.1f}s, {rec['trials']} trials, {len(rec['events'])} epochs, "
              f"cpu {rec['cpu_use']:.0%}", flush=True)
        (out / f"{a}.json").write_text(json.dumps(rec, indent=1, default=str))
    walls = report(out, args.concurrency)
    print("peers wall_s " + " ".join(f"{a}={fmt(walls.get(a, float('nan')))}" for a in APPROACHES), flush=True)
    return walls


if __name__ == "__main__":
    sys.exit(main() and 0)
