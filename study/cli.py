"""The exit-code contract of every command, and the one wrapper that keeps it.

    0    done
    1    a trial diverged, training failed, or the results could not be written
    2    bad input: an option, a setting, a path, the data or another file cannot be used
    130  interrupted (Ctrl-C, SIGTERM)

Usage (a command's ``main``)::

    from study import cli

    def main(argv=None) -> int:
        return cli.run(lambda: _main(argv), bad_input=(MyInputError,))

``run(body, bad_input=())`` calls ``body()`` and returns its exit code. While it runs, SIGINT and
SIGTERM raise ``KeyboardInterrupt`` (SIGTERM too, so a scheduler's stop is a clean one). What
escapes ``body`` becomes one line on stderr and an exit code:

* ``KeyboardInterrupt`` -> "interrupted (SIGINT): <its message>", 130
* :class:`UsageError`, ``study.errors.USER_ERRORS`` (config, data, download, corpus errors,
  FileNotFoundError) and the command's own ``bad_input`` -> "error: <message>", 2
* an ``OSError`` such as a full disk -> "error: <strerror> (<file>)", 1
* any other ``Exception`` (a bug) -> "error: <type>: <message> (set REGSTUDY_DEBUG=1 ...)", 1

The message is the exception's own: raise errors that name the option, key or file and what is
allowed. ``REGSTUDY_DEBUG=1`` in the environment also prints the traceback (same exit code).
``argparse``'s own usage errors stay as they are (its message names the option; exit 2).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
DEBUG_ENV = "REGSTUDY_DEBUG"


class UsageError(Exception):
    """A command-line option or a path given to a command cannot be used (exit 2)."""


def _bad_input() -> tuple[type[BaseException], ...]:
    from .errors import USER_ERRORS  # (imports the config and data modules: only when needed)
    return (UsageError, *USER_ERRORS)


def debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes", "on")


def one_line(text: object) -> str:
    return " ".join(str(text).split())


class _Signals:
    """SIGINT and SIGTERM raise KeyboardInterrupt while the body runs; the previous handlers come
    back afterwards. Only the main thread can install handlers (elsewhere: left as they are)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.saved: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        self.received = signal.Signals(signum).name
        raise KeyboardInterrupt

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.saved[s] = signal.getsignal(s)
                signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self.saved.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def run(body: Callable[[], int], *, bad_input: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command's body under the exit-code contract (see the module docstring)."""
    with _Signals() as sig:
        try:
            return body()
        except KeyboardInterrupt as e:
            if debug():
                traceback.print_exc()
            detail = one_line(e) if str(e) else "stopped before the end; nothing more was written"
            print(f"interrupted ({sig.received or 'SIGINT'}): {detail}", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        except (*_bad_input(), *bad_input) as e:
            if debug():
                traceback.print_exc()
            print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
        except Exception as e:  # noqa: BLE001 - the contract: one line, exit 1, traceback on demand
            if debug():
                traceback.print_exc()
            if isinstance(e, OSError) and e.strerror:  # e.g. the disk filled up while writing
                what = f"{e.strerror}{f' ({e.filename})' if e.filename else ''}"
            else:
                what = f"{type(e).__name__}: {one_line(e)} (set {DEBUG_ENV}=1 for the traceback)"
            print(f"error: {what}", file=sys.stderr, flush=True)
            return EXIT_FAILED
