"""The sweep command: ``python -m study.run --space l2_dropout``.

Exit codes: 0 done, 2 bad input (one line on stderr; nothing started, nothing overwritten).
"""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import experiment_lock, optuna_storage, prometheus, ray_dashboard, regularizers, results_location
from .config import SEED_MAX, ConfigError, make_config, parse_set
from .experiment_dir import (RECORD, TUNE_STATE, check_in_place, check_location, check_name, check_tune_state,
                             experiment_dir, read_record)
from .errors import USER_ERRORS
from .redact import redact
from .regularizers import CatalogError, Setting
from .results_location import is_uri
from .spaces import Space, describe_all, load_space, validate_space
from .trial_table import DIR_MISSING, upgrade_record

DEFAULT_SPACE = "l2_dropout"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.run", description="Run a regularization sweep.")
    p.add_argument("--space", help=f"search space name (see --list-spaces) or a YAML path (default {DEFAULT_SPACE}; "
                   "with --resume/--confirm-only: the experiment's)")
    p.add_argument("--list-spaces", action="store_true", help="print the spaces and exit")
    p.add_argument("--list-regularizers", action="store_true",
                   help="print the regularizer catalog (name, tasks, settings=defaults) and exit")
    p.add_argument("--name", help="experiment name (default: the space name)")
    p.add_argument("--results-dir", default="results",
                   help="where experiments go (default results/): a directory, or a bucket URI such as "
                   "s3://bucket/prefix or gs://bucket/prefix for a cluster without a shared filesystem")
    p.add_argument("--dataset", help="image dataset: tinyimagenet, cifar10, cifar100, imagefolder "
                   "(default: the space's); the same as --set dataset=NAME")
    p.add_argument("--data", help="the dataset's directory, archive or file (default: the space's, else "
                   "download the official archive into the cache)")
    p.add_argument("--nltk-data", help="NLTK data directory (pos spaces)")
    p.add_argument("--classes", type=int)
    p.add_argument("--max-epochs", type=int, help="epoch budget per trial (ASHA's max_t)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a fixed setting")
    p.add_argument("--num-samples", type=int, help="trials to run (default: the space's)")
    p.add_argument("--trials-per-technique", type=int,
                   help="a comparison space (compare:): search trials for each technique, each with its own TPE "
                   "study and ASHA (default: the space's)")
    p.add_argument("--seeds", type=int, help="a grid space (grid:): seeds per configuration (default: the space's)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as resources allow)")
    p.add_argument("--cpus-per-trial", type=float,
                   help="CPUs (= torch threads) per trial (default: the cluster's CPUs shared by the trials that "
                   "run at once: --max-concurrent, else those that fit on the GPUs, else one per CPU; "
                   "see study/resources.py)")
    p.add_argument("--gpus-per-trial", type=float, help="fractions pack trials onto a GPU (default 1 if GPUs exist)")
    p.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial can be stopped")
    p.add_argument("--reduction-factor", type=float, help="ASHA: keep 1/factor at each rung")
    p.add_argument("--seed", type=int, help="TPE sampler seed (default: the space's, else 0)")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial from its checkpoint")
    p.add_argument("--optuna-storage", default=os.environ.get(optuna_storage.ENV) or None,
                   help="SQLAlchemy URL or journal:PATH (default: $REGSTUDY_OPTUNA_STORAGE, else SQLite in "
                   "the experiment dir); put a URL with a password in that variable, not on the command line")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. 10.0.0.1:6379 or auto)")
    p.add_argument("--dashboard-host", default="127.0.0.1",
                   help="where the Ray dashboard listens (it accepts job submissions: keep it local)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local cluster (default: all)")
    p.add_argument("--no-dashboard", action="store_true",
                   help="start the local cluster without the Ray dashboard (about 1 s and 1 GB less; "
                   "no dashboard, no --prometheus)")

    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment of this --name")
    p.add_argument("--break-lock", action="store_true",
                   help="take the experiment from a driver on another host that may still hold it")
    p.add_argument("--confirm-seeds", type=int, default=0, help="after the search, re-run the best config "
                   "per regularizer with this many seeds (0: skip)")
    p.add_argument("--confirm-only", action="store_true",
                   help="only the confirmation phase, on the existing experiment --name (needs --confirm-seeds)")
    p.add_argument("--confirm-top-k", type=int, default=1, help="configurations per regularizer to confirm")
    p.add_argument("--prometheus", action="store_true",
                   help="start Prometheus (the `prometheus` binary) on 127.0.0.1 with Ray's generated config for "
                   "the sweep's metrics; stopped when the sweep ends")
    p.add_argument("--keep-checkpoints", type=int,
                   help="checkpoints kept per trial, the newest (default 2: see the README's \"Disk and "
                   "checkpoints\"); fixed once the experiment started")
    p.add_argument("--checkpoint-every", type=int,
                   help="epochs between a trial's checkpoints (and its last epoch); a failed trial re-runs "
                   "the epochs after its newest one (default 1; a continued experiment: its last value)")
    p.add_argument("--table-refresh-s", type=float, default=30.0,
                   help="rewrite the trial table at most this often while trials run (0: on every result)")
    p.add_argument("--mlflow", metavar="URI", default=os.environ.get("REGSTUDY_MLFLOW") or None,
                   help="log each trial as an MLflow run to this tracking URI, e.g. sqlite:///mlflow.db "
                   "(default: $REGSTUDY_MLFLOW; put a URI with a password there); needs the [watch] extra")
    p.add_argument("--status-every-s", type=float, default=30.0,
                   help="print the live status line this often while trials run (0: never)")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("--quiet", action="store_true", help="print only errors and the final summary")
    talk.add_argument("--verbose", action="store_true", help="also print Ray Tune's own progress tables")
    return p


