"""What one checkpoint costs next to one epoch, step by step.

    python -m benchmarks.checkpoint [--model alexnet] [--classes 25] [--repeats 5] [--data PATH]
        [--device auto] [--set key=value ...]

One trial (``study.training``) trains ``--epochs`` epochs (default 1; the last epoch's time is the
reference), then its state is checkpointed ``--repeats`` times each way, median seconds:

* ``deepcopy+save``: the former path: ``copy.deepcopy`` of the state, then ``torch.save``;
* ``save``: today's path (study.trainable): ``torch.save`` of the live state, plus the metric
  history (``history.json``), into a fresh temporary directory;
* ``persist``: what ``tune.report(checkpoint=...)`` adds: Ray copies the directory into the trial's
  storage (``pyarrow.fs.copy_files``, here local disk to local disk: the default results dir).

Ends with ``checkpoint s epoch=E deepcopy_save=D save=S persist=P size_mb=M fraction=(S+P)/E``.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from study import training
from study.config import make_config, parse_set
from study.datasets import load_splits

from .common import DEFAULT_DATA, fmt, machine


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.checkpoint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="alexnet")
    p.add_argument("--classes", type=int, default=25)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--device", default="auto")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return p


def _median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    cfg = make_config({"model": a.model, "classes": a.classes, "data": a.data, "epochs": a.epochs,
                       "device": a.device, **parse_set(a.set)})
    print(machine(), flush=True)
    splits = load_splits(cfg)
    trial: dict = {}

    def report(metrics, get_state):
        trial["epoch_s"] = metrics["epoch_time_s"]
        trial["get_state"] = get_state
        trial["history"] = [metrics]

    t = training._setup(cfg, splits, None)  # (the same trial run_trial builds, kept for the timings)
    for epoch in range(1, cfg.epochs + 1):
        t.epoch = epoch
        t0 = time.perf_counter()
        m = training._evaluate_epoch(t, training._train_epoch(t), t0)
        report(m, t.state)
    epoch_s = trial["epoch_s"]
    history = json.dumps({"epochs": trial["history"]})

    with tempfile.TemporaryDirectory() as root:
        root = Path(root)

        def save(state, d: Path) -> None:
            d.mkdir(parents=True, exist_ok=True)
            torch.save(state, d / "state.pt")
            (d / "history.json").write_text(history)

        deep = _median_s(lambda: save(copy.deepcopy(t.state()), root / "a"), a.repeats)
        direct = _median_s(lambda: save(t.state(), root / "b"), a.repeats)
        size_mb = sum(p.stat().st_size for p in (root / "b").iterdir()) / 2**20

        import pyarrow.fs as pafs

        def persist() -> None:
            dest = root / "storage" / "checkpoint_000001"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            pafs.copy_files(str(root / "b"), str(dest), source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=pafs.LocalFileSystem())

        copy_s = _median_s(persist, a.repeats)
    print(f"model {cfg.model}, {cfg.classes} classes, batch {cfg.batch_size}, device {t.device}: "
          f"epoch {epoch_s:.2f}s; checkpoint {size_mb:.1f} MB", flush=True)
    print(f"  deepcopy + torch.save (before)  {deep:.3f}s  ({deep / epoch_s:.1%} of an epoch)")
    print(f"  torch.save of the live state    {direct:.3f}s  ({direct / epoch_s:.1%})")
    print(f"  Tune's copy into the trial dir  {copy_s:.3f}s  ({copy_s / epoch_s:.1%})")
    print(f"checkpoint s epoch={fmt(epoch_s)} deepcopy_save={deep:.3f} save={direct:.3f} persist={copy_s:.3f} "
          f"size_mb={size_mb:.1f} fraction={(direct + copy_s) / epoch_s:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
