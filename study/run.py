"""The sweep command: ``python -m study.run --space l2_dropout``.

Exit codes: 0 done, 2 bad input (one line on stderr; nothing started, nothing overwritten).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .config import ConfigError, make_config, parse_set
from .errors import USER_ERRORS
from .spaces import describe_all, load_space, validate_space


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.run", description="Run a regularization sweep.")
    p.add_argument("--space", default="l2_dropout", help="search space name (see --list-spaces) or a YAML path")
    p.add_argument("--list-spaces", action="store_true", help="print the spaces and exit")
    p.add_argument("--name", help="experiment name (default: the space name)")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--data", help="Tiny ImageNet directory or zip")
    p.add_argument("--nltk-data", help="NLTK data directory (pos spaces)")
    p.add_argument("--classes", type=int)
    p.add_argument("--max-epochs", type=int, help="epoch budget per trial (ASHA's max_t)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a fixed setting")
    p.add_argument("--num-samples", type=int, help="trials to run (default: the space's)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as resources allow)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, help="fractions pack trials onto a GPU (default 1 if GPUs exist)")
    p.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial can be stopped")
    p.add_argument("--reduction-factor", type=float, help="ASHA: keep 1/factor at each rung")
    p.add_argument("--seed", type=int, help="TPE sampler seed (default: the space's, else 0)")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial from its checkpoint")
    p.add_argument("--optuna-storage", help="SQLAlchemy URL (default: sqlite in the experiment dir)")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. 10.0.0.1:6379 or auto)")
    p.add_argument("--dashboard-host", default="127.0.0.1",
                   help="where the Ray dashboard listens (it accepts job submissions: keep it local)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local cluster (default: all)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment of this --name")
    p.add_argument("--confirm-seeds", type=int, default=0, help="after the search, re-run the best config "
                   "per regularizer with this many seeds (0: skip)")
    p.add_argument("--confirm-only", action="store_true", help="only the confirmation phase, on an existing experiment")
    p.add_argument("--confirm-top-k", type=int, default=1)
    return p


def cfg_data_missing(fixed: dict) -> bool:
    return bool(fixed.get("data")) and not Path(str(fixed["data"])).expanduser().exists()


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.list_spaces:
        for name, desc in describe_all():
            print(f"{name:16s} {desc}")
        return 0
    try:
        space = load_space(args.space)
        overrides = parse_set(args.set)
        for key, value in (("data", args.data), ("nltk_data", args.nltk_data), ("classes", args.classes),
                           ("epochs", args.max_epochs)):
            if value is not None:
                overrides[key] = value
        space.fixed = {**space.fixed, **overrides}
        validate_space(space)
        for key in ("num_samples", "grace_period", "max_concurrent", "confirm_seeds", "confirm_top_k"):
            v = getattr(args, key, None)
            if v is not None and v < (0 if key == "confirm_seeds" else 1):
                raise ConfigError(f"--{key.replace('_', '-')}: {v} is out of range; allowed: >= 1")
        if args.reduction_factor is not None and args.reduction_factor <= 1:
            raise ConfigError(f"--reduction-factor: {args.reduction_factor} is out of range; allowed: > 1")
        if args.cpus_per_trial <= 0 or (args.gpus_per_trial is not None and args.gpus_per_trial < 0):
            raise ConfigError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    except ConfigError as e:
        return _fail(str(e))
    name = args.name or space.name
    exp_dir = (args.results_dir / name).resolve()
    existing = (exp_dir / "experiment.json").exists()
    if args.confirm_only or args.resume:
        if not existing:
            return _fail(f"no experiment {name!r} in {args.results_dir} to "
                         f"{'confirm' if args.confirm_only else 'resume'}")
    elif existing or (exp_dir.exists() and any(exp_dir.iterdir())):
        return _fail(f"experiment {name!r} already exists in {exp_dir}; use --resume to continue it "
                     f"or another --name")
    if args.confirm_only and not args.confirm_seeds:
        return _fail("--confirm-only needs --confirm-seeds S (S >= 1)")

    if cfg_data_missing(space.fixed):
        return _fail(f"data not found: {space.fixed['data']} (give a Tiny ImageNet directory or zip)")
    # Heavy imports only now: bad input answers in a fraction of a second.
    from . import sweep
    from .cluster import ClusterError, check_resources, connect

    sweep_cfg = space.sweep
    try:
        cfg = make_config(space.fixed)
        url = connect(args.address, args.dashboard_host, args.num_cpus)
    except ConfigError as e:
        return _fail(str(e))
    except ClusterError as e:
        return _fail(str(e))
    import ray
    gpus = args.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    s = sweep.SweepSettings(
        name=name, results_dir=args.results_dir,
        num_samples=args.num_samples or int(sweep_cfg.get("num_samples", 8)),
        max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=gpus,
        grace_period=args.grace_period or int(sweep_cfg.get("grace_period", 1)),
        reduction_factor=args.reduction_factor or float(sweep_cfg.get("reduction_factor", 2)),
        seed=args.seed if args.seed is not None else int(sweep_cfg.get("seed", 0)),
        max_failures=args.max_failures, optuna_storage=args.optuna_storage)
    try:
        check_resources(s.cpus_per_trial, s.gpus_per_trial)
        print(f"Ray dashboard: {url or '(not running)'}", flush=True)
        t0 = time.time()
        data = sweep.load_task_data(cfg)
    except (ClusterError, *USER_ERRORS) as e:
        return _fail(str(e))
    exp_dir.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    sweep.write_experiment_json(s, space, ["python", "-m", "study.run", *argv], {"start_time": started})
    table = None
    if not args.confirm_only:
        table = sweep.run_search(s, space, data, resume=args.resume)
    if args.confirm_seeds:
        table = sweep.run_confirm(s, space, data, seeds=args.confirm_seeds, top_k=args.confirm_top_k)
    if table is None or table.empty:
        return _fail("no trial reported a result; see the Ray logs under " + str(exp_dir / "ray"))
    sweep.write_experiment_json(s, space, ["python", "-m", "study.run", *argv], {
        "end_time": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_time_s": round(time.time() - t0, 1),
        "budget_per_regularizer": sweep.budget_per_regularizer(table),
        "confirm_seeds": args.confirm_seeds})
    _print_best(table)
    print(f"trial table: {exp_dir / 'trials.parquet'} (+ trials.csv, summary.csv); "
          f"Optuna study {name!r} in {s.storage if not args.optuna_storage else args.optuna_storage}")
    return 0


def _print_best(table) -> None:
    from .trial_table import best_per_regularizer
    best = best_per_regularizer(table)
    counts = table[table["phase"] == "search"].drop_duplicates("trial_id")["status"].value_counts().to_dict()
    print(f"search trials by status: {counts}")
    print("best configuration per regularizer (lowest validation loss):")
    for _, row in best.iterrows():
        searched = json.loads(table.loc[table["trial_id"] == row["trial_id"], "searched"].iloc[0])
        params = ", ".join(f"{k}={row[k]:.4g}" for k in searched if k in row and row[k] == row[k])
        print(f"  {row['regularizer']:11s} val_loss={row['best_val_loss']:.4f} (epoch {int(row['best_epoch'])}) "
              f"val_acc={row['best_val_acc']:.3f} gap_loss={row['best_gap_loss']:.4f}  {params}  [{row['trial_id']}]")


if __name__ == "__main__":
    sys.exit(main())
