"""Debian's headless chromium, driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
fd 3 carries commands in, fd 4 answers out, NUL-separated JSON), so a test clicks a real button in a
real browser without a driver package."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any


def find() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]


class Browser:
    def __init__(self, exe: str, profile: str, size: tuple[int, int] = (1280, 900), flags: tuple[str, ...] = ()) -> None:
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        cmd = [exe, *FLAGS, *flags, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
               "--remote-debugging-pipe", "about:blank"]
        # chromium wants the pipe on fds 3 and 4: move them there in the child
        self.proc = subprocess.Popen(["bash", "-c", f'exec 3<&{to_chrome_r} 4>&{from_chrome_w}; exec "$@"', "chromium", *cmd],
                                     pass_fds=(to_chrome_r, from_chrome_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf, self._id = b"", 0
        targets = self.send("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.send("Page.enable", session=True)
        self.send("Runtime.enable", session=True)

    def send(self, method: str, session: bool = False, timeout: float = 30.0, **params: Any) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params, **({"sessionId": self.session} if session else {})}
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk
        raise TimeoutError(method)

    def goto(self, url: str) -> None:
        self.send("Page.navigate", session=True, url=url)

    def js(self, expression: str) -> Any:
        r = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"].get("text"))
        return r["result"].get("value")

    def wait_js(self, expression: str, timeout: float = 20.0) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                value = self.js(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(expression)

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        """Lay the page out at exactly ``width`` x ``height`` CSS pixels (``mobile``: a phone's viewport,
        touch), whatever size the headless window has."""
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=mobile)
        self.send("Emulation.setTouchEmulationEnabled", session=True, enabled=mobile)

    def screenshot(self, full_page: bool = False) -> bytes:
        """PNG of the viewport, or of the whole page scrolled through (``full_page``) at the viewport's width."""
        import base64

        extra: dict[str, Any] = {}
        if full_page:
            size = self.send("Page.getLayoutMetrics", session=True)["cssContentSize"]
            extra = {"captureBeyondViewport": True,
                     "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}}
        return base64.b64decode(self.send("Page.captureScreenshot", session=True, format="png", **extra)["data"])

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - it may be gone already
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self._w)
        os.close(self._r)
