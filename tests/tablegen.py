"""Generate a realistic fake experiment directory in the regstudy results layout (never real runs).

    make_experiment(path) -> path/{trials.parquet, trials.csv, summary.csv, experiment.json, optuna.db}

Search phase: ``n_search`` trials per regularizer with sampled strengths, ASHA-style early stops at
the rungs (grace 2, reduction 3), one errored and one diverged trial. Confirm phase: the best
search config of each regularizer re-run with ``seeds``. The curves come from a simple model in
which regularization lowers the generalization gap and too much of it underfits, with seed noise,
so "augment lowers val loss most" holds and the strength-vs-gap plots have shape.

Run as a script to write one for the notebooks: ``python tests/tablegen.py results/example``.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from study import tasks
from study.trial_table import dataset_of

REGULARIZERS = ("none", "l2", "dropout", "augment", "l2_dropout")
PARAM_COLUMNS = ("lr", "l2", "dropout", "flip_lr_p", "flip_ud_p", "brightness", "contrast_lo",
                 "contrast_hi", "saturation_lo", "saturation_hi", "word_dropout")
SEARCHED = {
    "none": ["lr"],
    "l2": ["lr", "l2"],
    "dropout": ["lr", "dropout"],
    "augment": ["lr", "flip_lr_p", "brightness"],
    "l2_dropout": ["lr", "l2", "dropout"],
}
GRACE, REDUCTION = 2, 3


def _sample_params(reg: str, rng: np.random.Generator) -> dict[str, float]:
    p = {"lr": float(10 ** rng.uniform(-3.7, -2.7))}
    if reg in ("l2", "l2_dropout"):
        p["l2"] = float(10 ** rng.uniform(-6, -2))
    if reg in ("dropout", "l2_dropout"):
        p["dropout"] = float(rng.uniform(0.0, 0.6))
    if reg == "augment":
        p["flip_lr_p"] = float(rng.uniform(0.0, 1.0))
        p["brightness"] = float(rng.uniform(0.0, 0.5))
    return p


def _strength(reg: str, p: dict[str, float]) -> tuple[float, float]:
    """(regularization amount r in ~[0, 1.2], extra training-loss noise from dropout/augment)."""
    r, extra = 0.0, 0.0
    if "l2" in p:
        r += 0.7 * (math.log10(p["l2"]) + 6) / 4
    if "dropout" in p:
        r += 0.8 * p["dropout"] / 0.6
        extra += 0.8 * p["dropout"]
    if reg == "augment":
        a = 0.5 * p["flip_lr_p"] + 2.0 * p["brightness"]
        r += 0.9 * min(a, 1.5) / 1.5
        extra += 0.15 * a
    return r, extra


def _curves(reg: str, p: dict[str, float], epochs: int, seed: int, rng: np.random.Generator) -> pd.DataFrame:
    r, extra = _strength(reg, p)
    lr_pen = 0.25 * abs(math.log10(p["lr"]) + 3.2)  # best lr ~6e-4
    floor = 0.35 + 0.9 * max(r - 0.5, 0.0) ** 2 + lr_pen + rng.normal(0, 0.02)
    bonus = {"augment": 0.35, "l2": 0.1, "dropout": 0.05, "l2_dropout": 0.15}.get(reg, 0.0) * min(r / 0.5, 1.0)
    gmax = max(1.6 * (1.0 - 0.75 * min(r, 1.0)) - bonus, 0.05) + rng.normal(0, 0.03)
    init = math.log(25)
    e = np.arange(1, epochs + 1)
    clean = floor + (init - floor) * np.exp(-e / 4.0) + rng.normal(0, 0.01, e.size)
    gap = gmax * (1 - np.exp(-e / 6.0)) + rng.normal(0, 0.015, e.size)
    val = clean + gap
    train = clean + extra * (1 - 0.3 * np.exp(-e / 3.0)) + rng.normal(0, 0.01, e.size)

    def acc(loss):
        return np.clip(0.04 + 0.93 * np.exp(-0.55 * loss), 0, 1)

    l2 = p.get("l2", 0.0)
    df = pd.DataFrame({
        "epoch": e, "train_loss": train, "train_acc": acc(train), "train_clean_loss": clean,
        "train_clean_acc": acc(clean), "val_loss": val, "val_acc": acc(val),
        "learning_rate": p["lr"], "l2_term": l2 * 4e4 * np.exp(-e / 20.0),
        "epoch_time_s": 3.0 + rng.normal(0, 0.1, e.size) + (1.0 if reg == "augment" else 0.0),
    })
    df["gap_loss"] = df["val_loss"] - df["train_clean_loss"]
    df["gap_acc"] = df["train_clean_acc"] - df["val_acc"]
    df["samples_per_s"] = 2500 / df["epoch_time_s"]
    return df


def _rows(name: str, phase: str, tid: str, reg: str, p: dict[str, float], seed: int, epochs: int,
          curves: pd.DataFrame, status: str, task: str, dataset: str, model: str) -> pd.DataFrame:
    df = curves.copy()
    for k, v in {"experiment": name, "phase": phase, "trial_id": tid, "task": task, "dataset": dataset,
                 "model": model, "regularizer": reg, "seed": seed, "max_epochs": epochs, "status": status}.items():
        df[k] = v
    for c in PARAM_COLUMNS:
        df[c] = p.get(c, np.nan)
    cfg = {"task": task, tasks.get(task).dataset_key: dataset, "model": model, "regularizer": reg, "seed": seed,
           "epochs": epochs, **p}
    df["config"] = json.dumps(cfg, sort_keys=True)
    df["searched"] = json.dumps(SEARCHED[reg])
    df["test_loss"] = np.nan
    df["test_acc"] = np.nan
    if status == "completed" and len(df) == epochs:
        last = df.index[-1]
        df.loc[last, "test_loss"] = df.loc[last, "val_loss"] + 0.02
        df.loc[last, "test_acc"] = df.loc[last, "val_acc"] - 0.005
    return df


def make_trials(name: str = "fixture", *, regularizers=REGULARIZERS, n_search: int | dict = 4,
                seeds=(0, 1, 2), max_epochs: int = 12, task: str = "image", model: str = "alexnet",
                dataset: str | None = None, confirm: bool = True, failures: bool = True,
                seed: int = 0) -> tuple[pd.DataFrame, list[dict]]:
    """(trial table, search trial records for the Optuna study). ``dataset``: the image dataset
    or corpus (None: the task's default)."""
    dataset = dataset or dataset_of(task, None)
    rng = np.random.default_rng(seed)
    frames, search_trials = [], []
    k = 0
    for reg in regularizers:
        n = n_search[reg] if isinstance(n_search, dict) else n_search
        for _ in range(n):
            p = _sample_params(reg, rng)
            c = _curves(reg, p, max_epochs, 0, rng)
            search_trials.append({"tid": f"{name}_{k:05d}", "reg": reg, "params": p, "curves": c})
            k += 1
    # one errored (after 1 epoch) and one diverged (NaN at epoch 3) trial: the last two
    failed = set(range(len(search_trials))[-2:]) if failures and len(search_trials) >= 3 else set()
    # ASHA-like: at each rung keep the best 1/REDUCTION (of all trials) going, stop the others
    alive = [i for i in range(len(search_trials)) if i not in failed]
    stop_at = {i: max_epochs for i in alive}
    rung = GRACE
    while rung < max_epochs and len(alive) > 1:
        vals = [search_trials[i]["curves"]["val_loss"].iloc[rung - 1] for i in alive]
        keep_n = max(1, int(math.ceil(len(alive) / REDUCTION)))
        order = [alive[j] for j in np.argsort(vals)]
        for i in order[keep_n:]:
            stop_at[i] = rung
        alive = order[:keep_n]
        rung *= REDUCTION
    # at least one full-budget trial per regularizer (in Ray, trials above the rung cut finish)
    for reg in regularizers:
        idx = [i for i, t in enumerate(search_trials) if t["reg"] == reg and i not in failed]
        if idx and all(stop_at[i] < max_epochs for i in idx):
            stop_at[idx[0]] = max_epochs
    for i, t in enumerate(search_trials):
        if i in failed:
            continue
        ep = stop_at[i]
        t["status"] = "completed" if ep >= max_epochs else "stopped"
        t["curves"] = t["curves"].iloc[:ep]
    for j, i in enumerate(sorted(failed)):
        t = search_trials[i]
        if j == 0:
            dc = t["curves"].iloc[:3].copy()
            dc.loc[dc.index[-1], ["train_loss", "val_loss", "gap_loss"]] = np.nan
            t["status"], t["curves"] = "diverged", dc
        else:
            t["status"], t["curves"] = "errored", t["curves"].iloc[:1]
    for t in search_trials:
        frames.append(_rows(name, "search", t["tid"], t["reg"], t["params"], 0, max_epochs, t["curves"],
                            t["status"], task, dataset, model))
        fin = t["curves"]["val_loss"].iloc[-1]
        t["value"] = float(fin) if np.isfinite(fin) else None
    if confirm:
        for reg in regularizers:
            cand = [t for t in search_trials if t["reg"] == reg and t["status"] == "completed"]
            if not cand:
                continue
            best = min(cand, key=lambda t: t["curves"]["val_loss"].iloc[-1])
            for s in seeds:
                c = _curves(reg, best["params"], max_epochs, s, np.random.default_rng(1000 * seed + 17 * s + len(reg)))
                frames.append(_rows(name, "confirm", f"{name}_confirm_{reg}_s{s}", reg, best["params"], s,
                                    max_epochs, c, "completed", task, dataset, model))
    df = pd.concat(frames, ignore_index=True)
    front = ["experiment", "phase", "trial_id", "task", "dataset", "model", "regularizer", "seed", *PARAM_COLUMNS,
             "max_epochs", "epoch"]
    rest = [c for c in df.columns if c not in front]
    return df[front + rest], search_trials


def _optuna_study(path: Path, name: str, search_trials: list[dict], regularizers) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {"regularizer": CategoricalDistribution(list(regularizers)),
             "lr": FloatDistribution(1e-4, 1e-2, log=True), "l2": FloatDistribution(1e-6, 1e-2, log=True),
             "dropout": FloatDistribution(0.0, 0.6), "flip_lr_p": FloatDistribution(0.0, 1.0),
             "brightness": FloatDistribution(0.0, 0.5)}
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{path}", direction="minimize",
                                load_if_exists=True)
    trials = []
    for t in search_trials:
        params = {"regularizer": t["reg"], **t["params"]}
        ok = t["value"] is not None and t["status"] != "errored"
        trials.append(optuna.trial.create_trial(
            params=params, distributions={k: dists[k] for k in params},
            value=t["value"] if ok else None,
            state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL,
            user_attrs={"trial_id": t["tid"], "status": t["status"]}))
    study.add_trials(trials)


