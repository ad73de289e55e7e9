"""The line that tells where the Ray dashboard is and how to get past its token prompt.

Since Ray 2.59 a local cluster uses token auth: the dashboard's page opens on "Authentication
Token Required" and its API answers 401 without the token. Ray 2.60's dashboard takes the token
only through that prompt (it then sets an HttpOnly cookie) or an ``Authorization: Bearer`` header;
no URL carries it. ``ray get-auth-token`` prints it, from wherever Ray finds it ($RAY_AUTH_TOKEN,
$RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token). The line names that command, never the token: what is
printed ends up in logs.
"""
from __future__ import annotations

import json
import shlex
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

PROMPT = "Authentication Token Required"  # the dashboard's own words


def token_command() -> str:
    """``ray get-auth-token``, with the path of this installation's ``ray`` when ``ray`` on PATH is
    another one (or none)."""
    own = Path(sys.executable).parent / "ray"
    found = shutil.which("ray")
    if own.exists() and (found is None or Path(found).resolve() != own.resolve()):
        return f"{shlex.quote(str(own))} get-auth-token"
    return "ray get-auth-token"


def auth_mode(url: str, timeout_s: float = 3.0) -> str | None:
    """"token" or "disabled", from the dashboard's public endpoint; None when it does not answer."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/authentication_mode", timeout=timeout_s) as r:
            return str(json.load(r).get("authentication_mode") or "") or None
    except (OSError, urllib.error.URLError, ValueError):
        return None


def start_line(url: str | None) -> str:
    if not url:
        return "Ray dashboard: (not running)"
    url = url if url.startswith("http") else f"http://{url}"
    mode = auth_mode(url)
    if mode == "disabled":
        return f"Ray dashboard: {url}"
    how = f'at its "{PROMPT}" prompt, paste what `{token_command()}` prints'
    return f"Ray dashboard: {url} ({how})" if mode == "token" else f"Ray dashboard: {url} (if it asks for a token: {how})"