# The range of every numeric option of the command (the settings of a trial, e.g. --max-epochs
# or --classes, are study.config's, checked like any --set key). Defaults: the parser's; nan
# where an unset option means "the space's" or "as resources allow".
OPTIONS = {s.name: s for s in (
    Setting("--num-samples", math.nan, 1, math.inf, integer=True),
    Setting("--trials-per-technique", math.nan, 1, math.inf, integer=True),
    Setting("--seeds", math.nan, 1, math.inf, integer=True),
    Setting("--max-concurrent", math.nan, 1, math.inf, integer=True),
    Setting("--cpus-per-trial", math.nan, 0.0, math.inf, lo_open=True),
    Setting("--gpus-per-trial", math.nan, 0.0, math.inf),
    Setting("--grace-period", math.nan, 1, math.inf, integer=True),
    Setting("--reduction-factor", math.nan, 1.0, math.inf, lo_open=True),
    Setting("--seed", math.nan, 0, SEED_MAX, integer=True),  # (the TPE sampler's numpy generator)
    Setting("--max-failures", 2, 0, math.inf, integer=True),  # (Ray Tune takes -1 as "retry forever")
    Setting("--num-cpus", math.nan, 1, math.inf, integer=True),
    Setting("--keep-checkpoints", math.nan, 1, math.inf, integer=True),  # (unset: the recorded, else 2)
    Setting("--checkpoint-every", math.nan, 1, math.inf, integer=True),
    Setting("--table-refresh-s", 30.0, 0.0, math.inf),  # (nan would mean every result, inf never)
    Setting("--status-every-s", 30.0, 0.0, math.inf),
    Setting("--confirm-seeds", 0, 0, math.inf, integer=True),
    Setting("--confirm-top-k", 1, 1, math.inf, integer=True),
)}


def check_options(args) -> None:
    for name, allowed in OPTIONS.items():
        value = getattr(args, name[2:].replace("-", "_"))
        if value is not None:
            try:
                allowed.check(value)
            except CatalogError as e:
                raise ConfigError(str(e)) from None


LOCATION_KEYS = ("data", "nltk_data", "cache_dir")  # may differ on --resume (data moved)
# fixed once a search ran (keep_checkpoints: the restored Tune experiment keeps its own)
SEARCH_KEYS = ("num_samples", "trials_per_technique", "grace_period", "reduction_factor", "seed", "keep_checkpoints")


def cfg_data_missing(fixed: dict) -> bool:
    return bool(fixed.get("data")) and not Path(str(fixed["data"])).expanduser().exists()


def data_layout(cfg) -> str:
    """What ``--data`` should point at for this config's dataset or corpus, in a few words."""
    if cfg.task == "image":
        from .datasets import get
        return get(cfg.dataset).layout
    from .conllu_corpus import LAYOUT
    return LAYOUT if cfg.corpus == "conllu" else "a directory"


