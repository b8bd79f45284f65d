"""Open every page of the built site (``make docs``) in headless Chromium; report console errors.

    python tools/check_site.py [--screenshot home.png]

Serves ``site/`` on 127.0.0.1 (a free port), starts Chromium with a DevTools
port, loads each page and collects console errors, uncaught exceptions and
failed loads (``Log.entryAdded`` at level error).  Exits 1 if any page has
one.  Needs ``chromium`` on PATH (not part of ``make test``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

SITE = Path(__file__).resolve().parents[1] / "site"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1280,900",
    "--remote-debugging-port=0",
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def chromium() -> Iterator[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        sys.exit("chromium not found (apt-get install -y chromium)")
    profile = tempfile.mkdtemp(prefix="check-site-")
    process = subprocess.Popen(
        [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or process.poll() is not None:
                sys.exit("chromium did not start")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """One DevTools page target, spoken to over its websocket."""

    def __init__(self, port: str) -> None:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            targets = json.load(reply)
        url = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
        self.ws = connect(url, max_size=64 * 1024 * 1024)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == self.next_id:
                return dict(message.get("result", {}))
            self.events.append(message)

    def load(self, url: str) -> list[str]:
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                return [f"{url}: did not finish loading"]
            with contextlib.suppress(TimeoutError):
                self.events.append(json.loads(self.ws.recv(timeout=1)))
        settle = time.monotonic() + 1.0  # late scripts (search worker, ...)
        while time.monotonic() < settle:
            with contextlib.suppress(TimeoutError):
                self.events.append(json.loads(self.ws.recv(timeout=0.2)))
        return [problem for e in self.events if (problem := describe(e))]


def describe(event: dict[str, Any]) -> str | None:
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return "console: " + " ".join(str(a.get("value", a)) for a in params.get("args", []))
    if method == "Runtime.exceptionThrown":
        return "exception: " + str(params["exceptionDetails"].get("text"))
    if method == "Log.entryAdded" and params["entry"].get("level") == "error":
        entry = params["entry"]
        return f"log: {entry.get('text')} {entry.get('url', '')}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the home page here")
    parser.add_argument("--site", type=Path, default=SITE)
    args = parser.parse_args()
    pages = sorted(p.relative_to(args.site) for p in args.site.rglob("*.html"))
    failures = 0
    with serve(args.site) as base, chromium() as port:
        page = Page(port)
        for relative in pages:
            problems = page.load(f"{base}/{relative.as_posix()}")
            failures += bool(problems)
            print(f"{'FAIL' if problems else 'ok  '} {relative}")
            for problem in problems:
                print(f"     {problem}")
        if args.screenshot is not None:
            page.load(f"{base}/index.html")
            shot = page.call("Page.captureScreenshot", format="png")
            args.screenshot.write_bytes(base64.b64decode(shot["data"]))
            print(f"screenshot: {args.screenshot}")
    print(f"{len(pages)} pages, {failures} with errors")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
