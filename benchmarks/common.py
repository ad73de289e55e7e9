"""Shared bits of the benchmarks: the default data path, machine description, timing helpers."""
from __future__ import annotations

import os
import platform
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "tiny-imagenet-25.zip"


def machine() -> str:
    """One line: CPU count, load average, torch version and the GPU if any."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    try:
        load = "load %.2f/%.2f/%.2f" % os.getloadavg()
    except OSError:
        load = "load n/a"
    return (f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs ({load}), {gpu}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), python {platform.python_version()}")


def sync(device) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


@contextmanager
def timer(out: dict, key: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        out[key] = time.perf_counter() - t0


def fmt(x: float) -> str:
    """Compact number for the summary lines: 3 significant figures, no exponent for the usual range."""
    if x != x:  # NaN
        return "nan"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"
