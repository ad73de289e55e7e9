"""One short run of every technique of the catalog on real data: a smoke check of the whole
catalog that prints, per technique, the final-epoch train_loss (as trained), train_clean_loss,
val_loss, their gap and the epoch time.

    python -m benchmarks.catalog [--data ../shared/data/tiny-imagenet-25.zip] [--classes 5]
        [--epochs 2] [--nltk-data ../shared/data/nltk_data] [--pos-epochs 2] [--task image|pos|both]

Image: the AlexNet-style CNN (EfficientNet-B0 where a technique needs it, e.g. stochastic depth);
tagging: the vanilla RNN on treebank with universal tags. Every technique runs with its
catalog defaults, seed 0; the `none` row is the baseline of its model.
"""
from __future__ import annotations

import argparse
import sys
import time

from study import regularizers, tasks
from study.config import ConfigError, make_config
from study.training import run_trial

from .common import DEFAULT_DATA, REPO, machine

DEFAULT_NLTK = REPO.parent / "shared" / "data" / "nltk_data"


def model_for(task: str, technique: str, default: str) -> str:
    """The task's default model, or the first model that accepts the technique's hooks."""
    needs = set(regularizers.TECHNIQUES[technique].model_hooks)
    models = tasks.get(task).models
    if needs <= models[default].accepts:
        return default
    return next(m for m, spec in models.items() if needs <= spec.accepts)


def run(task: str, base: dict, default_model: str) -> list[dict]:
    data = tasks.get(task).load(make_config(base))
    rows = []
    names = regularizers.names(task)
    baselines = {m for m in (model_for(task, t, default_model) for t in names)}
    for model in sorted(baselines, key=lambda m: m != default_model):
        for t in names:
            if model_for(task, t, default_model) != model and not (t == "none" and model != default_model):
                continue
            cfg = make_config({**base, "regularizer": t, "model": model})
            t0 = time.perf_counter()
            m = run_trial(cfg, data=data)
            rows.append({"task": task, "model": model, "regularizer": cfg.regularizer, **m,
                         "wall_s": time.perf_counter() - t0})
            print(f"{task:5s} {model:15s} {cfg.regularizer:18s} train_loss {m['train_loss']:.4f}  "
                  f"train_clean_loss {m['train_clean_loss']:.4f}  val_loss {m['val_loss']:.4f}  "
                  f"val_acc {m['val_acc']:.4f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.catalog", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=("image", "pos", "both"), default="both")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--nltk-data", default=str(DEFAULT_NLTK))
    p.add_argument("--pos-epochs", type=int, default=2)
    args = p.parse_args(argv)
    print(f"machine: {machine()}", flush=True)
    rows = []
    try:
        if args.task in ("image", "both"):
            rows += run("image", {"task": "image", "data": args.data, "classes": args.classes,
                                  "epochs": args.epochs, "seed": 0}, "alexnet")
        if args.task in ("pos", "both"):
            rows += run("pos", {"task": "pos", "nltk_data": args.nltk_data, "corpus": "treebank",
                                "tagset": "universal", "epochs": args.pos_epochs, "seed": 0}, "rnn")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n| task | model | technique | train_loss | train_clean_loss | val_loss | gap_loss | val_acc | s/epoch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['model']} | {r['regularizer']} | {r['train_loss']:.4f} | "
              f"{r['train_clean_loss']:.4f} | {r['val_loss']:.4f} | {r['gap_loss']:.4f} | {r['val_acc']:.4f} | "
              f"{r['epoch_time_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