def _lock(exp_dir: Path, argv: list[str], args) -> experiment_lock.ExperimentLock:
    return experiment_lock.acquire(exp_dir, shlex.join(["python", "-m", "study.run", *map(redact, argv)]),
                                   break_lock=args.break_lock)


def _experiment_dir(args, name: str) -> Path:
    """The experiment's directory: ``--results-dir/NAME``, checked; with a bucket URI its local
    mirror (study.results_location), the bucket checked and ``args.storage_uri`` set."""
    args.storage_uri = None
    if not is_uri(args.results_dir):
        exp_dir = experiment_dir(args.results_dir, name)
        check_location(args.results_dir, exp_dir)
        return exp_dir
    results_location.check_reachable(args.results_dir)
    args.storage_uri = results_location.join(args.results_dir, name)
    exp_dir = results_location.mirror_dir(args.results_dir, name)
    exp_dir.mkdir(parents=True, exist_ok=True)
    return exp_dir


def _clear_mirror(exp_dir: Path) -> None:
    """A new experiment in a bucket: the mirror's files of an earlier one of that name (gone from
    the bucket) go, so that the bucket alone says what exists."""
    import shutil

    for p in exp_dir.iterdir():
        if p.name == experiment_lock.LOCK_FILE:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _shown_results(results_dir: str | None, exp_dir: Path) -> str:
    if results_dir and is_uri(results_dir):
        return results_location.shown(results_dir)
    return str(exp_dir.parent)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _overrides(args) -> dict:
    overrides = parse_set(args.set)
    for key, value in (("dataset", args.dataset), ("data", args.data), ("nltk_data", args.nltk_data), ("classes", args.classes),
                       ("epochs", args.max_epochs)):
        if value is not None:
            overrides[key] = value
    return overrides


def _recorded_space(exp_dir: Path, meta: dict, args, overrides: dict) -> Space:
    """The space of an existing experiment, as recorded in its experiment.json: a resumed or
    confirmed experiment keeps its settings (only the data location may change)."""
    for key in ("fixed", "search", "space_definition"):
        if not isinstance(meta.get(key, {}), dict):
            raise ConfigError(f"{exp_dir / RECORD}: {key}: expected a JSON object, got "
                              f"{type(meta[key]).__name__}; repair it or restore it from a backup")
    if args.space and args.space != meta.get("space") and Path(args.space).stem != meta.get("space"):
        raise ConfigError(f"--space {args.space}: experiment {exp_dir.name!r} was run with space "
                          f"{meta.get('space')!r}")
    fixed = dict(meta.get("fixed", {}))
    recorded = make_config(upgrade_record(fixed)).to_dict()
    for key, value in overrides.items():
        if key in LOCATION_KEYS:
            fixed[key] = value
        elif make_config(upgrade_record({**fixed, key: value})).to_dict().get(key) != recorded.get(key):
            raise ConfigError(f"{key}={value}: experiment {exp_dir.name!r} was run with {key}={recorded.get(key)}; "
                              f"a resumed or confirmed experiment keeps its settings (use a new --name)")
    sd = meta.get("space_definition", {})
    space = Space(name=meta.get("space", "?"), path=exp_dir / "experiment.json",
                  description=meta.get("description", ""), fixed=fixed, search=sd.get("search", {}),
                  sweep=sd.get("sweep", {}), compare=sd.get("compare") or {}, grid=sd.get("grid") or [])
    check_kind_options(args, space)  # (before the recorded values: the kind's message is the one to give)
    recorded_search = meta.get("search", {})
    if args.keep_checkpoints is not None and recorded_search and "keep_checkpoints" not in recorded_search:
        raise ConfigError(f"--keep-checkpoints {args.keep_checkpoints}: experiment {exp_dir.name!r} predates "
                          "--keep-checkpoints; its saved Ray Tune state keeps every checkpoint (drop the option, "
                          "or run a new --name)")
    for key in SEARCH_KEYS:  # (how the search was run; parallelism and retries may change)
        value = getattr(args, key)
        if value is not None and key in recorded_search and float(value) != float(recorded_search[key]):
            raise ConfigError(f"--{key.replace('_', '-')} {value}: experiment {exp_dir.name!r} was run with "
                              f"{key}={recorded_search[key]}; a resumed or confirmed experiment keeps its "
                              "settings (use a new --name)")
    if space.kind == "grid" and args.seeds is not None:
        recorded = recorded_seeds(meta)
        if recorded and args.seeds != recorded:
            raise ConfigError(f"--seeds {args.seeds}: experiment {exp_dir.name!r} was run with {recorded} "
                              "seeds; a resumed experiment keeps its settings (use a new --name)")
    return space


