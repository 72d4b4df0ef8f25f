"""Evidence files over HTTP: which file an event names, whether it may be served, and the answer with
HTTP Range (206 Partial Content), so a player can seek in a clip (#35 point 2).

Why Range: Safari / iOS play an MP4 only from a server that answers ``Range: bytes=0-1`` with 206, and
every browser seeks by asking for the bytes at the new position; a clip served whole (and read whole
into memory) could not be seeked and cost its size in RAM per request. Here a file is opened once,
checked (a regular file, no link, inside an evidence folder: :func:`inside`), and only the asked range
is streamed from that descriptor in chunks (:class:`FileBody`).

The file's path always comes from the event the gateway recorded, never from the request.
"""
from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 256 * 1024
MIME = {".mp4": "video/mp4", ".mkv": "video/x-matroska", ".jpg": "image/jpeg"}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class FileBody:
    """``length`` bytes of open file ``f`` from ``start``: written by the HTTP handler in chunks, closed after."""

    def __init__(self, f: BinaryIO, start: int, length: int) -> None:
        self.f, self.start, self.length = f, start, length

    def __len__(self) -> int:
        return self.length

    def write_to(self, out: Any) -> None:
        self.f.seek(self.start)
        left = self.length
        while left > 0:
            chunk = self.f.read(min(CHUNK, left))
            if not chunk:  # truncated since it was opened: the client sees a short body and retries
                break
            out.write(chunk)
            left -= len(chunk)

    def close(self) -> None:
        self.f.close()


def evidence_roots(cfg: Any) -> list[Path]:
    """The real paths of the folders evidence is written to: every camera's clips.dir, sinks.snapshots.dir."""
    dirs = [c.clips.dir for c in cfg.cameras if c.clips is not None]
    dirs += [cfg.snapshots.dir] if cfg.snapshots is not None else []
    return [Path(os.path.realpath(Path(d).expanduser())) for d in dirs]


def inside(path: Path, roots: list[Path]) -> bool:
    """``path`` is no link itself and its real path lies inside one of ``roots`` (no link out of them)."""
    if path.is_symlink():
        return False
    real = Path(os.path.realpath(path))
    return any(real != root and real.is_relative_to(root) for root in roots)


def open_evidence(path: Path | None, roots: list[Path]) -> tuple[BinaryIO, os.stat_result] | None:
    """Evidence file ``path`` opened for reading, with its stat: None unless it is a regular file, not a
    link, inside ``roots`` (O_NOFOLLOW: a link swapped in after the check is refused too)."""
    if path is None or not inside(path, roots):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    f = os.fdopen(fd, "rb")
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        f.close()
        return None
    return f, st


def read_evidence(path: Path | None, roots: list[Path]) -> bytes | None:
    """The bytes of evidence file ``path`` (see :func:`open_evidence`), or None."""
    opened = open_evidence(path, roots)
    if opened is None:
        return None
    with opened[0] as f:
        return f.read()


def _records(ev: dict[str, Any], what: str) -> list[dict[str, Any]]:
    evd = ev.get("evidence") if isinstance(ev.get("evidence"), dict) else {}
    return [c for c in evd.get("clips" if what == "clip" else "snapshots") or [] if isinstance(c, dict)]


def evidence_file(ev: dict[str, Any], what: str, annotated: bool = False, roots: list[Path] | None = None,
                  part: int | None = None) -> Path | None:
    """The finished clip / snapshot an event names (``evidence`` of #24, or a sinks.snapshots JPEG), when
    it is on disk; files are renamed to their final name only when complete. ``part``: that clip part
    (default: the first). With ``roots``, only a file that is no link and lies inside them."""
    evd = ev.get("evidence") if isinstance(ev.get("evidence"), dict) else {}
    candidates: list[Any] = []
    if what == "clip":
        candidates = [c.get("path") for c in _records(ev, "clip") if bool(c.get("annotated")) == annotated
                      and (part is None or int(c.get("part") or 1) == part)]
        if not annotated and part in (None, 1):
            candidates.append(evd.get("clip"))
    else:
        snaps = [c.get("path") for c in _records(ev, "snapshot")]
        candidates = [p for p in snaps if isinstance(p, str) and p.endswith(".annotated.jpg") == annotated]
        candidates.append(evd.get("snapshot_annotated" if annotated else "snapshot"))
        own = ev.get("snapshot")  # a sinks.snapshots JPEG (a camera without clips): annotated, and named so
        if isinstance(own, str) and own.endswith(".annotated.jpg") == annotated:
            candidates.append(own)
    return next((Path(c) for c in candidates if isinstance(c, str) and Path(c).is_file()
                 and (roots is None or inside(Path(c), roots))), None)


