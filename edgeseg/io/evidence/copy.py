"""Stream copy: a source-quality clip cut from a video file without re-encoding (PyAV remux).

For a file camera (no ``loop``) and ``edgeseg detect``'s video files the frames the gateway saw
carry the file's own time, so the clip of ``[t0, t1]`` is the file's packets from the key frame
at or before ``t0`` up to ``t1``, copied as they are (the codec, quality and timestamps of the
camera). Live sources are re-encoded (:mod:`edgeseg.io.evidence.clipfile`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.io.evidence.clipfile import _av, finalize, temp_name


def can_copy(source: str) -> bool:
    """Whether ``source`` is a video file PyAV can demux (its first stream is video with a codec MP4 holds)."""
    try:
        av = _av()
        with av.open(str(source)) as c:
            return bool(c.streams.video) and c.streams.video[0].codec_context.name in ("h264", "hevc", "mpeg4", "av1", "vp9")
    except Exception:  # noqa: BLE001 - anything PyAV cannot read is re-encoded instead
        return False


def copy_range(source: str, t0: float, t1: float, path: str | Path) -> dict[str, Any]:
    """The packets of ``source`` from the key frame at or before ``t0`` (seconds of the file) to the
    key frame after ``t1`` (so the clip ends within a GOP after ``t1``), remuxed into ``path`` (MP4, temporary name then rename); its evidence record."""
    av = _av()
    path = Path(path)
    tmp = temp_name(path)
    try:  # a failed remux or close (disk full) keeps no temporary (#37 point 15)
        with av.open(str(source)) as inp:
            ins = inp.streams.video[0]
            tb = ins.time_base
            start = float(ins.start_time * tb) if ins.start_time is not None else 0.0
            inp.seek(max(0, int((t0 + start) / tb)), stream=ins, backward=True, any_frame=False)
            frames, first, last = 0, None, None
            out = av.open(str(tmp), "w", format="mp4")
            try:
                outs = out.add_stream_from_template(ins)
                for pkt in inp.demux(ins):
                    if pkt.dts is None or pkt.size == 0:
                        continue
                    t = float((pkt.pts if pkt.pts is not None else pkt.dts) * tb) - start
                    if first is None:
                        if not pkt.is_keyframe:
                            continue
                        first = t
                    if t > t1 + 1e-6 and pkt.is_keyframe:
                        break  # at a key frame: no B-frame of the last GOP loses its reference
                    pkt.stream = outs
                    out.mux(pkt)
                    frames += 1
                    last = t if last is None else max(last, t)
            finally:
                out.close()
            rate = float(ins.average_rate) if ins.average_rate else 0.0
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not frames:
        tmp.unlink(missing_ok=True)
        raise OSError(f"no packets between {t0:.2f} s and {t1:.2f} s in {source}")
    step = 1.0 / rate if rate else 0.0
    return {**finalize(tmp, path), "frames": frames, "duration_s": round(last - first + step, 3),
            "start_ts": first, "end_ts": last, "stream_copy": True}
