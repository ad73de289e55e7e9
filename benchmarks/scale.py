"""How the sweep's fixed costs grow with the number of trials: sweeps of N very small trials.

    python -m benchmarks.scale [--trials 100,300,1000] [--epochs 5] [--concurrency CPUs]
        [--space pos_l2] [--sentences 2400] [--seed 0] [--table-refresh-s 30] [--out DIR]
        [--set key=value ...] [--run-arg="--flag value" ...]

For each N: one ``python -m study.run`` process (a subprocess, exactly as a user runs it: a fresh
local Ray cluster with its dashboard, TPE in an Optuna study in SQLite, ASHA, the trials'
checkpoints as the command's defaults say, the trial table) with ``--space pos_l2
--num-samples N --max-epochs E --max-concurrent C --quiet --table-refresh-s T`` and a
generated tagging corpus. The trials are tiny so that what
grows with N is the sweep's own work, not training: POS tagging with the vanilla RNN (hidden 16,
embeddings 16, batches of 16 sentences) on ``--sentences`` generated treebank sentences
(tests/posgen.py, written once to DIR/data/nltk_data): about 0.2 s of training per epoch on one
core, about 1 s per 5-epoch trial. TPE searches lr and the L2 strength (the space's); ASHA stops
trials at epochs 2 and 4 (grace period 2, reduction factor 2). ``--set`` overrides or adds fixed
settings (after the defaults above); each ``--run-arg`` string is split like a shell line and
appended to the command (e.g. ``--run-arg="--keep-checkpoints 1"``; note the ``=``).
The experiment goes to DIR/results/scale_N (removed first if there), the driver's output to
DIR/scale_N.log.

Figures per N (DIR/scale_N.json, all N in DIR/scale.csv):

* ``wall_s``: the study.run command, process start to exit;
* ``training_s``: the sum over the search trials' epoch rows of ``epoch_time_s`` in the
  experiment's trial table (trials.parquet): the time the trials spent in their training epochs
  (each epoch's training pass, as the training loop measures it);
* ``overhead_per_trial_s`` = (wall_s x C - training_s) / N: the CPU-slot seconds (C trial slots
  for the whole wall time) not spent in training epochs, per trial. It charges each trial its
  share of everything else: Ray's and Optuna's start-up, actor starts, per-epoch evaluation,
  checkpoints and reports, the table refreshes, idle slots while the driver works, the end;
* ``overhead_plain_per_trial_s`` = (wall_s - training_s / C) / N: wall time not explained by the
  training spread perfectly over C slots, per trial (= overhead_per_trial_s / C);
* ``checkpoint_s``: the sum of the trial table's ``checkpoint_time_s`` (the trials' checkpoint
  writes), where the table has that column (else empty); part of the overhead above;
* ``driver_rss_mb``: the peak RSS (VmHWM) of the study.run process alone, read from
  /proc/PID/status every ``--poll-s`` seconds until it exits (the last reading is the peak, less
  any growth in its last interval). Not ``getrusage(RUSAGE_CHILDREN)``: Ray's processes (GCS,
  raylet, dashboard; the trial workers under the raylet) are the driver's descendants, and a
  child's ru_maxrss is the largest of its own peak and those of the descendants it reaped
  (processes forked by the driver start with its RSS). ``wait4_maxrss_mb`` (wait4's figure for
  the driver) is kept beside it to show the difference: it came out ~10% higher in the runs
  checked, where the driver's own VmHWM read at its exit agreed with the polled one;
* ``disk_mb``: the experiment directory's apparent size (``du -sb``: files and directories,
  hard links once), in MB (10^6 bytes); ``checkpoints_max``/``checkpoints_mean``: checkpoint
  directories per search trial directory;
* ``table_refresh_s``: ``study.sweep.refresh_table`` on the finished experiment, in a fresh
  Python process (imports not timed), best of 3 (all three kept); ``table_refresh_s_last``:
  experiment.json's value of that name, where the driver records it (else empty);
* ``trial_outside_epochs_mean_s`` (and median): per trial, the time inside the trainable but
  outside its epochs (set-up before the first epoch, checkpoints, the reports' turn-around), from
  the trials' own ``trial_started_at``/``reported_at`` stamps; ``report_turnaround_median_s``:
  from a ``tune.report`` call to the next epoch's start;
* ``optuna_trials``: trials in the experiment's Optuna study (``optuna.load_study`` on its
  optuna.db; must equal N); ``db_locked``: lines of the driver's output that say
  "database is locked".

Then how each figure grew from the smallest N to the largest (ratio), and one line:
``scale N=a/b/c wall_s=... overhead_per_trial_s=... table_refresh_s=... driver_rss_mb=... disk_mb=...``
(one value per N, in order). A trial's own epochs run at 1 thread (CPUs / C threads each, the
thread rule of study.resources); on a shared machine training_s follows other users' load.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from study.config import ConfigError, make_config, parse_set
from study.spaces import load_space

from .common import REPO, fmt, machine

# The tiny trial: a vanilla RNN this small trains ~2400 generated sentences in ~0.2 s an epoch
# on one core, so that a 5-epoch trial trains ~1 s and the sweep's own costs dominate.
TINY = ("hidden=16", "embed_dim=16", "batch_size=16")
SUMMARY = ("wall_s", "overhead_per_trial_s", "table_refresh_s", "driver_rss_mb", "disk_mb")
COLUMNS = ("n", "wall_s", "training_s", "training_per_trial_s", "epochs", "checkpoint_s", "overhead_per_trial_s",
           "overhead_plain_per_trial_s", "driver_rss_mb", "wait4_maxrss_mb", "disk_mb", "checkpoints_max",
           "checkpoints_mean", "table_refresh_s", "table_refresh_s_last", "optuna_trials", "table_trials",
           "db_locked", "rc", "load_start", "load_end")
LOCKED = "database is locked"

REFRESH = """
import json, sys, time
from pathlib import Path
from study.sweep import SweepSettings, refresh_table
results, name, n, repeats = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = SweepSettings(name=name, results_dir=results, num_samples=n)
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    refresh_table(s)
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def parser() -> argparse.ArgumentParser:
    from study.run import parser as run_parser

    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", default="100,300,1000", help="comma-separated trial counts N, one sweep each")
    p.add_argument("--epochs", type=int, default=5, help="epochs per trial (--max-epochs)")
    p.add_argument("--concurrency", type=int, default=os.cpu_count() or 1, help="--max-concurrent (default: CPUs)")
    p.add_argument("--space", default="pos_l2", help="search space (a pos space: the data is a tagging corpus)")
    p.add_argument("--sentences", type=int, default=2400, help="sentences of the generated corpus")
    p.add_argument("--seed", type=int, default=0, help="TPE sampler seed")
    p.add_argument("--table-refresh-s", type=float, default=run_parser().get_default("table_refresh_s"),
                   help="study.run's --table-refresh-s (default: the command's)")
    p.add_argument("--poll-s", type=float, default=0.1, help="how often the driver's VmHWM is read")
    p.add_argument("--refresh-repeats", type=int, default=3)
    p.add_argument("--out", default=str(REPO / "results" / "scale"), help="data, experiments, records (not in git)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fixed setting for every trial (after the tiny defaults: " + ", ".join(TINY) + ")")
    p.add_argument("--run-arg", action="append", default=[], metavar="ARGS",
                   help='more arguments for study.run, split like a shell line: --run-arg="--keep-checkpoints 1"')
    return p