def recorded_seeds(record: dict) -> int:
    """How many seeds a grid experiment's runs were planned with (0: none planned yet)."""
    return len((record.get("confirm") or {}).get("seeds") or [])


def _restored_phases(args, record: dict) -> tuple[str, ...]:
    """The phases that a --resume/--confirm-only continues from their saved Ray Tune state (if
    there is one: study.sweep restores ray/<phase>/ when it can). A grid space has only the
    confirmation phase (its runs)."""
    if (record.get("space_definition") or {}).get("grid"):
        return ("confirm",)
    return (() if args.confirm_only else ("search",)) + (("confirm",) if args.confirm_seeds else ())


def check_kind_options(args, space: Space) -> None:
    """The options of one kind of space are refused for another (they would do nothing)."""
    grid = "a grid space searches nothing: it runs each configuration with --seeds S"
    wrong = {
        "compare": {"--num-samples": "a comparison space gives every technique --trials-per-technique N trials",
                    "--seeds": "a comparison confirms its best configurations with --confirm-seeds S"},
        "grid": dict.fromkeys(("--num-samples", "--trials-per-technique", "--grace-period", "--reduction-factor",
                               "--seed", "--confirm-seeds", "--confirm-only", "--confirm-top-k"), grid),
        "search": {"--trials-per-technique": "only a comparison space (compare:) has techniques to budget; use "
                                             "--num-samples",
                   "--seeds": "a search space confirms its best configurations with --confirm-seeds S"},
    }[space.kind]
    for option, why in wrong.items():
        value = getattr(args, option[2:].replace("-", "_"))
        if value not in (None, 0, False) and not (option == "--confirm-top-k" and value == 1):
            raise ConfigError(f"{option}: not for space {space.name!r} (a {space.kind} space): {why}")


def _check_study(exp_dir: Path, record: dict, url: str, phases: tuple[str, ...],
                 saved_at: str | None = None) -> None:
    """A continued search needs its Optuna study: check that it opens before anything is written
    (a missing SQLite file would be created empty, a corrupt one fail deep inside Tune's restore).
    ``saved_at``: the experiment's URI when Tune's state is in a bucket."""
    if "search" not in phases:  # (the confirmation phase does not use the study)
        return
    what = f"experiment {exp_dir.name!r}: its Optuna study in"
    if saved_at:
        saved = results_location.exists(results_location.join(saved_at, "ray", "search", TUNE_STATE))
    else:
        saved = (exp_dir / "ray" / "search" / TUNE_STATE).exists()
    if url.startswith(optuna_storage.SQLITE) and not Path(url[len(optuna_storage.SQLITE):]).exists():
        if saved:
            raise ConfigError(f"{what} {url}: the file is missing; the search cannot continue without its "
                              "history: restore it from a backup (or run the space again under a new --name)")
        return  # (a driver stopped before the study was created: the search starts it)
    optuna_storage.check(url, what)
    if saved:
        import optuna
        names = optuna.get_all_study_names(storage=optuna_storage.open_storage(url))
        # (a comparison has one study per technique)
        for study in record.get("optuna_studies") or [record.get("optuna_study") or exp_dir.name]:
            if study not in names:
                raise ConfigError(f"{what} {redact(url)}: it holds no study {study!r} (it has: "
                                  f"{', '.join(map(repr, names)) or 'none'}); restore the experiment's database "
                                  "from a backup")


