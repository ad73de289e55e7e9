"""Run one trial without Ray and print the per-epoch table.

    python -m study.train_once --data PATH --model alexnet --regularizer none --epochs 3 --seed 0 \
        [--classes N] [--set key=value ...] [--json out.json]
    python -m study.train_once --task pos --corpus treebank --nltk-data DIR --tagset universal \
        --model rnn --regularizer none --epochs 3 --seed 0 --json out.json
    python -m study.train_once --task pos --corpus conllu --data UD_English-EWT/ [--tagset xpos] --epochs 3
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from . import cli, preflight, regularizers, tasks
from .config import make_config, parse_set
from .metrics import TEST_METRICS
from .trial_table import atomic_write_text
from .training import Diverged, run_trial

COLUMNS = ("epoch", "train_loss", "train_acc", "train_clean_loss", "train_clean_acc", "val_loss",
           "val_acc", "gap_loss", "gap_acc", "epoch_time_s", "samples_per_s")
# Flags that map one-to-one onto config keys (None = not given, keep the config default).
FLAGS = ("task", "dataset", "data", "model", "regularizer", "epochs", "seed", "classes", "batch_size", "lr",
         "corpus", "nltk_data", "tagset", "device")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.train_once", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", help="image (default) or pos")
    p.add_argument("--dataset", help="image dataset: tinyimagenet (default), cifar10, cifar100, imagefolder "
                   "(README: Datasets); the same as --set dataset=NAME")
    p.add_argument("--data", help="the dataset's directory, archive or file (default: download the official "
                   "archive into the cache); for --corpus conllu, a .conllu file or a UD treebank directory")
    p.add_argument("--model", help="alexnet, efficientnet_b0, resnet18 or tv:NAME (any torchvision classifier) "
                   "(image); rnn, lstm, gru (pos)")
    p.add_argument("--regularizer", help="a technique of the catalog (see --list-regularizers), an alias "
                   "(l2_dropout) or a combination such as l2+dropout")
    p.add_argument("--list-regularizers", action="store_true",
                   help="print the regularizer catalog (name, tasks, settings=defaults) and exit")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--classes", type=int, help="the first N classes (Tiny ImageNet: in sorted wnid order, default 25; "
                   "CIFAR: by label index; ImageFolder: by folder name; default for those: all)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--corpus", help="treebank, conll2000, brown (NLTK), or conllu (your --data) (pos)")
    p.add_argument("--nltk-data", help="directory with NLTK data (pos)")
    p.add_argument("--tagset", help="universal (default) or native; for conllu: universal = upos (UPOS), "
                   "or xpos (pos)")
    p.add_argument("--device", help="auto, cpu, cuda")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="any other config setting, e.g. --set l2=1e-4 --set flip_ud_p=0")
    p.add_argument("--json", type=Path, help="write {config, epochs, test} to this file")
    return p


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if math.isfinite(v) and abs(v) < 1e4 else f"{v:.3g}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    """Exit codes (study.cli): 0 trained, 1 diverged or failed, 2 bad input, 130 interrupted."""
    return cli.run(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    if args.list_regularizers:
        print("\n".join(regularizers.listing()))
        return 0
    values = {k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None}
    values.update(parse_set(args.set))
    cfg = make_config(values)
    # Everything given is checked before the (possibly long) run: the output file, the paths of
    # the config, the device.
    if args.json:
        preflight.output_file(args.json, "--json")
    preflight.config_paths(cfg)
    preflight.device(cfg)
    data = load_data(cfg)  # bad data is bad input too: found before any training
    epochs: list[dict] = []

    def report(metrics: dict, _state) -> None:
        if not epochs:
            print("  ".join(f"{c:>16}" for c in COLUMNS))
        epochs.append(dict(metrics))
        print("  ".join(f"{_fmt(metrics[c]):>16}" for c in COLUMNS), flush=True)

    status = 0
    try:
        final = run_trial(cfg, report, data=data)
    except Diverged as e:
        print(f"diverged: {e}", file=sys.stderr)
        final, status = (epochs[-1] if epochs else {}), 1
    except KeyboardInterrupt:
        kept = ""
        if args.json and epochs:
            _write_json(args.json, cfg, epochs, {}, interrupted=True)
            kept = f"; its {len(epochs)} finished epoch(s) are in {args.json}"
        raise KeyboardInterrupt(f"after {len(epochs)} of {cfg.epochs} epochs{kept}") from None
    test = {k: final[k] for k in TEST_METRICS if k in final}
    if test:
        print("test: " + "  ".join(f"{k}={_fmt(v)}" for k, v in test.items()))
    if args.json:
        _write_json(args.json, cfg, epochs, test)
    return status


def load_data(cfg):
    """The task's data, as the sweep's driver loads it (read, decoded or cached, split)."""
    return tasks.get(cfg.task).load(cfg)


def _write_json(path: Path, cfg, epochs: list[dict], test: dict, interrupted: bool = False) -> None:
    doc = {"config": cfg.to_dict(), "epochs": epochs, "test": test}
    if interrupted:
        doc["interrupted"] = True
    atomic_write_text(json.dumps(doc, indent=1, default=str), Path(path).expanduser())


if __name__ == "__main__":
    sys.exit(main())
