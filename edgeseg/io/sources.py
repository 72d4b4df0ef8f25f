"""Frame sources (a registry: image, folder, video file, RTSP/HTTP URL, webcam) for ``detect`` and ``watch``.

Live streams drop; a gateway must survive that. A failed read on a stream releases the capture
and reopens it with exponential backoff (0.5 s doubling, capped at 8 s); only after
``max_retries`` consecutive failed reconnects does it give up with a one-line ``SourceError``.
A reconnect counts as successful only once it delivers a frame: a camera that accepts the
connection but never sends video would otherwise reset the budget and loop forever. A corrupt
image or an empty frame is logged and skipped, never fatal.
"""
from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from edgeseg.core.backoff import Backoff
from edgeseg.core.errors import SourceError
from edgeseg.core.files import IMAGE_EXTS, VIDEO_EXTS, list_images
from edgeseg.core.redact import redact_url

log = logging.getLogger("edgeseg")


@dataclass
class Frame:
    index: int
    timestamp_s: float
    image: np.ndarray
    name: str


@dataclass
class SourceStats:
    """What a run over a source missed: the summary and exit code say whether the input was complete."""

    expected: int | None = None  # frames (video) or files (folder) the source announced
    unreadable: int = 0  # corrupt files / undecodable frames skipped
    ended_early: bool = False  # a video stopped decoding before its announced frame count

    @property
    def complete(self) -> bool:
        return self.unreadable == 0 and not self.ended_early


class Source:
    """Iterable of ``Frame``; ``kind`` is image/folder/video/stream, ``fps`` when known.

    ``stats`` fills in while iterating (unreadable frames, a video that ends early).
    """

    def __init__(self, spec: str, kind: str, fps: float | None, frames: Callable[[SourceStats], Iterator[Frame]],
                 expected: int | None = None):
        self.spec, self.kind, self.fps, self._frames = spec, kind, fps, frames
        self.stats = SourceStats(expected)

    @property
    def is_stream(self) -> bool:
        """Live: the newest frame matters, a drop is reconnected (see :func:`is_live`)."""
        return self.kind == "stream"

    is_live = is_stream

    @property
    def is_video(self) -> bool:
        return self.kind in ("video", "stream")

    def __iter__(self) -> Iterator[Frame]:
        self.stats = SourceStats(self.stats.expected)
        return self._frames(self.stats)


def _images(paths: list[Path], stats: SourceStats) -> Iterator[Frame]:
    """Frames named by file name *with* extension, so ``cam.png`` and ``cam.jpg`` stay apart."""
    t0 = time.time()
    i = 0
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is None or img.size == 0:
            log.warning("skipping unreadable image %s (corrupt or not an image)", p)
            stats.unreadable += 1
            continue
        if img.dtype != np.uint8:  # 16-bit PNG/TIFF: scale to 8 bits
            img = cv2.convertScaleAbs(img, alpha=255.0 / max(1, int(img.max())))
        yield Frame(i, time.time() - t0, img, p.name)
        i += 1


def _video(spec: str, factory: Callable[[Any], Any]) -> tuple[float | None, int | None, Callable[[SourceStats], Iterator[Frame]]]:
    cap, shown = factory(spec), redact_url(spec)
    if not cap.isOpened():
        raise SourceError(f"cannot open video {shown} (corrupt file or unsupported codec); convert it with ffmpeg to H.264 mp4")
    fps = cap.get(cv2.CAP_PROP_FPS) or None
    ok, first = cap.read()
    if not ok or first is None:
        cap.release()
        raise SourceError(f"video {shown} has no readable frames (corrupt or empty file)")

    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None

    def frames(stats: SourceStats) -> Iterator[Frame]:
        nonlocal cap
        idx, img, bad = 0, first, 0
        if cap is None:  # iterated again: reopen
            cap = factory(spec)
            ok, img = cap.read()
        try:
            while True:
                if img is not None and img.size:
                    yield Frame(idx, idx / fps if fps else float(idx), img, Path(spec).stem)
                    bad = 0
                else:
                    log.warning("skipping corrupt frame %d of %s", idx, shown)
                    stats.unreadable += 1
                idx += 1
                ok, img = cap.read()
                if not ok:
                    # OpenCV returns False both at EOF and on an undecodable frame: try to step
                    # over a bad one a few times before calling it the end.
                    bad += 1
                    if total and idx < total - 1 and bad <= 3:
                        img = None
                        continue
                    if total and idx < total - 1:  # gave up well before the announced end: truncated
                        stats.ended_early = True
                        log.warning("%s stopped decoding at frame %d of %d (truncated or corrupt file)", shown, idx, total)
                    return
        finally:
            cap.release()
            cap = None

    return fps, total, frames


