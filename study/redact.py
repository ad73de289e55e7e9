"""Keep credentials out of what we print and record (experiment.json, logs, error messages)."""
from __future__ import annotations

import re

# scheme://user:password@host -> scheme://user:***@host (SQLAlchemy URLs for --optuna-storage)
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@\s]+@")


def redact(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", str(text))
