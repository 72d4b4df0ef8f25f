"""How a front end (``edgeseg watch``) sets evidence up for its cameras; kept here so the gateway's
service only calls two functions (small, clearly marked call sites)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from edgeseg.core.errors import OutputError


def check_clips(cameras: Iterable[Any]) -> None:
    """Clips need PyAV and a writable folder: refused at start in one line, not at the first alarm."""
    clips = [c for c in cameras if c.clips is not None and c.clips.enabled]
    if clips:
        from edgeseg.io.evidence.clipfile import _av  # noqa: PLC0415

        _av()
    for c in clips:
        try:
            Path(c.clips.dir, c.name).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"clips.dir {c.clips.dir}: camera {c.name}'s folder {Path(c.clips.dir, c.name)} cannot be "
                              f"created: {exc.strerror} (fix: give a clips.dir this user can write)") from None


def recorders_for(c: Any, leak_class: int, trouble: Callable[[dict[str, Any]], None],
                  on_deleted: Callable[[str, str], None]) -> tuple[Any, dict[str, Any]]:
    """Camera ``c``'s :class:`~edgeseg.io.evidence.Recorder` for its own alarm and one per named zone
    (each alarm gets its clip), or ``(None, {})`` when ``clips`` is off for it. A file camera (no
    ``loop``) gets its clean clips cut from the file, an RTSP camera from one packet ring they share."""
    if c.clips is None or not c.clips.enabled:
        return None, {}
    from edgeseg.runtime.annotate import Annotator  # noqa: PLC0415
    from edgeseg.io.evidence.copy import can_copy  # noqa: PLC0415
    from edgeseg.io.evidence.packets import PacketRing  # noqa: PLC0415
    from edgeseg.io.evidence.recorder import Recorder  # noqa: PLC0415

    copy = c.source if not c.live and not c.loop and can_copy(c.source) else None
    ring = PacketRing(c.source, c.clips.pre_s + 2.0) if c.source.startswith("rtsp") else None

    def make(zone: str | None) -> Any:
        return Recorder(c.name, c.clips, Annotator(leak_class), trouble=trouble, on_deleted=on_deleted,
                        copy_from=copy, packets=ring, zone=zone)

    named = [z.name for z in c.zones.named] if c.zones is not None and c.alarm is not None else []
    return make(None), {name: make(name) for name in named}
