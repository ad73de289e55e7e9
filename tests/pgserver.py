"""A throwaway PostgreSQL server for the tests: initdb into a temp dir, listen on 127.0.0.1 on a
free port (password authentication only), one database and one user with a password.

Uses Debian's ``postgresql`` package (``.ci/run`` installs it): the binaries on PATH or under
``/usr/lib/postgresql/<version>/bin``. PostgreSQL refuses to run as root; as root, the server
runs as the package's ``postgres`` user (``runuser``).
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
from pathlib import Path


def binaries() -> Path | None:
    """The directory of initdb/pg_ctl/postgres, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(user: str = "regstudy", password: str = "pw", database: str = "optuna"):
    """Yield the SQLAlchemy URL ``postgresql://user:password@127.0.0.1:PORT/database``."""
    bin_dir = binaries()
    assert bin_dir is not None, "PostgreSQL binaries not found"
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="regstudy-pg-"))  # (not under pytest's 0700 dirs: the server user reads it)
    data, port = root / "data", _free_port()

    def pg(*args: str) -> None:
        r = subprocess.run([*run_as, *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{args[0]} failed:\n{r.stdout}\n{r.stderr}\n" + (
            (root / "log").read_text() if (root / "log").exists() else "")

    try:
        superpw = root / "superpw"
        superpw.write_text("super-" + password + "\n")
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("PostgreSQL refuses to run as root, and there is no 'postgres' user to run "
                                   "it as (Debian's postgresql package creates it)") from None
            for p in (root, superpw):
                os.chown(p, owner.pw_uid, owner.pw_gid)
            run_as = ["runuser", "-u", "postgres", "--"]
        pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(superpw),
           "-A", "scram-sha-256", "-E", "UTF8", "--locale", "C", "--no-sync")
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "start",
           "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
                 "-c synchronous_commit=off -c full_page_writes=off")
        import psycopg
        from psycopg import sql
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", password="super-" + password,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user),
                                                                            sql.Literal(password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database),
                                                                       sql.Identifier(user)))
        yield f"postgresql://{user}:{urllib.parse.quote(password, safe='')}@127.0.0.1:{port}/{database}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
