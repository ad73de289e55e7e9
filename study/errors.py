"""The exceptions that mean "the user's input is wrong" (exit code 2, one-line message)."""
from __future__ import annotations

from .config import ConfigError
from .corpora import CorpusError
from .download import DownloadError
from .datasets import DataError


USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, DataError, DownloadError, CorpusError,
                                                FileNotFoundError)