def sha256_of_record(ev: dict[str, Any], path: Path) -> str | None:
    """The sha256 the recorder wrote down for ``path`` (``end`` events), if any."""
    for rec in _records(ev, "clip") + _records(ev, "snapshot"):
        if rec.get("path") == str(path) and isinstance(rec.get("sha256"), str):
            return rec["sha256"]
    sha = ev.get("snapshot_sha256")  # a sinks.snapshots JPEG (a camera without clips)
    return sha if ev.get("snapshot") == str(path) and isinstance(sha, str) else None


def files(ev: dict[str, Any], base: str, roots: list[Path]) -> list[dict[str, Any]]:
    """What the page's evidence viewer offers for event ``ev`` (its URL ``base``): every clip part and
    snapshot, clean and annotated, with its URL, download URL, size and sha256 (when recorded)."""
    out = []
    parts = sorted({int(c.get("part") or 1) for c in _records(ev, "clip")}) or [1]
    for what, annotated, part in ([("snapshot", a, None) for a in (False, True)]
                                  + [("clip", a, p) for p in parts for a in (False, True)]):
        path = evidence_file(ev, what, annotated, roots, part)
        if path is None:
            continue
        query = "&".join(q for q in ("annotated=1" if annotated else "", f"part={part}" if part and part > 1 else "") if q)
        url = f"{base}/{'snapshot.jpg' if what == 'snapshot' else 'clip'}{'?' + query if query else ''}"
        rec = next((r for r in _records(ev, what) if r.get("path") == str(path)), {})
        out.append({"kind": what, "annotated": annotated, "part": part, "name": path.name, "url": url,
                    "download_url": url + ("&" if query else "?") + "download=1", "mime": MIME.get(path.suffix, "application/octet-stream"),
                    "bytes": rec.get("bytes"), "sha256": sha256_of_record(ev, path), "duration_s": rec.get("duration_s")})
    return out


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """``Range`` header -> (first, last) byte to send; None: the whole file (no header, several ranges or
    one we do not read: RFC 9110 lets a server ignore it); ``"unsatisfiable"``: 416."""
    if not header:
        return None
    m = _RANGE.match(header.strip().replace(" ", ""))
    if m is None:
        return None
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        n = int(last)
        return (max(0, size - n), size - 1) if n > 0 and size > 0 else "unsatisfiable"
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return "unsatisfiable"
    return start, end


def answer(ev: dict[str, Any], path: Path | None, roots: list[Path], headers: Any,
           download: bool = False) -> tuple[Any, ...] | None:
    """The HTTP answer for evidence file ``path`` of event ``ev``: ``(code, ctype, body, headers)`` with
    Range support (200 / 206 / 416, ``Accept-Ranges``, an ETag that ``If-Range`` may name); None when
    the file may not be served (missing, a link, outside the evidence folders)."""
    opened = open_evidence(path, roots)
    if opened is None:
        return None
    f, st = opened
    size, ctype = st.st_size, MIME.get(path.suffix, "application/octet-stream")
    etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
    extra = {"Accept-Ranges": "bytes", "ETag": etag,
             "Content-Disposition": f'{"attachment" if download else "inline"}; filename="{path.name}"'}
    digest = sha256_of_record(ev, path)
    if digest:  # RFC 9530: the client checks what it got against the sha256 the recorder wrote down
        extra["Repr-Digest"] = f"sha-256=:{base64.b64encode(bytes.fromhex(digest)).decode()}:"
    if_range = headers.get("If-Range") if headers is not None else None
    rng = byte_range(headers.get("Range") if headers is not None else None, size)
    if if_range is not None and if_range.strip() != etag:
        rng = None  # the file changed since the client's first part: the whole file
    if rng == "unsatisfiable":
        f.close()
        body = (b'{"error": "the range is outside the file (fix: ask for bytes below %d)"}' % size)
        return 416, "application/json", body, {**extra, "Content-Range": f"bytes */{size}"}
    if rng is None:
        return 200, ctype, FileBody(f, 0, size), extra
    first, last = rng
    return 206, ctype, FileBody(f, first, last - first + 1), {**extra, "Content-Range": f"bytes {first}-{last}/{size}"}