def _dashboard_url() -> str | None:
    try:  # the cluster was started by the caller (tests, notebooks): ask it where its dashboard is
        import ray
        return ray._private.worker.global_worker.node.address_info.get("webui_url") or None
    except Exception:
        return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.list_spaces:
        for name, desc in describe_all():
            print(f"{name:16s} {desc}")
        return 0
    if args.list_regularizers:
        print("\n".join(regularizers.listing()))
        return 0
    lock = None  # (taken early only for a bucket's --resume/--confirm-only; see below)
    try:
        check_options(args)
        if args.mlflow:
            from . import mlflow_log
            mlflow_log.check(args.mlflow)
        if args.prometheus and args.no_dashboard:
            raise ConfigError("--prometheus needs the Ray dashboard (it writes the config that Prometheus "
                              "reads): drop --no-dashboard")
        if args.prometheus and prometheus.binary() is None:
            raise ConfigError(prometheus.INSTALL)
        if args.confirm_only and not args.confirm_seeds:
            raise ConfigError("--confirm-only needs --confirm-seeds S (S >= 1)")
        overrides = _overrides(args)
        continuing = args.resume or args.confirm_only
        if continuing:
            if not args.name:
                raise ConfigError(f"--{'resume' if args.resume else 'confirm-only'} needs the --name of "
                                  "an existing experiment")
            exp_dir = _experiment_dir(args, check_name(args.name))
            if is_uri(args.results_dir):
                # the lock first: the copy from the bucket replaces files a running driver has open
                lock = _lock(exp_dir, argv, args)
                if not results_location.pull(args.storage_uri, exp_dir):
                    raise ConfigError(f"no experiment {args.name!r} in {results_location.shown(args.results_dir)} "
                                      f"to {'resume' if args.resume else 'confirm'}")
            if not (exp_dir / RECORD).exists():
                raise ConfigError(f"no experiment {args.name!r} in {args.results_dir} to "
                                  f"{'resume' if args.resume else 'confirm'}")
            record = read_record(exp_dir)
            phases = _restored_phases(args, record)
            if is_uri(args.results_dir):
                results_location.check_copy_in_place(exp_dir, record, phases)
            space = _recorded_space(exp_dir, record, args, overrides)
            check_in_place(exp_dir, record, phases)
            check_tune_state(exp_dir, phases)
            args.optuna_storage = optuna_storage.for_experiment(record.get("optuna_storage"), exp_dir,
                                                                args.optuna_storage)
            _check_study(exp_dir, record, args.optuna_storage, phases,
                         saved_at=args.storage_uri if is_uri(args.results_dir) else None)
        else:
            space = load_space(args.space or DEFAULT_SPACE)
            space.fixed = {**space.fixed, **overrides}
            validate_space(space)
            check_kind_options(args, space)
            name = check_name(args.name or space.name, "--name" if args.name else "--name (default: the space's)")
            exp_dir = _experiment_dir(args, name)
            if is_uri(args.results_dir):
                if results_location.exists(args.storage_uri):  # (any object below URI/NAME)
                    raise ConfigError(f"experiment {name!r} already exists in "
                                      f"{results_location.shown(args.results_dir)}; use --resume to continue it, "
                                      "or another --name")
        cfg = make_config(space.fixed)
        if cfg_data_missing(space.fixed):
            raise ConfigError(f"data not found: {space.fixed['data']} (give {data_layout(cfg)})")
        if args.optuna_storage and not continuing:  # (a continued experiment's: _check_study)
            optuna_storage.check(args.optuna_storage)
        # before anything is started or written: one driver per experiment
        lock = lock or _lock(exp_dir, argv, args)
    except (ConfigError, experiment_lock.LockError) as e:
        if lock is not None:
            lock.release()
        return _fail(str(e))
    with lock:
        if not continuing and is_uri(args.results_dir):
            _clear_mirror(exp_dir)
        if not continuing and any(p.name != experiment_lock.LOCK_FILE for p in exp_dir.iterdir()):
            return _fail(f"experiment {exp_dir.name!r} already exists in {exp_dir.parent}; "
                         "use --resume to continue it, or another --name")
        if lock.note():
            print(lock.note(), file=sys.stderr, flush=True)
        return _run_locked(args, argv, space, cfg, exp_dir, continuing)


def _run_locked(args, argv, space, cfg, exp_dir: Path, continuing: bool) -> int:
    if not args.address and "ray" not in sys.modules:
        # Must precede the first `import ray`: a local cluster's processes then listen on
        # 127.0.0.1 only (GCS, raylet, object manager), not on every interface.
        os.environ.setdefault(LOCAL_ONLY_ENV, "0")
    old_term = signal.getsignal(signal.SIGTERM)
    watch = prometheus.Watch(exp_dir) if args.prometheus else None
    try:
        rc = _run(args, argv, space, cfg, exp_dir, continuing, watch)
        if watch is not None and rc in (0, 1):  # (not after an interrupt: no waiting then)
            watch.flush()
        return rc
    except KeyboardInterrupt:
        return _interrupted(exp_dir, "stopped before the phase's state was saved", args.results_dir)
    except Exception as e:
        why = _disk_full(e, exp_dir)
        if why is None:
            raise
        then = ("continue with --resume" if (exp_dir / "experiment.json").exists()
                else "run the command again")
        print(f"error: cannot write the results under {exp_dir}: {why}; what was written before is intact "
              f"(tables are replaced atomically). Free space, then {then}.", file=sys.stderr)
        return 1
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL)
        if watch is not None:
            watch.stop()


LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray's single-machine mode: bind to loopback
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _disk_full(exc: BaseException, exp_dir: Path) -> str | None:
    """Why the results cannot be written, if that is what ended the driver; else None.

    A full disk reaches the driver in many forms: an OSError of our own writes, SQLite's
    "database or disk is full" through SQLAlchemy and Optuna, or whatever Ray Tune raises when it
    reads back a file it could only write in part (an EOFError from a truncated pickle). The
    causes are searched first; then a test write under the experiment directory tells."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            return f"{e.strerror}{f' ({e.filename})' if e.filename else ''}"
        if "database or disk is full" in str(e):  # (sqlite3.OperationalError, and what wraps it)
            return "No space left on device (the Optuna database: database or disk is full)"
        todo += [e.__cause__, e.__context__]
    probe = next((p for p in (exp_dir, *exp_dir.parents) if p.is_dir()), None)
    try:
        with tempfile.TemporaryFile(dir=probe) as f:  # (a checkpoint needs far more than this)
            f.write(b"\0" * (1 << 20))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if e.errno in DISK_FULL:
            return f"{e.strerror} (then: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def _term_as_interrupt(signum, frame) -> None:
    # A scheduler's SIGTERM (Slurm, Kubernetes) gets the same graceful stop as Ctrl-C: Tune
    # saves the experiment state and --resume continues it.
    os.kill(os.getpid(), signal.SIGINT)


def _interrupted(exp_dir: Path, what: str, results_dir: str | None = None) -> int:
    if (exp_dir / "experiment.json").exists():
        print(f"interrupted: {what}. Continue with: python -m study.run --name {exp_dir.name} "
              f"--results-dir {_shown_results(results_dir, exp_dir)} --resume", file=sys.stderr, flush=True)
    else:
        print("interrupted before the experiment started; nothing was written", file=sys.stderr, flush=True)
    return 130


def _run(args, argv, space, cfg, exp_dir: Path, continuing: bool, watch: prometheus.Watch | None = None) -> int:
    name = exp_dir.name
    # Heavy imports only now: bad input answers in a fraction of a second.
    from . import sweep
    from .cluster import ClusterError, check_reachable, check_resources, connect

    t0 = time.time()
    try:
        if args.address:
            check_reachable(args.address)  # before the (long) first decode of the data
        data = sweep.load_task_data(cfg)  # bad data: exit 2 before any Ray process starts
    except (ClusterError, *USER_ERRORS) as e:
        return _fail(str(e))
    if watch is not None and not args.address:
        watch.before_local_cluster()
    try:
        url = connect(args.address, args.dashboard_host, args.num_cpus,
                      include_dashboard=not args.no_dashboard) or _dashboard_url()
    except ClusterError as e:
        return _fail(str(e))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _term_as_interrupt)  # after ray.init: Ray installs its own
    import ray
    gpus = args.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    recorded = sweep.read_experiment(exp_dir).get("search", {}) if continuing else {}
    sweep_cfg = {**space.sweep, **recorded}

    def pick(cli, key, default, kind):  # (a continued experiment's recorded values equal any given)
        return kind(cli) if cli is not None else kind(sweep_cfg.get(key, default))

    per_technique = None
    grid_seeds = 0
    if space.kind == "compare":
        per_technique = pick(args.trials_per_technique, "trials_per_technique", 8, int)
        num_samples = per_technique * len(space.compare)
    elif space.kind == "grid":
        grid_seeds = (args.seeds or (recorded_seeds(sweep.read_experiment(exp_dir)) if continuing else 0)
                      or int(space.sweep.get("seeds", 5)))
        num_samples = len(space.grid) * grid_seeds
    else:
        num_samples = pick(args.num_samples, "num_samples", 8, int)
    res = _trial_resources(args, gpus, num_samples)
    startup = sweep.recorded_startup_trials(recorded) if space.kind != "grid" else None
    s = sweep.SweepSettings(
        name=name, results_dir=exp_dir.parent,  # (absolute: Tune pickles these settings)
        storage_uri=getattr(args, "storage_uri", None),  # (a bucket: exp_dir is its local mirror)
        num_samples=num_samples, trials_per_technique=per_technique, tpe_startup_trials=startup,
        max_concurrent=args.max_concurrent, cpus_per_trial=res.cpus, gpus_per_trial=gpus,
        grace_period=pick(args.grace_period, "grace_period", 1, int),
        reduction_factor=pick(args.reduction_factor, "reduction_factor", 2, float),
        seed=pick(args.seed, "seed", 0, int),
        max_failures=args.max_failures, table_refresh_s=args.table_refresh_s,
        # (an experiment that predates --keep-checkpoints: its Tune state keeps them all)
        keep_checkpoints=(None if continuing and recorded and "keep_checkpoints" not in recorded
                          else pick(args.keep_checkpoints, "keep_checkpoints", 2, int)),
        checkpoint_every=pick(args.checkpoint_every, "checkpoint_every", 1, int),
        mlflow=args.mlflow, status_every_s=0.0 if args.quiet else args.status_every_s, verbose=args.verbose,
        # (a continued experiment's own optuna.db stays "the default": recorded relative to it)
        optuna_storage=None if args.optuna_storage == optuna_storage.default_url(exp_dir) else args.optuna_storage)
    try:
        check_resources(s.cpus_per_trial, s.gpus_per_trial)
        say = (lambda *a, **k: None) if args.quiet else print  # (--quiet: errors and the final summary)
        say(ray_dashboard.start_line(url), flush=True)
        say(res.describe(*_cluster_cpus_gpus()), flush=True)
        for line in watch.start(name) if watch is not None else ():
            say(line, flush=True)
    except (ClusterError, prometheus.PrometheusError, *USER_ERRORS) as e:
        return _fail(str(e))
    sweep.start_experiment(s, space, ["python", "-m", "study.run", *map(redact, argv)])
    say(f"experiment {name!r}: {exp_dir} (space {space.name!r}, {_plan(space, s, grid_seeds)}, "
        f"max {cfg.epochs} epochs)", flush=True)
    if space.kind != "grid":
        say(f"{_studies(space, name)} in {redact(s.storage)}", flush=True)
    if s.mlflow:
        say(f"MLflow: each trial a run of experiment {name!r} at {redact(s.mlflow)}", flush=True)
    table = None
    data_ref = ray.put(data)  # one copy in the object store, shared by both phases
    del data
    try:
        if space.kind == "grid":
            table = sweep.run_confirm(s, space, data_ref, seeds=grid_seeds)
        elif not args.confirm_only:
            table = sweep.run_search(s, space, data_ref, resume=args.resume)
        if args.confirm_seeds:
            try:
                table = sweep.run_confirm(s, space, data_ref, seeds=args.confirm_seeds, top_k=args.confirm_top_k)
            except RuntimeError as e:
                return _fail(str(e))
    except sweep.Interrupted as e:
        print(f"trial table so far: {exp_dir / 'trials.parquet'} (unfinished trials: status 'interrupted')")
        return _interrupted(exp_dir, str(e), args.results_dir)
    if table is None or table.empty:
        return _fail("no trial reported a result; see the Ray logs under " + str(exp_dir / "ray"))
    record = sweep.finish_experiment(s, table, t0)
    _print_best(table)
    if DIR_MISSING in table and table[DIR_MISSING].eq(True).any():
        lost = sorted(table.loc[table[DIR_MISSING].eq(True), "trial_id"].unique())
        print(f"warning: {len(lost)} trial(s) of the table have no trial directory any more ({', '.join(lost)}): "
              f"their rows are kept as recorded (column {DIR_MISSING}); their checkpoints are gone",
              file=sys.stderr)
    print(f"trial table: {exp_dir / 'trials.parquet'} (+ trials.csv, summary.csv, experiment.json)"
          + (f"; {_studies(space, name)} in {redact(s.storage)}" if space.kind != "grid" else ""))
    if s.storage_uri:
        print(f"the experiment is in {results_location.shown(s.storage_uri)}/ (checkpoints and trial results "
              f"in ray/, the table, experiment.json and {results_location.STUDY_FILE} beside them); "
              f"{exp_dir} is this machine's copy of the driver's files")
    disk = record.get("disk", {})
    kept = f"at most {s.keep_checkpoints}" if s.keep_checkpoints else "every (the experiment predates --keep-checkpoints)"
    print(f"disk used by the experiment: {disk.get('bytes', 0) / 2**20:.1f} MiB in {disk.get('files', 0)} files "
          f"({kept} checkpoint(s) per trial)")
    phase = "confirm" if space.kind == "grid" else "search"
    runs = table[table["phase"] == phase]
    if len(runs) and runs["status"].eq("errored").all():
        print(f"error: every {phase} trial failed; see the trial logs under {exp_dir / 'ray' / phase}",
              file=sys.stderr)
        return 1
    return 0


def _plan(space: Space, s, grid_seeds: int) -> str:
    """What the experiment runs, in a few words."""
    if space.kind == "compare":
        return (f"{s.trials_per_technique} search trials per technique x {len(space.compare)} techniques "
                f"({', '.join(space.compare)}), TPE and ASHA per technique")
    if space.kind == "grid":
        return f"{len(space.grid)} fixed configurations x {grid_seeds} seeds, no search"
    return f"{s.num_samples} search trials"


def _studies(space: Space, name: str) -> str:
    if space.kind == "compare":
        from .comparison import study_name
        return f"Optuna studies {', '.join(repr(study_name(name, t)) for t in space.compare)}"
    return f"Optuna study {name!r}"


def _cluster_cpus_gpus() -> tuple[float, float]:
    import ray
    total = ray.cluster_resources()
    return total.get("CPU", 0.0), total.get("GPU", 0.0)


def _trial_resources(args, gpus_per_trial: float, num_samples: int):
    """The CPU share of a trial: --cpus-per-trial, else the rule of study.resources."""
    import ray

    from .resources import trial_resources
    cpus, gpus = _cluster_cpus_gpus()
    node_cpus = max((n.get("Resources", {}).get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=None)
    return trial_resources(cpus, gpus, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=gpus_per_trial,
                           max_concurrent=args.max_concurrent, num_samples=num_samples, node_cpus=node_cpus)


def _print_best(table) -> None:
    from .trial_table import best_per_regularizer, status_counts, summarize
    best = best_per_regularizer(table)
    searched_any = table["phase"].eq("search").any()
    if searched_any:
        print(f"search trials by status: {status_counts(table)}")
    failed = table[table["status"].isin(["errored", "diverged"])]
    for tid, g in failed.groupby("trial_id"):  # why, one line each (full tracebacks: the trial's error.txt)
        last = g.sort_values("epoch").iloc[-1]
        why = "the loss became NaN/inf" if last["status"] == "diverged" else last.get("error", "")
        print(f"  {tid}: {last['status']} at epoch {int(last['epoch'])} after {int(last.get('failures', 0))} "
              f"failed attempt(s): {why}")
    if searched_any:
        print("best configuration per regularizer (search phase, lowest validation loss at any epoch):")
    for _, row in best.iterrows():
        searched = json.loads(row["searched"])
        params = ", ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                           for k in searched if k in row and row[k] == row[k])
        print(f"  {row['regularizer']:11s} val_loss={row['best_val_loss']:.4f} (epoch {int(row['best_epoch'])}) "
              f"val_acc={row['best_val_acc']:.3f} gap_loss={row['best_gap_loss']:.4f}  {params}  [{row['trial_id']}]")
    conf = table[(table["phase"] == "confirm") & (table["status"] == "completed")]
    if len(conf):
        print(("runs of the grid" if not searched_any else "confirmation")
              + " (full budget, the same seeds for every configuration; mean +- sd over seeds of the final epoch):")
        for reg, g in summarize(conf).groupby("regularizer"):
            stat = {m: (g[f"final_{m}"].mean(), g[f"final_{m}"].std(ddof=1)) for m in ("val_loss", "gap_loss", "test_acc")}
            print(f"  {reg:11s} n={len(g)} val_loss={stat['val_loss'][0]:.4f}+-{stat['val_loss'][1]:.4f} "
                  f"gap_loss={stat['gap_loss'][0]:.4f}+-{stat['gap_loss'][1]:.4f} "
                  f"test_acc={stat['test_acc'][0]:.3f}+-{stat['test_acc'][1]:.3f}")


if __name__ == "__main__":
    from . import cli

    # main() keeps its own messages for the sweep's cases; the contract's wrapper turns anything
    # unexpected into one line and exit 1 (REGSTUDY_DEBUG=1 shows the traceback)
    sys.exit(cli.run(main))