def make_experiment(path: str | Path, *, name: str | None = None, optuna_db: bool = True, **kw) -> Path:
    """Write a fake experiment directory; keyword arguments go to :func:`make_trials`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    name = name or path.name
    df, search_trials = make_trials(name, **kw)
    df.to_parquet(path / "trials.parquet", index=False)
    df.to_csv(path / "trials.csv", index=False)
    summ = df.sort_values("epoch").groupby("trial_id", sort=False).tail(1)
    summ.to_csv(path / "summary.csv", index=False)
    regs = list(kw.get("regularizers", REGULARIZERS))
    task = kw.get("task", "image")
    n_search = kw.get("n_search", 4)
    budget = {r: (n_search[r] if isinstance(n_search, dict) else n_search) for r in regs}
    exp = {
        "name": name, "space": "fixture", "command": f"python -m study.run --space fixture --name {name}",
        "fixed": {"task": task, tasks.get(task).dataset_key: kw.get("dataset") or dataset_of(task, None),
                  "model": kw.get("model", "alexnet"), "classes": 25,
                  "batch_size": 128, "optimizer": "adam", "data": "tiny-imagenet-25 (fake)"},
        "search": {"num_samples": int(sum(budget.values())), "scheduler": "ASHA", "grace_period": GRACE,
                   "reduction_factor": REDUCTION, "max_t": kw.get("max_epochs", 12), "metric": "val_loss",
                   "mode": "min", "searcher": "optuna"},
        "confirm": {"seeds": list(kw.get("seeds", (0, 1, 2)))} if kw.get("confirm", True) else {},
        "budget_per_regularizer": budget,
        "start_time": "2025-01-01T00:00:00+00:00", "end_time": "2025-01-01T01:02:03+00:00",
        "wall_time_s": 3723.0,
        "hardware": {"cpu_count": 16, "gpus": ["NVIDIA H100 80GB HBM3"]},
        "versions": {"python": sys.version.split()[0], "regstudy": "0.1.0"},
        "optuna_study": name,
    }
    (path / "experiment.json").write_text(json.dumps(exp, indent=2))
    if optuna_db:
        db = path / "optuna.db"
        if db.exists():
            db.unlink()
        _optuna_study(db, name, search_trials, regs)
    return path


if __name__ == "__main__":
    out = make_experiment(sys.argv[1] if len(sys.argv) > 1 else "results/example")
    print(out)
