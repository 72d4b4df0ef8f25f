"""The settings table of ``docs/gateway.md``, made from the declarations of :mod:`edgeseg.settings`
(``python -m edgeseg.settings docs/gateway.md`` rewrites it; a test fails when it is stale)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from edgeseg.settings import STREAM_FIELDS, CameraSettings, GatewaySettings, StreamSettings, _model_in, bounds

def _rows(model: type[BaseModel], prefix: str, per_camera: bool) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        sub = _model_in(info.annotation)
        rows += _rows(sub, f"{prefix}{name}.", per_camera) if sub else _rows_one(model, name, prefix, per_camera)
    return rows


def _rows_one(model: type[BaseModel], name: str, prefix: str, per_camera: bool) -> list[str]:
    info = model.model_fields[name]
    meta = {type(m).__name__: m for m in info.metadata}
    lo, hi = bounds(info)
    rng = lo + hi
    rng += [f"`{m.pattern}`" for k, m in meta.items() if k == "_PydanticGeneralMetadata" and getattr(m, "pattern", None)]
    ann = str(info.annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    default = "(required)" if info.is_required() else "none" if info.default is None else f"`{info.default!r}`"
    star = " (*)" if per_camera else ""
    cells = [f"`{prefix}{name}`{star}", ann, default, ", ".join(rng), info.description or ""]
    return ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"]


def markdown_table() -> str:
    """The settings table of ``docs/gateway.md``, made from the declarations above."""
    head = ["| key | type | default | range | what it does |", "|---|---|---|---|---|"]
    stream = []
    for name in STREAM_FIELDS:
        info = StreamSettings.model_fields[name]
        sub = _model_in(info.annotation)
        stream += _rows(sub, name + ".", True) if sub else _rows_one(StreamSettings, name, "", True)
    rest = []
    for name, info in GatewaySettings.model_fields.items():
        if name in STREAM_FIELDS:
            continue
        if name == "cameras":
            rest += _camera_rows(info)
            continue
        sub = _model_in(info.annotation)
        rest += _rows(sub, name + ".", False) if sub else _rows_one(GatewaySettings, name, "", False)
    note = ("(*) a stream setting: written at the top level it is every camera's default; written in a camera it "
            "overrides that default for the camera (`alarm`, `guards` and `clips` key by key). `edgeseg detect` takes the same settings as flags.")
    return "\n".join(head + stream + rest + ["", note])


def _camera_rows(info: Any) -> list[str]:
    rows = [f"| `cameras[]` | list | (required) | at least 1 | {info.description} |"]
    for cname in ("name", "source", "loop"):
        rows += _rows_one(CameraSettings, cname, "cameras[].", False)
    rows.append("| `cameras[].<stream setting>` | | inherited | | any (*) setting above, for this camera only |")
    return rows
