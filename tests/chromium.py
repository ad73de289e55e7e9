"""A headless Chromium for the tests, driven over the DevTools protocol (aiohttp's websocket
client, which Ray's dashboard already depends on): open a page, read its text, type into it,
press keys, take a screenshot. Debian's ``chromium`` package (``.ci/run`` installs it).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from procs import stop

NAMES = ("chromium", "chromium-browser", "google-chrome")


def binary() -> str | None:
    return next(filter(None, map(shutil.which, NAMES)), None)


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws, self._ids = ws, itertools.count(1)
        self.events: list[dict] = []  # the protocol's events seen so far (console messages, exceptions)

    async def call(self, method: str, **params):
        i = next(self._ids)
        await self.ws.send_json({"id": i, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if "method" in msg:
                self.events.append(msg)
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def evaluate(self, expression: str):
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")

    async def text(self) -> str:
        try:
            return await self.evaluate("document.body ? document.body.innerText : ''") or ""
        except RuntimeError as e:  # (the page is being replaced: a reload, a navigation)
            if "navigated" in str(e) or "context" in str(e).lower():
                return ""
            raise

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def wait_text(self, predicate, timeout_s: float = 60.0) -> str:
        """The page's text once ``predicate(text)`` holds (the last text seen if it never does)."""
        deadline = time.monotonic() + timeout_s
        text = await self.text()
        while not predicate(text) and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            text = await self.text()
        return text

    async def type(self, text: str) -> None:
        await self.call("Input.insertText", text=text)

    async def press(self, key: str, code: int) -> None:
        for kind in ("keyDown", "keyUp"):
            await self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads reported so far (needs
        ``Runtime.enable`` and ``Log.enable``)."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"{p['entry'].get('text', '')} {p['entry'].get('url', '')}".strip())
        return out

    async def screenshot(self, path: Path) -> Path:
        shot = await self.call("Page.captureScreenshot", format="png")
        Path(path).write_bytes(base64.b64decode(shot["data"]))
        return Path(path)


@contextlib.asynccontextmanager
async def page(exe: str, width: int = 1400, height: int = 900):
    """A fresh headless browser (own profile in a temp dir) and its first tab."""
    profile = tempfile.mkdtemp(prefix="regstudy-chromium-")
    proc = subprocess.Popen(
        [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", f"--window-size={width},{height}",
         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{exe} did not start (exit code {proc.poll()})")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                tab = next(t for t in await r.json() if t["type"] == "page")
            async with http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                p = Page(ws)
                await p.call("Page.enable")
                yield p
    finally:
        stop(proc)
        shutil.rmtree(profile, ignore_errors=True)
