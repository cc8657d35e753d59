"""A headless Chromium to look at the MLflow UI and the labeling app from tests and scripts: the rendered DOM,
screenshots, and a page driven over the DevTools protocol (keys, JavaScript, reload)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from train.tracking.server import UIError

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Flags that work headless in a container (stack notes): no sandbox, no GPU, nothing phoning home.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--hide-scrollbars",
)

# -- headless Chromium ---------------------------------------------------------------------------------------------


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(url: str, *extra: str, budget_ms: int = 20000, timeout: float = 180) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise UIError("chromium is not installed (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="stance-chromium-") as profile:
        argv = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise UIError(f"chromium exited with {res.returncode}: {res.stderr[-2000:]}")
    return res


def dump_dom(url: str, window: tuple[int, int] = (2400, 1200), budget_ms: int = 20000) -> str:
    """The page's DOM after its scripts ran (virtual time lets the single-page app fetch and render)."""
    return _chromium(url, "--dump-dom", f"--window-size={window[0]},{window[1]}", budget_ms=budget_ms).stdout


def screenshot(url: str, out: Path, window: tuple[int, int] = (1800, 1000), budget_ms: int = 20000) -> Path:
    """A PNG of the rendered page, written atomically (Chromium writes to a temp name, then it is renamed)."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    try:
        _chromium(url, f"--screenshot={tmp}", f"--window-size={window[0]},{window[1]}", budget_ms=budget_ms)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise UIError(f"chromium wrote no screenshot for {url}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


# -- driving a page: the DevTools protocol over a pipe (no websocket library, no driver binary) ---------------------


class DevToolsPage:
    """A headless Chromium page driven through the Chrome DevTools Protocol on `--remote-debugging-pipe` (JSON messages
    ended by a NUL byte on file descriptors 3 and 4). Enough to load a page, evaluate JavaScript, press keys the way a
    keyboard does (Input.dispatchKeyEvent goes through the browser's input pipeline, focus and all) and reload."""

    def __init__(self, window: tuple[int, int] = (1400, 1000)):
        import json as _json

        exe = find_chromium()
        if exe is None:
            raise UIError("chromium is not installed (Debian: apt-get install -y chromium)")
        self._json = _json
        self._profile = tempfile.TemporaryDirectory(prefix="stance-chromium-")
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()

        def wire():  # in the child: the protocol's fixed descriptors (via high numbers: a pipe end may be 3 or 4)
            import fcntl

            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child, from_child)]
            os.dup2(high[0], 3)  # dup2 clears close-on-exec: these two survive the exec
            os.dup2(high[1], 4)

        argv = [
            exe,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={self._profile.name}",
            "--remote-debugging-pipe",
            f"--window-size={window[0]},{window[1]}",
            "about:blank",
        ]
        # close_fds=False: only descriptors marked inheritable pass (PEP 446), i.e. the two that wire() makes
        self.proc = subprocess.Popen(argv, close_fds=False, preexec_fn=wire, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._buf, self._next_id = b"", 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)

    def call(self, method: str, session: bool = False, timeout: float = 30, **params) -> dict:
        import select
        import time

        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._write, self._json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = self._json.loads(raw)
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise UIError(f"chromium: {method}: {reply['error']}")
                    return reply.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise UIError(f"chromium did not answer {method} within {timeout} s")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise UIError("chromium closed the DevTools pipe")
            self._buf += chunk

    def goto(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)

    def reload(self) -> None:
        self.call("Page.reload", session=True, ignoreCache=True)

    def js(self, expression: str):
        """The value of a JavaScript expression (promises awaited)."""
        res = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise UIError(f"javascript error in {expression!r}: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20):
        """Poll until the expression is truthy; its value."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.js(expression)
            except UIError:
                value = None  # the page is between documents
            if value:
                return value
            if time.monotonic() > deadline:
                raise UIError(f"timed out waiting for {expression!r}")
            time.sleep(0.1)

    def press(self, key: str) -> None:
        """One key, down and up, with the text it types (a single character key: '1', 'h', 'b', ...)."""
        code = f"Digit{key}" if key.isdigit() else f"Key{key.upper()}" if len(key) == 1 else key
        vk = ord(key.upper()) if len(key) == 1 else 27 if key == "Escape" else 0
        base = {"key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk}
        self.call("Input.dispatchKeyEvent", session=True, type="keyDown", text=key if len(key) == 1 else "", **base)
        self.call("Input.dispatchKeyEvent", session=True, type="keyUp", **base)

    def screenshot(self, out: Path) -> Path:
        import base64

        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(data))
        return out

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except UIError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._read)
        os.close(self._write)
        self._profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