def trial_counts(text: str) -> list[int]:
    try:
        ns = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--trials {text!r}: expected comma-separated integers >= 1, e.g. 100,300,1000") from None
    if not ns or min(ns) < 1:
        raise SystemExit(f"--trials {text!r}: expected comma-separated integers >= 1, e.g. 100,300,1000")
    return ns


def make_corpus(out: Path, sentences: int) -> Path:
    """The generated treebank (NLTK's layout), written once per sentence count."""
    import importlib.util

    # (the tests' generator: tests/ is not a package, and on sys.path its modules would shadow others)
    spec = importlib.util.spec_from_file_location("posgen", REPO / "tests" / "posgen.py")
    posgen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(posgen)
    root = out / "data" / "nltk_data"
    stamp = root / "sentences.txt"
    if not (stamp.exists() and stamp.read_text().strip() == str(sentences)):
        shutil.rmtree(root, ignore_errors=True)
        posgen.make_nltk_data(root, "treebank", n=sentences, seed=0)
        stamp.write_text(f"{sentences}\n")
    return root


# --- one sweep ----------------------------------------------------------------------------------

def watch_hwm(pid: int, every_s: float, out: dict, stop: threading.Event) -> None:
    """The process's VmHWM (peak RSS, kB) as last read, until stop is set or it is gone."""
    path = f"/proc/{pid}/status"
    while not stop.is_set():
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        out["hwm_kb"] = max(out.get("hwm_kb", 0), int(line.split()[1]))
                        break
        except (FileNotFoundError, ProcessLookupError):
            return
        stop.wait(every_s)


