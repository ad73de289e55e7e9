"""``python -m study.dashboard results/NAME``: optuna-dashboard on an experiment's Optuna storage.

Serves on 127.0.0.1 (the dashboard can edit studies: keep it local), on a free port unless
``--port`` is given, and prints the URL. The storage is the one experiment.json records; a storage
recorded with its password as ``***`` takes the URL from ``$REGSTUDY_OPTUNA_STORAGE`` (or
``--optuna-storage``). Every study in the storage shows, so experiments that share a database
server (or a comparison that holds several studies) are all there. Stop it with Ctrl-C.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from . import cli, optuna_storage
from .config import ConfigError
from .experiment_dir import RECORD, read_record
from .redact import redact

HOST = "127.0.0.1"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.dashboard",
                                description="Start optuna-dashboard on an experiment's Optuna storage.")
    p.add_argument("experiment", type=Path, help="the experiment directory (results/NAME)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--optuna-storage", default=os.environ.get(optuna_storage.ENV) or None,
                   help="the storage URL when experiment.json records it with its password as *** "
                   f"(default: ${optuna_storage.ENV})")
    return p


def storage_url(exp_dir: Path, given: str | None = None) -> str:
    """The experiment's storage URL (with its password, if it has one: never print it as is)."""
    if not (exp_dir / RECORD).is_file():
        raise ConfigError(f"{exp_dir}: no {RECORD} (not an experiment directory of study.run)")
    record = read_record(exp_dir)
    return optuna_storage.for_experiment(record.get("optuna_storage"), exp_dir, given,
                                         what="the dashboard of an experiment")


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # (one line per request would drown the URL)
        pass


def serve(url: str, port: int = 0) -> WSGIServer:
    """A server (not yet serving) of optuna-dashboard's WSGI app for the storage at ``url``."""
    try:
        from optuna_dashboard import wsgi
    except ImportError:
        raise ConfigError("optuna-dashboard is not installed: pip install -e '.[watch]' "
                          "(or pip install optuna-dashboard)") from None

    app = wsgi(optuna_storage.open_storage(url))
    return make_server(HOST, port, app, handler_class=_Quiet)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: expected 0 (a free port) to 65535")
    exp_dir = args.experiment.expanduser().absolute()
    url = storage_url(exp_dir, args.optuna_storage)
    optuna_storage.check(url, f"experiment {exp_dir.name!r}: its Optuna storage")
    try:
        server = serve(url, args.port)
    except OSError as e:
        raise ConfigError(f"--port {args.port}: cannot listen on {HOST}:{args.port} ({e.strerror})") from None
    print(f"optuna-dashboard: http://{HOST}:{server.server_port}/dashboard/ (storage {redact(url)}; "
          "Ctrl-C stops it)", flush=True)
    # Ctrl-C and SIGTERM stop the server between requests (a KeyboardInterrupt raised inside a
    # request would be swallowed by wsgiref's error handling and the server would go on)
    stop = lambda signum, frame: threading.Thread(target=server.shutdown, daemon=True).start()  # noqa: E731
    saved = {}
    if threading.current_thread() is threading.main_thread():
        saved = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever()
        print("optuna-dashboard stopped", flush=True)
    finally:
        server.server_close()
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main()))
