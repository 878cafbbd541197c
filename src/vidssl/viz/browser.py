"""Open a report in a real headless Chromium: what rendered, what the console said, a screenshot.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: messages
are JSON terminated by a NUL byte, on file descriptors 3 and 4 of the browser process), so
nothing but the browser itself is needed: no driver binary, no websocket library, no port.
Debian and Ubuntu ship it as ``chromium`` (``apt-get install chromium``); ``VIDSSL_CHROMIUM``
names another binary. Used by the report's browser test and to take screenshots::

    with HeadlessChromium() as browser:
        page = browser.open("runs/demo/report.html")
        assert not page.console_errors and all(i["naturalWidth"] > 0 for i in page.images)
        browser.screenshot("runs/demo/report.png")
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from vidssl.io import write_bytes_atomic

__all__ = ["find_chromium", "HeadlessChromium", "PageReport", "BrowserError"]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# What the page reports about itself once loaded: every table and every image as the browser sees it.
_INSPECT = """JSON.stringify({
  title: document.title,
  tables: [...document.querySelectorAll("table")].map(t => ({className: t.className, split: t.dataset.split || null,
           rows: t.rows.length, cells: t.querySelectorAll("td").length,
           height: t.getBoundingClientRect().height})),
  images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth,
           naturalHeight: i.naturalHeight, src: i.src.slice(0, 30)})),
  scripts: document.scripts.length,
  external: [...document.querySelectorAll("[src],link[href]")].map(e => e.src || e.href)
            .filter(u => !u.startsWith("data:"))
})"""


class BrowserError(RuntimeError):
    """Chromium could not be started, or stopped answering."""


@dataclass
class PageReport:
    """A loaded page: ``tables`` and ``images`` as the browser laid them out, every console error."""

    url: str
    title: str
    tables: list[dict] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    scripts: int = 0
    external: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


def find_chromium() -> str | None:
    """The Chromium binary: ``$VIDSSL_CHROMIUM``, else the first of chromium / chrome on PATH."""
    named = os.environ.get("VIDSSL_CHROMIUM")
    if named:
        return named if shutil.which(named) else None
    return next((path for name in _CANDIDATES if (path := shutil.which(name))), None)


class HeadlessChromium:
    """One headless browser with one tab; use as a context manager (the browser is closed after)."""

    def __init__(self, binary: str | None = None, *, width: int = 1280, height: int = 900,
                 timeout: float = 60.0) -> None:
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError("no Chromium found (install Debian's `chromium` package, or set VIDSSL_CHROMIUM "
                               "to a Chromium or Chrome binary)")
        self.width, self.height, self.timeout = int(width), int(height), float(timeout)
        self._process = None
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict] = []
        self._session = None

    # ----------------------------------------------------------------------------------------
    # life cycle

    def __enter__(self) -> "HeadlessChromium":
        self._profile = tempfile.mkdtemp(prefix="vidssl-chromium-")
        # A file, not a pipe: Chromium logs freely and a full pipe nobody reads would stall it.
        self._log = open(Path(self._profile) / "stderr.log", "w+b")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def on_fds_3_and_4():  # in the child, before exec: the protocol's pipe ends at 3 and 4
            # Copied above 10 first: either end may itself be fd 3 or 4.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        args = [self.binary, "--headless", "--disable-gpu", "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                "--disable-background-networking", "--hide-scrollbars", f"--window-size={self.width},{self.height}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        try:
            # pass_fds keeps 3 and 4 open through exec (closing the other descriptors runs after preexec_fn).
            self._process = subprocess.Popen(args + ["about:blank"], pass_fds=(3, 4), preexec_fn=on_fds_3_and_4,
                                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=self._log)
        except OSError as err:
            self._cleanup()
            raise BrowserError(f"cannot start {self.binary}: {err}") from err
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable", session=True)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._process is not None and self._process.poll() is None:
            try:
                self._send("Browser.close", {})
                self._process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, BrowserError):
                self._process.kill()
                self._process.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        for fd in (getattr(self, "_to_browser", None), getattr(self, "_from_browser", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._to_browser = self._from_browser = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
        shutil.rmtree(getattr(self, "_profile", ""), ignore_errors=True)

    # ----------------------------------------------------------------------------------------
    # what a caller uses

    def open(self, path: str | os.PathLike) -> PageReport:
        """Load a local file, wait for its load event, and report its tables, images and console errors."""
        path = Path(path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"page not found: {path}")
        url = path.as_uri()
        self._events.clear()
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                          "deviceScaleFactor": 1, "mobile": False}, session=True)
        result = self.call("Page.navigate", {"url": url}, session=True)
        if result.get("errorText"):
            raise BrowserError(f"{url}: {result['errorText']}")
        self._wait_for("Page.loadEventFired")
        seen = json.loads(self.evaluate(_INSPECT))
        return PageReport(url=url, title=seen["title"], tables=seen["tables"], images=seen["images"],
                          scripts=seen["scripts"], external=seen["external"], console_errors=self._console_errors())

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def screenshot(self, out: str | os.PathLike, *, full_page: bool = True) -> Path:
        """A PNG of the loaded page (its whole height with ``full_page``), written atomically."""
        params = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": self.width, "height": float(size["height"]), "scale": 1})
        data = self.call("Page.captureScreenshot", params, session=True)["data"]
        return write_bytes_atomic(out, base64.b64decode(data))

    # ----------------------------------------------------------------------------------------
    # the protocol

    def call(self, method: str, params: dict | None = None, *, session: bool = False) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        message_id = self._send(method, params or {}, session=session)
        while True:
            message = self._receive()
            if message.get("id") == message_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            if "method" in message:
                self._events.append(message)

    def _send(self, method: str, params: dict, *, session: bool = False) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except (OSError, TypeError) as err:
            raise BrowserError(f"{method}: the browser is gone ({err})") from err
        return self._next_id

    def _receive(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, left))
            if not ready:
                raise BrowserError(f"Chromium did not answer within {self.timeout:.0f} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                self._log.seek(0)
                detail = self._log.read().decode(errors="replace")[-2000:]
                raise BrowserError(f"Chromium exited (code {self._process.poll()}): {detail.strip()}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _wait_for(self, event: str) -> None:
        while not any(e.get("method") == event for e in self._events):
            message = self._receive()
            if "method" in message:
                self._events.append(message)

    def _console_errors(self) -> list[str]:
        errors = []
        for e in self._events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = p.get("exceptionDetails", {})
                errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                entry = p["entry"]
                errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        return errors
