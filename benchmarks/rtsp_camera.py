"""A live RTSP camera for benchmarks: Debian's GStreamer RTSP server (``tests/rtsp_server.py``, run with
the system Python) serving an H.264 MP4 in real time, as a site's camera does. Used by the soak and the
operator benchmark so both measure what a site runs: live frames at the camera's rate, the clean clip
copied from the camera's packets."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from benchmarks.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
DEMO_720P = "demo-720p"


def demo_720p() -> Path:
    """The bundled gas-leak clip as 10 minutes of 1280x720 H.264 at 12 fps (a GOP of 2 s), made once by ffmpeg."""
    out = Path(tempfile.gettempdir()) / "edgeseg-soak-demo-720p.mp4"
    if not out.exists():
        tmp = out.with_suffix(".part.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "60", "-i",
                        str(ROOT / "edgeseg" / "assets" / "demo_gas_leak.mp4"), "-vf", "scale=1280:720", "-r", "12",
                        "-t", "600", "-c:v", "libx264", "-preset", "ultrafast", "-g", "24", "-bf", "0",
                        "-pix_fmt", "yuv420p", str(tmp)], check=True)
        tmp.replace(out)
    return out


def serve(video: str | Path) -> tuple[subprocess.Popen, str]:
    """``video`` (an H.264 MP4, or ``demo-720p``) served live on a free loopback port; the server process
    (stop it with :func:`benchmarks.ports.stop_process`) and its URL. Every client shares one pipeline, as one camera would."""
    path = demo_720p() if str(video) == DEMO_720P else Path(video)
    port = free_port()
    server = subprocess.Popen(["/usr/bin/python3", str(ROOT / "tests" / "rtsp_server.py"), str(path.resolve()),
                               str(port), "/cam", "shared"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if server.stdout is None or server.stdout.readline().strip() != "ready":
        server.kill()
        raise SystemExit(f"the RTSP server did not start: {server.stderr.read() if server.stderr else ''}"
                         "(fix: make system-deps, or point the benchmark at your own camera)")
    return server, f"rtsp://127.0.0.1:{port}/cam"

