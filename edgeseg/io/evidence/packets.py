"""Stream copy for live encoded cameras (RTSP H.264 / H.265): a packet ring from a second,
demux-only PyAV connection to the same URL.

The gateway's reader decodes the camera (OpenCV); this ring keeps the camera's own *encoded*
packets of the last ``keep_s`` seconds (from a key frame), stamped with the wall clock at arrival,
the same clock the reader stamps live frames with. A recording starts at the key frame at or
before the clip's first frame and takes every packet until the clip's end, remuxed without
re-encoding (the camera's codec and quality) on this ring's own thread. Costs one more RTSP session
per camera with clips (most cameras allow several; a refused one leaves the clip re-encoded).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from edgeseg.core.redact import redact_url
from edgeseg.io.evidence.clipfile import _av, finalize, temp_name

log = logging.getLogger("edgeseg")

COPYABLE = ("h264", "hevc")


class Recording:
    """One clip being remuxed from the ring (see :meth:`PacketRing.record`)."""

    def __init__(self, path: Path, template: Any) -> None:
        av = _av()
        self.path, self.tmp = path, temp_name(path)
        self.out = av.open(str(self.tmp), "w", format="mp4")
        self.stream = self.out.add_stream_from_template(template)
        self.frames, self.first, self.last, self.stop_at = 0, None, None, None
        self.done = threading.Event()
        self.error: str | None = None
        self._dts = self._base = None
        self._lock = threading.Lock()  # the ring's thread muxes, the evidence writer finishes

    def add(self, ts: float, pkt: Any) -> None:
        with self._lock:
            if self.done.is_set():
                return
            if self.stop_at is not None and ts > self.stop_at and pkt.is_keyframe:
                self._close()  # at a key frame: B-frames of the last GOP are never cut off their reference
                return
            if self._dts is not None and pkt.dts <= self._dts:
                return  # the camera's clock went back (a reconnect): this recording keeps what it has
            self._dts = pkt.dts
            self._base = pkt.dts if self._base is None else self._base
            copy = _av().Packet(bytes(pkt))  # the ring keeps its packet untouched (mux rescales in place)
            copy.pts = (pkt.pts if pkt.pts is not None else pkt.dts) - self._base
            copy.dts, copy.time_base, copy.is_keyframe = pkt.dts - self._base, pkt.time_base, pkt.is_keyframe
            copy.stream = self.stream
            try:
                self.out.mux(copy)
            except Exception as exc:  # noqa: BLE001 - reported by finish()
                self.error = f"{type(exc).__name__}: {exc}"
                self._close()
                return
            self.frames += 1
            self.first = ts if self.first is None else self.first
            self.last = ts

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if not self.done.is_set():
            try:
                self.out.close()
            except Exception as exc:  # noqa: BLE001
                self.error = self.error or f"{type(exc).__name__}: {exc}"
            self.done.set()

    def finish(self, t1: float, wait_s: float = 5.0) -> dict[str, Any]:
        """Stop at the first key frame after ``t1`` (the clip ends within a GOP of it; waiting up to
        ``wait_s`` for it, else it ends with the packets it has); the evidence record."""
        self.stop_at = t1
        self.done.wait(wait_s)
        self.close()
        if self.error or not self.frames:
            self.tmp.unlink(missing_ok=True)
            raise OSError(self.error or "the camera sent no packet for the clip")
        step = (self.last - self.first) / (self.frames - 1) if self.frames > 1 else 0.0
        return {**finalize(self.tmp, self.path), "frames": self.frames,
                "duration_s": round(self.last - self.first + step, 3), "start_ts": self.first, "end_ts": self.last,
                "stream_copy": True}

    def abort(self) -> None:
        self.close()
        self.tmp.unlink(missing_ok=True)


class PacketRing:
    """The last ``keep_s`` seconds of ``url``'s video packets (see the module doc); reconnects forever."""

    def __init__(self, url: str, keep_s: float, timeout_s: float = 10.0, start_delay_s: float = 1.0) -> None:
        self.url, self.keep_s, self.timeout_s, self.start_delay_s = url, float(keep_s), timeout_s, start_delay_s
        self.packets: deque[tuple[float, Any, bool]] = deque()  # (arrival, packet, key frame)
        self.stream: Any = None
        self.recordings: list[Recording] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._run, name="edgeseg-packets", daemon=True)
        self.thread.start()

    def record(self, path: str | Path, t0: float) -> Recording | None:
        """A recording from the key frame at or before ``t0`` (the ring's oldest when none is);
        None while the ring has no key frame (then the clip is re-encoded)."""
        with self.lock:
            keys = [i for i, (ts, _, key) in enumerate(self.packets) if key]
            if not keys or self.stream is None:
                return None
            start = max([i for i in keys if self.packets[i][0] <= t0] or [keys[0]])
            rec = Recording(Path(path), self.stream)
            for ts, pkt, _ in list(self.packets)[start:]:
                rec.add(ts, pkt)
            self.recordings.append(rec)
            return rec

    def close(self) -> None:
        self.stopped.set()
        with self.lock:
            for rec in self.recordings:
                rec.close()

    def _run(self) -> None:
        av = _av()
        self.stopped.wait(self.start_delay_s)  # the camera's own reader connects first: its session matters most
        while not self.stopped.is_set():
            try:
                opts = {"rtsp_transport": "tcp"} if self.url.startswith("rtsp") else {}
                with av.open(self.url, options=opts, timeout=(self.timeout_s, self.timeout_s)) as c:
                    vs = c.streams.video[0]
                    if vs.codec_context.name not in COPYABLE:
                        log.info("clips of %s are re-encoded: its codec %s is not copied", redact_url(self.url),
                                 vs.codec_context.name)
                        return
                    with self.lock:
                        self.packets.clear()
                        self.stream = vs
                    self.connected.set()
                    for pkt in c.demux(vs):
                        if self.stopped.is_set():
                            return
                        if pkt.size == 0 or pkt.dts is None:
                            continue
                        self._push(time.time(), pkt)
            except Exception as exc:  # noqa: BLE001 - the camera's own reader reports the outage
                log.debug("packet ring %s: %s", redact_url(self.url), redact_url(str(exc)))
            with self.lock:
                self.stream = None
                for rec in self.recordings:
                    rec.close()
                self.recordings = []
            self.stopped.wait(1.0)

    def _push(self, ts: float, pkt: Any) -> None:
        key = bool(pkt.is_keyframe)  # read once: asking every packet in the ring at each push cost ~1 ms a frame
        with self.lock:
            q = self.packets
            q.append((ts, pkt, key))
            # drop whole GOPs older than keep_s, always keeping a key frame at or before the window: while
            # the key frame after the oldest packet is itself at or before the window, all before it can go
            cut = ts - self.keep_s
            while len(q) > 1:
                nxt = next((i for i in range(1, len(q)) if q[i][2]), None)
                if nxt is None or q[nxt][0] > cut:
                    break
                for _ in range(nxt):
                    q.popleft()
            for rec in list(self.recordings):
                rec.add(ts, pkt)
                if rec.done.is_set():
                    self.recordings.remove(rec)
