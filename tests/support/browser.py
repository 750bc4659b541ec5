"""A minimal headless-Chromium driver over the DevTools protocol, for checking reports (tests, bench).

Not used to build a report. Needs a ``chromium`` (or ``chromium-browser`` / ``google-chrome``) binary and
the ``websocket-client`` package (the ``test`` extra). Every browser gets a fresh user-data-dir and is
killed on :meth:`Chromium.close` (use it as a context manager).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
    "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars", "--no-default-browser-check",
)


def find_chromium() -> str | None:
    env = os.environ.get("CCS_CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in BINARIES:
        p = shutil.which(name)
        if p:
            return p
    return None


class BrowserError(RuntimeError):
    pass


class Chromium:
    """``with Chromium() as b: b.open(path); b.eval("document.title")``."""

    def __init__(self, binary: str | None = None, timeout: float = 30.0, width: int = 1280, height: int = 900):
        import websocket  # websocket-client

        self._websocket = websocket
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError("no chromium binary found (apt-get install chromium)")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="ccs-chromium-")
        self.log_path = Path(self.profile) / "chromium.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "about:blank"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        self.events: list[dict[str, Any]] = []
        self._id = 0
        try:
            port = self._wait_port()
            self.ws = self._connect(port)
        except BaseException:
            self.close()
            raise

    # -- plumbing ------------------------------------------------------------------------------------

    def _wait_port(self) -> int:
        f = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited with {self.proc.returncode}: {self._tail()}")
            if f.exists():
                lines = f.read_text().split()
                if lines:
                    return int(lines[0])
            time.sleep(0.05)
        raise BrowserError(f"chromium did not open its DevTools port in {self.timeout:.0f} s: {self._tail()}")

    def _connect(self, port: int):
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                    targets = json.loads(r.read())
                pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
                if pages:
                    return self._websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=self.timeout,
                                                             suppress_origin=True)
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrowserError(f"no page target on DevTools port {port}: {self._tail()}")
            time.sleep(0.1)

    def _tail(self) -> str:
        try:
            self._log.flush()
            return self.log_path.read_text(errors="replace")[-800:]
        except OSError:
            return ""

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        my = self._id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise BrowserError(f"{method}: no answer in {self.timeout:.0f} s")

    def wait_event(self, name: str, timeout: float | None = None) -> dict[str, Any]:
        for e in self.events:
            if e["method"] == name:
                self.events.remove(e)
                return e
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            self.ws.settimeout(max(deadline - time.monotonic(), 0.05))
            try:
                msg = json.loads(self.ws.recv())
            except self._websocket.WebSocketTimeoutException:
                break
            finally:
                self.ws.settimeout(self.timeout)
            if msg.get("method") == name:
                return msg
            if "method" in msg:
                self.events.append(msg)
        raise BrowserError(f"no {name} event in {timeout or self.timeout:.0f} s")

    # -- verbs ---------------------------------------------------------------------------------------

    def open(self, path: str | Path, offline: bool = True) -> float:
        """Navigate to a local file and wait for its load event; return the seconds it took."""
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")
        if offline:
            self.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1, uploadThroughput=-1)
        self.events.clear()
        t0 = time.perf_counter()
        self.call("Page.navigate", url=Path(path).resolve().as_uri())
        self.wait_event("Page.loadEventFired")
        return time.perf_counter() - t0

    def eval(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise BrowserError(f"script failed: {r['exceptionDetails'].get('text')} {r['exceptionDetails'].get('exception', {}).get('description', '')}")
        return r.get("result", {}).get("value")

    def click(self, selector: str) -> None:
        """A real mouse click at the centre of the first element matching ``selector``."""
        rect = self.eval(
            f"(function(){{var e=document.querySelector({json.dumps(selector)}); if(!e) return null;"
            "e.scrollIntoView({block:'center', behavior:'instant'}); var r=e.getBoundingClientRect();"
            "return {x:r.left+r.width/2, y:r.top+r.height/2};})()"
        )
        if rect is None:
            raise BrowserError(f"nothing matches {selector!r}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            extra = {"button": "left", "clickCount": 1} if kind != "mouseMoved" else {}
            self.call("Input.dispatchMouseEvent", type=kind, x=rect["x"], y=rect["y"], **extra)

    def screenshot(self, path: str | Path, full_page: bool = False, max_height: int = 8000) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            m = self.call("Page.getLayoutMetrics")
            size = m.get("cssContentSize") or m.get("contentSize")
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1})
        data = self.call("Page.captureScreenshot", **params)["data"]
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(base64.b64decode(data))
        return p

    def drain(self, seconds: float = 0.2) -> None:
        """Collect pending events for a moment (console messages, exceptions)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.ws.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                msg = json.loads(self.ws.recv())
            except self._websocket.WebSocketTimeoutException:
                break
            finally:
                self.ws.settimeout(self.timeout)
            if "method" in msg:
                self.events.append(msg)

    def problems(self) -> list[str]:
        """Exceptions thrown and console errors/CSP violations seen so far."""
        self.drain()
        out = []
        for e in self.events:
            if e["method"] == "Runtime.exceptionThrown":
                out.append("exception: " + str(e["params"]["exceptionDetails"].get("exception", {}).get("description")
                                               or e["params"]["exceptionDetails"].get("text")))
            elif e["method"] == "Log.entryAdded" and e["params"]["entry"].get("level") == "error":
                out.append("log: " + e["params"]["entry"].get("text", ""))
            elif e["method"] == "Runtime.consoleAPICalled" and e["params"].get("type") == "error":
                out.append("console: " + json.dumps(e["params"].get("args"))[:300])
        return out

    def requests(self) -> list[str]:
        self.drain()
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    # -- teardown ------------------------------------------------------------------------------------

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            try:
                ws.close()
            except Exception:  # noqa: BLE001
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def query_all(b: Chromium, selector: str, expr: str = "length") -> object:
    """``document.querySelectorAll(selector).<expr>`` in the open page (default: how many match)."""
    return b.eval(f"document.querySelectorAll({json.dumps(selector)}).{expr}")
