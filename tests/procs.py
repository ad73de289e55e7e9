"""Helpers for tests that run processes: wait for a condition while a process lives, stop one."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest


def wait_for(proc: subprocess.Popen, log: Path, cond, what: str, timeout: float = 240) -> None:
    """Poll ``cond()`` until it holds; fail if ``proc`` exits first (with its log's tail) or on timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        assert proc.poll() is None, f"driver exited while waiting for {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