def run_driver(cmd: list[str], log: Path, poll_s: float) -> dict:
    """Run study.run; its wall time, exit code, polled peak RSS and wait4's maxrss."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    hwm: dict = {}
    stop = threading.Event()
    with open(log, "w") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        watcher = threading.Thread(target=watch_hwm, args=(p.pid, poll_s, hwm, stop), daemon=True)
        watcher.start()
        # wait4 on this one child: its own rusage (plus its reaped descendants'), not that of
        # every child this benchmark ever reaped (RUSAGE_CHILDREN)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        watcher.join()
    return {"wall_s": wall, "rc": p.returncode, "driver_rss_mb": hwm.get("hwm_kb", 0) * 1024 / 1e6,
            "wait4_maxrss_mb": usage.ru_maxrss * 1024 / 1e6}


def disk_bytes(root: Path) -> int:
    """``du -sb``: apparent sizes of files, directories and links, each inode once."""
    seen, total = set(), 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [None, *filenames, *dirnames]:
            path = dirpath if name is None else os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if name is not None and os.path.isdir(path) and not os.path.islink(path):
                continue  # (counted as its own dirpath)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def checkpoint_counts(exp: Path) -> list[int]:
    return [sum(1 for c in d.iterdir() if c.is_dir() and c.name.startswith("checkpoint_"))
            for d in sorted((exp / "ray" / "search").glob("trial_*")) if d.is_dir()]


def time_refresh(results: Path, name: str, n: int, repeats: int) -> list[float]:
    out = subprocess.run([sys.executable, "-c", REFRESH, str(results), name, str(n), str(repeats)],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"refresh_table on {results / name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def trial_times(exp: Path) -> dict:
    """From the trials' own reports (result.json: ``trial_started_at``, ``reported_at``, the
    epoch's ``epoch_time_s`` and ``checkpoint_time_s``): per trial, the seconds inside the
    trainable but outside its epochs (start-up before the first epoch, checkpoints, reports), and
    per report the seconds from ``tune.report`` to the next epoch's start (the driver's turn-around).
    Medians and means; empty where the reports lack those fields."""
    import statistics

    from study.trial_table import read_trial_rows

    outside, reports, startup = [], [], []
    for d in sorted((exp / "ray" / "search").glob("trial_*")):
        rows = [r for r in read_trial_rows(d) if "reported_at" in r]
        if not rows:
            continue
        starts = [r["reported_at"] - r["epoch_time_s"] - r.get("checkpoint_time_s", 0.0) for r in rows]
        startup.append(starts[0] - rows[0]["trial_started_at"])
        reports += [s - r["reported_at"] for r, s in zip(rows, starts[1:])]
        outside.append(rows[-1]["reported_at"] - rows[0]["trial_started_at"]
                       - sum(r["epoch_time_s"] for r in rows))
    if not outside:
        return {}
    return {"trial_outside_epochs_mean_s": statistics.fmean(outside),
            "trial_outside_epochs_median_s": statistics.median(outside),
            "trial_startup_median_s": statistics.median(startup),
            "report_turnaround_median_s": statistics.median(reports) if reports else None}


def optuna_trials(exp: Path, study: str) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return len(optuna.load_study(study_name=study, storage=f"sqlite:///{exp / 'optuna.db'}").trials)


def run_one(args, n: int, nltk: Path, out: Path) -> dict:
    import pandas as pd

    name, results = f"scale_{n}", out / "results"
    exp = results / name
    shutil.rmtree(exp, ignore_errors=True)
    results.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "study.run", "--space", args.space, "--nltk-data", str(nltk),
           "--max-epochs", str(args.epochs), "--num-samples", str(n), "--seed", str(args.seed),
           "--max-concurrent", str(args.concurrency), "--name", name, "--results-dir", str(results),
           "--quiet", "--table-refresh-s", f"{args.table_refresh_s:g}"]
    for item in (*TINY, *args.set):
        cmd += ["--set", item]
    for extra in args.run_arg:
        cmd += shlex.split(extra)
    print(f"[N={n}] python {shlex.join(cmd[1:])}", flush=True)
    log = out / f"{name}.log"
    rec: dict = {"n": n, "command": cmd[1:], "load_start": os.getloadavg()[0]}
    rec.update(run_driver(cmd, log, args.poll_s))
    rec["load_end"] = os.getloadavg()[0]
    text = log.read_text(errors="replace")
    rec["db_locked"] = sum(LOCKED in line for line in text.splitlines())
    if rec["rc"] != 0:
        (out / f"{name}.json").write_text(json.dumps(rec, indent=1))
        raise SystemExit(f"study.run exited {rec['rc']} for N={n}; see {log}:\n{text[-1500:]}")
    table = pd.read_parquet(exp / "trials.parquet")
    search = table[table["phase"] == "search"]
    c = args.concurrency
    rec["training_s"] = float(search["epoch_time_s"].sum())
    rec["table_trials"] = int(search["trial_id"].nunique())
    rec["epochs"] = int(len(search))
    rec["training_per_trial_s"] = rec["training_s"] / n
    # (where the trainable records it: the epochs' checkpoint writes, part of the overhead)
    rec["checkpoint_s"] = float(search["checkpoint_time_s"].sum()) if "checkpoint_time_s" in search else None
    rec["statuses"] = {str(k): int(v) for k, v in search.groupby("trial_id")["status"].last().value_counts().items()}
    rec["overhead_per_trial_s"] = (rec["wall_s"] * c - rec["training_s"]) / n
    rec["overhead_plain_per_trial_s"] = (rec["wall_s"] - rec["training_s"] / c) / n
    rec["disk_mb"] = disk_bytes(exp) / 1e6
    ckpts = checkpoint_counts(exp)
    rec["checkpoints_max"] = max(ckpts, default=0)
    rec["checkpoints_mean"] = sum(ckpts) / len(ckpts) if ckpts else 0.0
    rec.update(trial_times(exp))
    meta = json.loads((exp / "experiment.json").read_text())
    rec["table_refresh_s_last"] = meta.get("table_refresh_s_last")
    rec["optuna_trials"] = optuna_trials(exp, meta.get("optuna_study") or name)
    rec["table_refresh_all_s"] = time_refresh(results, name, n, args.refresh_repeats)
    rec["table_refresh_s"] = min(rec["table_refresh_all_s"])
    (out / f"{name}.json").write_text(json.dumps(rec, indent=1))
    last, ck = rec["table_refresh_s_last"], rec["checkpoint_s"]
    print(f"[N={n}] wall {rec['wall_s']:.1f}s, training {rec['training_s']:.1f}s "
          f"({rec['training_per_trial_s']:.2f}s/trial, {rec['epochs']} epochs, {rec['statuses']}), "
          f"overhead/trial {rec['overhead_per_trial_s']:.2f}s (plain {rec['overhead_plain_per_trial_s']:.2f}s), "
          f"driver RSS {rec['driver_rss_mb']:.0f} MB (wait4 {rec['wait4_maxrss_mb']:.0f}), "
          f"checkpoint writes {'n/a' if ck is None else f'{ck:.1f}s'}, "
          f"disk {rec['disk_mb']:.1f} MB, checkpoints/trial max {rec['checkpoints_max']} "
          f"mean {rec['checkpoints_mean']:.2f}, table refresh {rec['table_refresh_s']:.3f}s "
          f"(last in run: {'n/a' if last is None else f'{last:.3f}s'}), optuna trials {rec['optuna_trials']}"
          f"{'' if rec['optuna_trials'] == n else f' != N={n}'}, '{LOCKED}' x{rec['db_locked']}, "
          f"load {rec['load_start']:.2f}->{rec['load_end']:.2f}", flush=True)
    if "trial_outside_epochs_mean_s" in rec:
        print(f"[N={n}] per trial outside its epochs {rec['trial_outside_epochs_mean_s']:.3f}s mean "
              f"({rec['trial_outside_epochs_median_s']:.3f}s median; start-up {rec['trial_startup_median_s']:.3f}s), "
              f"report turn-around {rec['report_turnaround_median_s']:.3f}s median", flush=True)
    return rec


# --- the report ---------------------------------------------------------------------------------

def report(recs: list[dict], out: Path) -> None:
    with open(out / "scale.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in recs:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    cols = ("wall_s", "training_s", "overhead_per_trial_s", "overhead_plain_per_trial_s", "checkpoint_s",
            "driver_rss_mb", "disk_mb", "checkpoints_mean", "table_refresh_s", "table_refresh_s_last",
            "optuna_trials", "db_locked")
    print(f"{'N':>6s} " + " ".join(f"{c:>{max(len(c), 8)}s}" for c in cols))
    for r in recs:
        print(f"{r['n']:6d} " + " ".join(f"{_cell(r.get(c)):>{max(len(c), 8)}s}" for c in cols))
    if len(recs) > 1:
        a, b = recs[0], recs[-1]
        grow = [f"{c} x{b[c] / a[c]:.2f}" if a[c] else f"{c} {a[c]:g}->{b[c]:g}"
                for c in cols[:-2] if a.get(c) is not None and b.get(c) is not None]
        print(f"growth N={a['n']}->{b['n']} (x{b['n'] / a['n']:.2f}): {', '.join(grow)}")


def _cell(v) -> str:
    return "n/a" if v is None else fmt(float(v))


def main(argv: list[str] | None = None) -> list[dict]:
    args = parser().parse_args(argv)
    ns = trial_counts(args.trials)
    if args.concurrency < 1:
        raise SystemExit(f"--concurrency {args.concurrency}: expected an integer >= 1")
    out = Path(args.out).resolve()
    try:  # bad settings fail here, before anything is written or timed
        space = load_space(args.space)
        fixed = {**space.fixed, **parse_set([*TINY, *args.set]), "epochs": args.epochs}
        make_config({**fixed, "nltk_data": str(out / "data" / "nltk_data")})
    except ConfigError as e:  # (SpaceError is one)
        raise SystemExit(f"error: {e}") from None
    out.mkdir(parents=True, exist_ok=True)
    nltk = make_corpus(out, args.sentences)
    print(f"machine: {machine()}")
    print(f"settings: trials={','.join(map(str, ns))} epochs={args.epochs} concurrency={args.concurrency} "
          f"space={args.space} sentences={args.sentences} seed={args.seed} table_refresh_s={args.table_refresh_s:g} "
          f"set={','.join([*TINY, *args.set])} run_args={args.run_arg or '-'}", flush=True)
    recs = [run_one(args, n, nltk, out) for n in ns]
    report(recs, out)
    print("scale N=" + "/".join(str(r["n"]) for r in recs) + " "
          + " ".join(f"{c}=" + "/".join(fmt(r[c]) for r in recs) for c in SUMMARY), flush=True)
    return recs


if __name__ == "__main__":
    sys.exit(main() and 0)
