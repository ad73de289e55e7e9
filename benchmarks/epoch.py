"""Training throughput: the reference per-image pipeline vs the project's on-device path.

    python -m benchmarks.epoch [--device auto] [--model alexnet] [--batch-size 128] [--epochs 1]
        [--warmup 0] [--data ../shared/data/tiny-imagenet-25.zip] [--classes 25] [--workers 2]
        [--no-augment] [--compile] [--only both|reference|project] [--set key=value ...]

Both paths train the same model (same config, optimizer, batch size, device settings) on the
same training images (the stratified train split ``study.datasets.load_splits`` makes), with
the same augmentations on (the ``augment`` regularizer's settings):

(a) reference, the way per-image code does it: a ``Dataset`` that reads each JPEG from the zip
    (or ``torchvision.datasets.ImageFolder`` for a directory) and decodes it with PIL per item,
    torchvision per-image transforms (RandomHorizontalFlip, RandomVerticalFlip, ToTensor,
    additive brightness, ColorJitter contrast, ColorJitter saturation, Normalize), a
    ``DataLoader`` with ``--workers`` worker processes and shuffling, and a plain training loop;
(b) project: ``study.training.run_trial`` on the decoded uint8 arrays (from the .npy cache),
    batches gathered on the device, batched augmentation and normalisation as tensor ops.

images/s counts training images over training time only (the project's evaluation passes are
not counted; the reference has none). With ``--warmup K`` the first K epochs of each path are
run but not timed (worker start-up, cudnn autotuning, torch.compile). Ends with one line:
``epoch images/s reference=R project=P ratio=P/R``.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from study import training
from study.config import TrialConfig, make_config, parse_set
from study.models import MODELS
from study.regularization import for_config
from study.datasets import load_splits, resolve_source
from study.datasets.splits import stratified_split
from study.datasets.tinyimagenet import _Source, select_classes

from .common import DEFAULT_DATA, fmt, machine, sync


# --- (a) the reference per-image pipeline -------------------------------------------------------
class ZipImages(Dataset):
    """Reads and decodes one JPEG from the zip per item; each worker opens its own handle."""

    def __init__(self, zip_path: Path, members: list[str], labels: list[int], transform):
        self.zip_path, self.members, self.labels, self.transform = zip_path, members, labels, transform
        self._zip = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.members)

    def __getstate__(self):
        return {**self.__dict__, "_zip": None, "_pid": None}

    def __getitem__(self, i: int):
        if self._zip is None or self._pid != os.getpid():
            self._zip = zipfile.ZipFile(self.zip_path)
            self._pid = os.getpid()
        with Image.open(io.BytesIO(self._zip.read(self.members[i]))) as im:
            img = im.convert("RGB")
        return self.transform(img), self.labels[i]


class AdditiveBrightness(torch.nn.Module):
    """``tf.image.random_brightness``: add delta ~ U(-max_delta, max_delta), then clamp to [0, 1]."""

    def __init__(self, max_delta: float):
        super().__init__()
        self.max_delta = max_delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = float(torch.empty(()).uniform_(-self.max_delta, self.max_delta))
        return (x + delta).clamp_(0.0, 1.0)


def reference_transform(cfg: TrialConfig, augment: bool, mean, std):
    """Per-image torchvision transforms with the study's augmentation semantics, normalised with
    ``mean``/``std`` (the project's: the training split's channel statistics)."""
    from torchvision import transforms as T

    s = cfg.strengths
    steps = []
    if augment:
        steps += [T.RandomHorizontalFlip(s["flip_lr_p"]), T.RandomVerticalFlip(s["flip_ud_p"])]
    steps.append(T.ToTensor())
    if augment:
        if s["brightness"] > 0:
            steps.append(AdditiveBrightness(s["brightness"]))
        if (s["contrast_lo"], s["contrast_hi"]) != (1.0, 1.0):
            steps.append(T.ColorJitter(contrast=(s["contrast_lo"], s["contrast_hi"])))
        if (s["saturation_lo"], s["saturation_hi"]) != (1.0, 1.0):
            steps.append(T.ColorJitter(saturation=(s["saturation_lo"], s["saturation_hi"])))
    steps.append(T.Normalize(mean, std))
    return T.Compose(steps)


def reference_dataset(cfg: TrialConfig, transform) -> tuple[Dataset, int]:
    """The same training images as ``load_splits(cfg).train_x``, read per item from the source."""
    src = _Source(resolve_source(cfg))
    wnids = [w.strip() for w in src.read("wnids.txt").decode().split() if w.strip()]
    classes = select_classes(wnids, cfg.classes, cfg.class_list)
    rels, labels = [], []
    for i, c in enumerate(classes):  # the listing order of study.datasets.tinyimagenet._index_official
        files = [f for f in src.listdir(f"train/{c}/images") if f.lower().endswith((".jpeg", ".jpg"))]
        rels += [f"train/{c}/images/{f}" for f in files]
        labels += [i] * len(files)
    train_idx, _ = stratified_split(np.asarray(labels), cfg.val_fraction, cfg.split_seed)
    if src.zip is not None:
        ds: Dataset = ZipImages(src.path, [src.prefix + r for r in rels], labels, transform)
    else:
        from torchvision.datasets import ImageFolder

        class ChosenClasses(ImageFolder):
            def find_classes(self, directory):
                return list(classes), {c: i for i, c in enumerate(classes)}

        ds = ChosenClasses(str(src.root / "train"), transform=transform)
        got = [Path(p).relative_to(src.root).as_posix() for p, _ in ds.samples]
        if got != rels:
            raise RuntimeError("ImageFolder listed the images in another order than the project's decoder")
    return Subset(ds, train_idx.tolist()), len(classes)


def run_reference(cfg: TrialConfig, device: torch.device, workers: int, epochs: int, warmup: int,
                  compile_model: bool) -> list[tuple[int, float, float]]:
    """(images, seconds, mean train loss) per timed epoch."""
    t0 = time.perf_counter()
    augment = cfg.combination.uses("augment")
    data = load_splits(cfg)  # (cached) for its channel statistics, which the project normalises with
    ds, n_classes = reference_dataset(cfg, reference_transform(cfg, augment, data.mean, data.std))
    print(f"[reference] dataset: {len(ds)} training images listed in {time.perf_counter() - t0:.2f}s "
          f"(decoded per item, {workers} workers)", flush=True)
    cuda = device.type == "cuda"
    fmt_ = torch.channels_last if (cuda and cfg.channels_last) else torch.contiguous_format
    use_amp = cfg.amp and cuda
    torch.manual_seed(cfg.seed)
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=workers,
                        pin_memory=cuda, persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(cfg.seed))
    model = MODELS[cfg.model].build(cfg, n_classes, for_config(cfg).model_hooks).to(device, memory_format=fmt_)
    step_model = torch.compile(model) if compile_model else model
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    out = []
    for epoch in range(1, warmup + epochs + 1):
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        n = 0
        for x, y in loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=fmt_)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = step_model(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(y)
            n += len(y)
        mean_loss = loss_sum.item() / max(n, 1)
        sync(device)
        dt = time.perf_counter() - t0
        timed = epoch > warmup
        print(f"[reference] epoch {epoch}{'' if timed else ' (warm-up)'}: {n} images in {dt:.2f}s "
              f"= {n / dt:.0f} images/s, train_loss {mean_loss:.4f}", flush=True)
        if timed:
            out.append((n, dt, mean_loss))
    del loader  # shut the persistent workers down before anything else is timed
    return out


# --- (b) the project's path ---------------------------------------------------------------------
def run_project(cfg: TrialConfig, device: torch.device, epochs: int, warmup: int,
                compile_model: bool) -> list[tuple[int, float, float]]:
    t0 = time.perf_counter()
    splits = load_splits(cfg)
    print(f"[project] dataset: {len(splits.train_y)} training images loaded from the cache in "
          f"{time.perf_counter() - t0:.2f}s (uint8 arrays, on {device} for the trial)", flush=True)
    cfg = make_config({**cfg.to_dict(), "epochs": warmup + epochs, "compile": compile_model})
    out = []

    def report(m, _get_state):
        n = len(splits.train_y)
        dt = n / m["samples_per_s"]
        timed = m["epoch"] > warmup
        print(f"[project] epoch {m['epoch']}{'' if timed else ' (warm-up)'}: {n} images in {dt:.2f}s "
              f"= {m['samples_per_s']:.0f} images/s, train_loss {m['train_loss']:.4f} "
              f"(epoch with evaluation {m['epoch_time_s']:.2f}s)", flush=True)
        if timed:
            out.append((n, dt, m["train_loss"]))

    training.run_trial(cfg, report, data=splits, device=device)
    return out


def images_per_s(rows: list[tuple[int, float, float]]) -> float:
    n = sum(r[0] for r in rows)
    t = sum(r[1] for r in rows)
    return n / t if t > 0 else float("nan")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.epoch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    p.add_argument("--model", default="alexnet", help="alexnet or efficientnet_b0")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1, help="timed epochs per path (default 1)")
    p.add_argument("--warmup", type=int, default=0, help="untimed epochs run first (default 0)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="Tiny ImageNet zip or directory")
    p.add_argument("--classes", type=int, default=25)
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="DataLoader workers of the reference (default min(4, CPUs))")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--no-augment", action="store_true", help="both paths without augmentation")
    p.add_argument("--compile", action="store_true", help="torch.compile the model in both paths")
    p.add_argument("--only", choices=("both", "reference", "project"), default="both")
    p.add_argument("--cache-dir", help="decoded-array cache (default $REGSTUDY_CACHE or ~/.cache/regstudy)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config setting, e.g. --set amp=false --set image_size=224")
    return p


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    values = {"data": args.data, "classes": args.classes, "model": args.model,
              "batch_size": args.batch_size, "device": args.device,
              "regularizer": "none" if args.no_augment else "augment"}
    if args.cache_dir:
        values["cache_dir"] = args.cache_dir
    values.update(parse_set(args.set))
    cfg = make_config(values)
    device = training.pick_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(f"machine: {machine()}")
    print(f"settings: model={cfg.model} batch_size={cfg.batch_size} device={device} classes={cfg.classes} "
          f"augment={cfg.combination.uses('augment')} amp={cfg.amp and device.type == 'cuda'} "
          f"channels_last={cfg.channels_last and device.type == 'cuda'} compile={args.compile} "
          f"epochs={args.epochs} warmup={args.warmup} workers={args.workers} data={cfg.data}", flush=True)
    result = {"reference": float("nan"), "project": float("nan")}
    if args.only in ("both", "reference"):
        result["reference"] = images_per_s(run_reference(cfg, device, args.workers, args.epochs,
                                                         args.warmup, args.compile))
    if args.only in ("both", "project"):
        result["project"] = images_per_s(run_project(cfg, device, args.epochs, args.warmup, args.compile))
    result["ratio"] = result["project"] / result["reference"]
    print(f"epoch images/s reference={fmt(result['reference'])} project={fmt(result['project'])} "
          f"ratio={fmt(result['ratio'])}", flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
