"""Keep credentials out of what we print and record (experiment.json, logs, error messages)."""
from __future__ import annotations

import os
import re
from typing import Callable

# scheme://user:password@host -> scheme://user:***@host (SQLAlchemy URLs for --optuna-storage)
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@\s]+@")


def redact(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", str(text))


class Passwords:
    """URLs that are printed, recorded and pickled with their passwords as ``***``: the whole URL
    comes back from this process's memory (every URL it was given) or from the environment
    variable ``env`` (a later driver). ``normalise``: how the variable's value is read."""

    def __init__(self, env: str, normalise: Callable[[str], str] = str):
        self.env, self.normalise = env, normalise
        self.known: dict[str, str] = {}  # redacted -> whole: this process's memory only

    def remember(self, url: str) -> str:
        self.known[redact(url)] = url
        return url

    def find(self, recorded: str) -> str | None:
        """The URL whose redacted form is ``recorded`` (itself where it has no password), or None."""
        if "***" not in recorded or redact(recorded) != recorded:
            return recorded
        if recorded in self.known:
            return self.known[recorded]
        env = os.environ.get(self.env)
        if env and redact(self.normalise(env)) == recorded:
            return self.normalise(env)
        return None
