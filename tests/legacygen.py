"""Generate an experiment recorded by the code before the regularizer catalog (commit 04efc63),
for tests that check it still resumes and analyses: the old code is taken from this repository's
own history (`git archive`), run as a subprocess on a tiny generated corpus, and interrupted
with SIGINT after two trials finished, so one trial is left unfinished and one not started."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

LEGACY_COMMIT = "04efc6386e866100d5b213d8f95f3e6eee4af5f3"
REPO = Path(__file__).resolve().parents[1]
SPACE = """description: Legacy experiment - tiny POS RNN, regularizer type as a conditional choice.
fixed: {task: pos, model: rnn, corpus: treebank, tagset: universal, embed_dim: 8, hidden: 8, epochs: 3}
search:
  lr: {dist: loguniform, low: 1.0e-3, high: 1.0e-2}
  regularizer:
    dist: conditional
    choices:
      none: {}
      l2: {l2: {dist: loguniform, low: 1.0e-7, high: 1.0e-3}}
      dropout: {dropout: {dist: uniform, low: 0.0, high: 0.6}}
      l2_dropout:
        l2: {dist: loguniform, low: 1.0e-7, high: 1.0e-3}
        dropout: {dist: uniform, low: 0.0, high: 0.6}
sweep: {num_samples: 4, grace_period: 1, reduction_factor: 2, seed: 0}
"""


def legacy_code(dest: Path) -> Path | None:
    """The old `study` package extracted into ``dest``; None where the history is not there
    (a shallow clone)."""
    r = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", LEGACY_COMMIT, "study"],
                       capture_output=True)
    if r.returncode != 0:
        return None
    dest.mkdir(parents=True, exist_ok=True)
    tar = dest / "old.tar"
    tar.write_bytes(r.stdout)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    return dest


def record_interrupted(code: Path, results: Path, nltk_dir: Path, timeout_s: float = 240) -> Path:
    """Run the old driver and SIGINT it when the third trial has its first checkpoint."""
    space = results.parent / "legacy_space.yaml"
    space.write_text(SPACE)
    env = {**os.environ, "PYTHONPATH": str(code), "REGSTUDY_FAULT": "sleep@1", "REGSTUDY_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "study.run", "--space", str(space), "--nltk-data", str(nltk_dir),
           "--name", "legacy", "--results-dir", str(results), "--max-concurrent", "1", "--num-cpus", "2"]
    proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    search = results / "legacy" / "ray" / "search"
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            trials = sorted(search.glob("trial_*"), key=lambda d: d.stat().st_mtime) if search.exists() else []
            if len(trials) >= 3 and any(trials[-1].glob("checkpoint_*")):
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.2)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode != 130:
        raise RuntimeError(f"the old driver exited {proc.returncode}, not 130: {err.decode()[-2000:]}")
    return results / "legacy"