#: a stream's reconnect waits: 0.5 s doubling, capped at 8 s
RECONNECT = Backoff(0.5, 8.0)


def _backoff(attempt: int) -> float:
    """Seconds to wait before reconnect ``attempt`` (1-based)."""
    return RECONNECT.wait_for(attempt)


def _reopen(spec: str | int, factory: Callable[[Any], Any], sleep: Callable[[float], None], failures: int,
            max_retries: int, what: str, give_up: str) -> tuple[Any, int]:
    """Open ``spec`` again with exponential back-off until it opens; (capture, failures so far).
    Raises :class:`SourceError` (``give_up``) once ``max_retries`` consecutive attempts failed."""
    while True:
        if failures >= max_retries:
            raise SourceError(give_up)
        failures += 1
        delay = _backoff(failures)
        log.warning("stream %s %s %d/%d in %.1fs", redact_url(str(spec)), what, failures, max_retries, delay)
        sleep(delay)
        cap = factory(spec)
        if cap.isOpened():
            return cap, failures
        cap.release()


#: seconds without a NEW frame before a connected stream counts as stalled (and is reconnected)
STALL_S = 10.0


def same_picture(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Byte-identical pictures (every 16th pixel compared first, so a changed picture costs little)."""
    return (a is not None and b is not None and a.shape == b.shape
            and np.array_equal(a[::16, ::16], b[::16, ::16]) and np.array_equal(a, b))


def fingerprint(img: np.ndarray) -> int:
    """A cheap identity of a picture (CRC of every 8th pixel and the shape): a real camera's pictures
    differ by sensor noise, so two equal fingerprints are the same picture sent again."""
    return zlib.crc32(np.ascontiguousarray(img[::8, ::8]).data, zlib.crc32(repr(img.shape).encode()))


class Freshness:
    """Tells a new frame from a repeat of the last one.

    Some capture backends hand the last picture back after a read timeout, as if it were new, and a
    decoder that lost its stream (a mid-stream resolution change, a broken reference) repeats its
    last picture for seconds with fresh time stamps: an alarm would then go on "seeing" a frozen
    plume. A frame is new when the source's own time stamp (``CAP_PROP_POS_MSEC``, where it gives
    one) moved on AND the picture is not byte-identical to the last new one. A real camera's static
    scene still differs from frame to frame (sensor noise, each key frame re-encoded), so a run of
    byte-identical pictures is a frozen source: not processed, and the stall timer runs.
    """

    def __init__(self, stall_s: float = STALL_S) -> None:
        self.stall_s = float(stall_s)
        self.last_pos: float | None = None
        self.last_img: np.ndarray | None = None
        self.last_new = time.monotonic()
        self.repeats = 0  # frames read that were not new (repeated time stamp or picture)

    def is_new(self, cap: Any, img: np.ndarray) -> bool:
        try:
            pos = float(cap.get(cv2.CAP_PROP_POS_MSEC))
        except (cv2.error, TypeError, ValueError):
            pos = 0.0
        new = not (pos > 0 and pos == self.last_pos) and not same_picture(self.last_img, img)
        if new:
            self.last_pos, self.last_img, self.last_new = pos, img, time.monotonic()
        else:
            self.repeats += 1
        return new

    @property
    def age_s(self) -> float:
        return time.monotonic() - self.last_new

    @property
    def stalled(self) -> bool:
        return self.age_s > self.stall_s


def _stream(spec: str | int, factory: Callable[[Any], Any], max_retries: int,
            sleep: Callable[[float], None], stall_s: float = STALL_S) -> tuple[float | None, Callable[[], Iterator[Frame]]]:
    cap, shown = factory(spec), redact_url(str(spec))  # shown: the spec without its credentials (logs, errors)
    if not cap.isOpened():  # refused / unreachable at start: the same back-off as a drop
        cap.release()
        cap, _ = _reopen(spec, factory, sleep, 0, max_retries,
                         "cannot be opened; retry", f"cannot open stream {shown} after {max_retries} retries; "
                         "check the URL/camera index and the network")
    fps = cap.get(cv2.CAP_PROP_FPS) or None

    # a read that blocks this long hit the capture's read timeout: the stream sent nothing meanwhile
    read_s = min(float(getattr(factory, "read_timeout_s", None) or stall_s), stall_s)

    def frames(stats: SourceStats) -> Iterator[Frame]:
        nonlocal cap
        t0, idx = time.time(), 0
        failures = 0  # consecutive reconnects without a frame; reset only by a delivered frame
        fresh = Freshness(stall_s)
        try:
            while True:
                started = time.monotonic()
                ok, img = cap.read()
                # A read that timed out is a connected stream that sent nothing for read_s. What it
                # returns is FFmpeg draining its decoder (pictures decoded before the silence, one
                # per timed-out read: 3 reads of 10 s for 2 old frames), never a new picture.
                timed_out = time.monotonic() - started >= 0.95 * read_s
                stalled = timed_out and fresh.age_s >= 0.9 * stall_s
                if ok and img is not None and img.size and not timed_out:
                    if fresh.is_new(cap, img):
                        failures = 0
                        yield Frame(idx, time.time() - t0, img, f"stream{idx}")
                        idx += 1
                        continue
                    if not fresh.stalled:
                        time.sleep(0.005)  # a repeat of the last picture: not a frame, never processed
                        continue
                    stalled = True
                if stalled:
                    log.warning("stream %s stalled: no new frame for %.0f s; reconnecting", shown, fresh.age_s)
                cap.release()
                # a failed reopen, a frameless one and a stall all count against the budget
                what = f"stalled (no new frame for {fresh.stall_s:.0f} s)" if stalled else "dropped"
                cap, failures = _reopen(spec, factory, sleep, failures, max_retries, f"{what}; reconnect",
                                        f"stream {shown} {what} and did not come back after {max_retries} retries; "
                                        "check the camera/network")
                fresh = Freshness(stall_s)
        finally:
            cap.release()

    return fps, frames


def is_url(spec: str) -> bool:
    """A network address (``rtsp://``, ``http://``, ...), not a file."""
    return "://" in str(spec)


@dataclass(frozen=True)
class SourceKind:
    """One registry entry: which specs it opens, whether they are live, and how to open them.

    Live sources (cameras, streams) keep only the newest frame and reconnect; files lose no frame
    and end. A new kind of source is one module with an ``open`` function plus one
    :func:`register_source` call; ``detect`` and ``watch`` both find it by its spec.
    """

    name: str
    matches: Callable[[str], bool]
    live: bool
    open: Callable[..., Source]  # (spec, max_retries=, sleep=, capture_factory=) -> Source
    path: bool = False  # the spec names a file or folder (it must exist)


SOURCES: list[SourceKind] = []


def register_source(kind: SourceKind, first: bool = False) -> None:
    """Add a source kind (``first``: ahead of the built-in ones, to claim their specs)."""
    SOURCES.insert(0, kind) if first else SOURCES.append(kind)


def source_kind(spec: str) -> SourceKind | None:
    return next((k for k in SOURCES if k.matches(str(spec))), None)


def is_live(spec: str) -> bool:
    """The one rule for "is this source live": webcam indexes and URLs are, files are not."""
    kind = source_kind(spec)
    return bool(kind and kind.live)


def timed_capture(timeout_s: float, open_timeout_s: float | None = None) -> Callable[[Any], Any]:
    """``cv2.VideoCapture`` with open / read timeouts for URLs (a dead or silent stream must not
    block a read for FFmpeg's default 30 s), plain for files and webcam indexes. ``open_timeout_s``
    (default ``timeout_s``): how long the connect and the stream's first packets may take."""
    ms = int(timeout_s * 1000)
    open_ms = int((open_timeout_s or timeout_s) * 1000)

    def factory(spec: Any) -> Any:
        if isinstance(spec, str) and is_url(spec):
            return cv2.VideoCapture(spec, cv2.CAP_FFMPEG,
                                    [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        return cv2.VideoCapture(spec)

    factory.read_timeout_s = timeout_s  # type: ignore[attr-defined]  # _stream tells a timed-out read by it
    return factory


def _open_stream(spec: str, max_retries: int, sleep: Callable[[float], None], capture_factory: Callable[[Any], Any],
                 stall_s: float = STALL_S) -> Source:
    if capture_factory is cv2.VideoCapture:  # the default: reads time out after stall_s
        capture_factory = timed_capture(stall_s)
    fps, fr = _stream(int(spec) if spec.isdigit() else spec, capture_factory, max_retries, sleep, stall_s)
    return Source(spec, "stream", fps, fr)


def names_a_path(spec: str) -> bool:
    """Whether ``spec`` is a file or folder path (to check it exists) rather than a camera / URL / custom kind."""
    kind = source_kind(spec)
    return kind is None or kind.path


def _open_folder(spec: str, **_: Any) -> Source:
    files = list_images(Path(spec))
    if not files:
        raise SourceError(f"folder {spec} has no images ({', '.join(sorted(IMAGE_EXTS))})")
    return Source(spec, "folder", None, lambda stats: _images(files, stats), expected=len(files))


def _open_image(spec: str, **_: Any) -> Source:
    p = Path(spec)
    if cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is None:
        raise SourceError(f"cannot read image {p} (corrupt or not an image)")
    return Source(spec, "image", None, lambda stats: _images([p], stats), expected=1)


def _open_video(spec: str, capture_factory: Callable[[Any], Any], **_: Any) -> Source:
    fps, total, fr = _video(spec, capture_factory)
    return Source(spec, "video", fps, fr, expected=total)


for _kind in (SourceKind("webcam", str.isdigit, True, _open_stream),
              SourceKind("stream", is_url, True, _open_stream),
              SourceKind("folder", lambda s: Path(s).is_dir(), False, _open_folder, path=True),
              SourceKind("image", lambda s: Path(s).suffix.lower() in IMAGE_EXTS, False, _open_image, path=True),
              SourceKind("video", lambda s: Path(s).suffix.lower() in VIDEO_EXTS, False, _open_video, path=True)):
    register_source(_kind)


def open_source(spec: str, max_retries: int = 5, sleep: Callable[[float], None] = time.sleep,
                capture_factory: Callable[[Any], Any] = cv2.VideoCapture, stall_s: float = STALL_S) -> Source:
    """Find ``spec``'s kind in the registry and open it; errors are one-line ``SourceError``."""
    s = str(spec)
    kind = source_kind(s)
    if kind is not None and kind.path and not Path(s).exists():
        kind = None
    if kind is None:
        p = Path(s)
        if not p.exists():
            raise SourceError(f"source not found: {redact_url(s)} (give an image, folder, video, rtsp:// URL or camera index)")
        raise SourceError(f"unsupported source {redact_url(s)}: expected an image ({', '.join(sorted(IMAGE_EXTS))}) or a video file")
    opts: dict[str, Any] = {"max_retries": max_retries, "sleep": sleep, "capture_factory": capture_factory}
    if kind.live:
        opts["stall_s"] = stall_s  # live kinds take it (a custom kind may ignore it with **_)
    return kind.open(s, **opts)
