"""Where an experiment's Optuna study lives (``--optuna-storage``): every rule about the URL.

Forms:
  ``sqlite:///PATH``            the default, ``<experiment dir>/optuna.db``
  ``postgresql://USER:PW@HOST:PORT/DB`` (or any other SQLAlchemy URL): a database server
  ``journal:PATH``              Optuna's journal file (``JournalStorage`` + ``JournalFileBackend``)

A password never reaches a file or a printed line: experiment.json records the URL with it as
``***``, and so do the pickles Ray Tune writes of the searcher (``tuner.pkl``, the searcher
state), through :class:`RDBStorageWithoutPassword`. The real URL stays in the memory of the
driver that was given it; a later process (``--resume``, the analysis) takes it from
``$REGSTUDY_OPTUNA_STORAGE`` (or ``--optuna-storage``) when its redacted form is the recorded one.
"""
from __future__ import annotations

import os
from pathlib import Path

import optuna

from .config import ConfigError
from .redact import Passwords, redact

ENV = "REGSTUDY_OPTUNA_STORAGE"
JOURNAL = "journal:"
SQLITE = "sqlite:///"
DEFAULT_FILE = "optuna.db"
# experiment.json of experiments recorded before storages were recorded redacted
LEGACY_USER_GIVEN = "(user-given: --optuna-storage)"



def default_url(exp_dir: Path) -> str:
    return f"{SQLITE}{Path(exp_dir) / DEFAULT_FILE}"


# How experiment.json records the default storage: relative to the experiment directory, so that
# a moved or copied experiment reads its own database (see for_experiment)
DEFAULT_RECORD = SQLITE + DEFAULT_FILE


def record(given: str | None) -> str:
    """What experiment.json records for the storage given by --optuna-storage (None: the default)."""
    return recorded_form(given) if given else DEFAULT_RECORD


def normalise(url: str) -> str:
    """One spelling per storage: ``postgres://`` (as Heroku and libpq write it) is SQLAlchemy's
    ``postgresql://``; a journal path is made absolute (Tune runs the searcher in the driver,
    whose working directory may differ from a later resume's)."""
    url = url.strip()
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith(JOURNAL):
        path = url[len(JOURNAL):]
        if not path:
            raise ConfigError(f"--optuna-storage {url}: journal:PATH needs the path of the journal file")
        url = JOURNAL + str(Path(path).expanduser().absolute())
    return url


_PASSWORDS = Passwords(ENV, normalise)  # the storages given to this process, or $REGSTUDY_OPTUNA_STORAGE


def _journal_path(url: str) -> Path | None:
    return Path(url[len(JOURNAL):]) if url.startswith(JOURNAL) else None


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage object for ``url`` (remembered for unpickling; see the module docstring)."""
    url = normalise(url)
    journal = _journal_path(url)
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        journal.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(journal)))
    _PASSWORDS.remember(url)
    # pre-ping: a sweep runs for days; a server restart or an idle timeout must not end it
    kwargs = {} if url.startswith("sqlite") else {"pool_pre_ping": True}
    return RDBStorageWithoutPassword(url, engine_kwargs=kwargs)


class RDBStorageWithoutPassword(optuna.storages.RDBStorage):
    """An RDBStorage whose pickles hold the URL with its password as ``***``; unpickled, it takes
    the password from this process's memory or ``$REGSTUDY_OPTUNA_STORAGE``."""

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["url"] = redact(state["url"])
        return state

    def __setstate__(self, state: dict) -> None:
        state = {**state, "url": with_password(state["url"])}
        super().__setstate__(state)


def with_password(recorded: str) -> str:
    """The URL whose redacted form is ``recorded``: from this process's memory or the
    environment. Raises ConfigError naming what to set where the password is not known."""
    found = _PASSWORDS.find(recorded)
    if found is not None:
        return found
    env = os.environ.get(ENV)
    raise ConfigError(f"the Optuna study is in {recorded}: set {ENV} to that URL with its password"
                      + (f" ({ENV} is set to another storage: {redact(env)})" if env else ""))


def check(url: str, what: str = "--optuna-storage") -> None:
    """Fail fast (ConfigError, password hidden) on a storage that cannot be opened; ``what``
    begins the message (the option, or which experiment's recorded storage it is)."""
    url = normalise(url)
    journal = _journal_path(url)
    if journal is not None:
        if journal.is_dir():
            raise ConfigError(f"{what} {url}: is a directory; journal:PATH names a file")
        existing = next(p for p in (journal, *journal.parents) if p.exists())
        if not existing.is_dir() and existing != journal or not os.access(existing, os.W_OK):
            raise ConfigError(f"{what} {url}: {existing} is not writable")
        return
    try:
        open_storage(url)
    except Exception as e:  # any driver's error: name the URL (redacted) and the first line
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{what} {redact(url)}: cannot open it: {redact(reason)}") from None


def recorded_form(url: str) -> str:
    """What experiment.json records: the URL with its password as ``***``."""
    return redact(normalise(url))


def _resolve_relative(url: str, exp_dir: Path) -> str:
    """A file storage recorded relative to the experiment directory -> its absolute URL."""
    for prefix in (SQLITE, JOURNAL):
        if url.startswith(prefix) and not Path(url[len(prefix):]).is_absolute():
            return prefix + str(Path(exp_dir) / url[len(prefix):])
    return url


def for_experiment(recorded: str | None, exp_dir: Path, given: str | None = None,
                   what: str = "a resumed or confirmed experiment") -> str:
    """The storage URL an existing experiment continues with (``--resume``, ``--confirm-only``)
    or is read from (the analysis): the recorded one, with its password from ``given`` or
    ``$REGSTUDY_OPTUNA_STORAGE``; a ``given`` storage that is not the recorded one is an error."""
    exp_dir = Path(exp_dir)
    if not recorded:  # recorded before storages were: the default, unless one is given
        return normalise(given) if given else default_url(exp_dir)
    if recorded == LEGACY_USER_GIVEN:
        if not given:
            raise ConfigError(f"experiment {exp_dir.name!r} used a storage given by --optuna-storage that "
                              f"it did not record: give it again (set {ENV})")
        return normalise(given)
    recorded = _resolve_relative(recorded, exp_dir)
    if recorded.startswith(SQLITE) and (exp_dir / DEFAULT_FILE).exists() \
            and Path(recorded[len(SQLITE):]).name == DEFAULT_FILE:
        # Older records name the default storage by its absolute path: in a moved or copied
        # experiment directory that is the original's database (or nothing); its own copy wins.
        recorded = default_url(exp_dir)
    if given:
        if recorded_form(given) != recorded_form(recorded):
            raise ConfigError(f"--optuna-storage {recorded_form(given)}: experiment {exp_dir.name!r} keeps "
                              f"its Optuna study in {recorded_form(recorded)}; {what} keeps its storage "
                              f"(unset {ENV} or give that one)")
        return normalise(given)
    return with_password(recorded)


def for_reading(recorded: str | None, exp_dir: Path) -> str:
    """The storage URL to read an experiment's study from (the analysis): the recorded one (the
    password, if any, from ``$REGSTUDY_OPTUNA_STORAGE``), whatever else that variable says."""
    given = os.environ.get(ENV) if recorded == LEGACY_USER_GIVEN else None
    return for_experiment(recorded, exp_dir, given)
