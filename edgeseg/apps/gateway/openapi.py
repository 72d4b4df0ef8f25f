"""The OpenAPI 3 description served at ``GET /api/openapi.json`` (the endpoints of ``api.py``)."""
from __future__ import annotations

_ERR = {"description": "one-line error naming the fix", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}
_JSON = {"content": {"application/json": {"schema": {"type": "object"}}}}
_WHO = {"type": "object", "properties": {"who": {"type": "string", "maxLength": 200},
                                         "why": {"type": "string", "maxLength": 200}}}
_ACK = {"type": "object", "properties": {**_WHO["properties"], "note": {
    "type": "string", "maxLength": 500, "description": "what was found or done (kept with the incident)"}}}
_INCIDENT = {"content": {"application/json": {"schema": {"type": "object", "properties": {
    "id": {"type": "string", "description": "the alarm_id of its start events"},
    "state": {"type": "string", "enum": ["open", "cleared_unacknowledged", "acknowledged"]},
    "active": {"type": "boolean", "description": "the leak is on now"},
    "camera": {"type": "string"}, "zone": {"type": "string", "nullable": True},
    "opened_wall_time": {"type": "number"}, "opened_iso": {"type": "string", "format": "date-time"},
    "cleared_wall_time": {"type": "number", "nullable": True},
    "cleared_iso": {"type": "string", "format": "date-time", "nullable": True},
    "episodes": {"type": "integer", "description": "1 + the times the leak came back within cooldown_s"},
    "acknowledged": {"type": "object", "nullable": True, "properties": {
        "who": {"type": "string"}, "note": {"type": "string"}, "wall_time": {"type": "number"},
        "time_iso": {"type": "string", "format": "date-time"}, "while_open": {"type": "boolean"}}},
    "event_ids": {"type": "array", "items": {"type": "integer"}, "description": "its start / end / ack events"},
}}}}}
_INCIDENTS = {"content": {"application/json": {"schema": {"type": "array",
                                                           "items": _INCIDENT["content"]["application/json"]["schema"]}}}}
_STATE = {"name": "state", "in": "query", "required": False, "schema": {
    "type": "string", "enum": ["open", "cleared_unacknowledged", "acknowledged", "unresolved"]}}
_SUSPEND = {"type": "object", "properties": {**_WHO["properties"], "minutes": {
    "type": "number", "exclusiveMinimum": 0, "maximum": 525600, "description": "none: until resumed"}}}


def _op(summary: str, ok: dict, params: list | None = None, body: dict | None = None, write: bool = False) -> dict:
    op: dict = {"summary": summary, "responses": {"200": {"description": "ok", **ok}, "400": _ERR, "403": _ERR, "404": _ERR,
                                                  "429": _ERR, **({"401": _ERR, "413": _ERR} if write else {})}}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    if write:
        op["security"] = [{"bearer": []}]
    return op


def _path(name: str, pattern: str = "") -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", **({"pattern": pattern} if pattern else {})}}


def _query(name: str, kind: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind}}


_CAM = _path("name", "^[A-Za-z0-9_.-]{1,64}$")
_JPG = {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}
_MP4 = {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}}
_ANNOTATED = {"name": "annotated", "in": "query", "required": False, "schema": {"type": "integer", "enum": [0, 1]}}
SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "edgeseg watch", "version": "1", "description": "The camera gateway's HTTP API (`edgeseg docs gateway`)"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                   "description": "the token of api.token_file"}}},
    "paths": {
        "/api/cameras": {"get": _op("Every camera: state, online, fps, drops, open alarm", _JSON)},
        "/api/cameras/{name}": {"get": _op("One camera", _JSON, [_CAM])},
        "/api/cameras/{name}/latest.jpg": {"get": _op("The camera's latest frame, annotated", _JPG, [_CAM])},
        "/api/cameras/{name}/suspend": {"post": _op("No alarm for minutes (or until resumed); an open one ends",
                                                    _JSON, [_CAM], _SUSPEND, write=True)},
        "/api/cameras/{name}/resume": {"post": _op("End a suspension", _JSON, [_CAM], _WHO, write=True)},
        "/api/alarms/{id}/ack": {"post": _op("Acknowledge an incident (open, or after its alarm cleared)", _JSON,
                                             [_path("id", "^[0-9a-f]{16}$")], _ACK, write=True)},
        "/api/incidents": {"get": _op("Incidents, the unresolved first, newest first", _INCIDENTS,
                                      [_STATE, _query("camera", "string"), _query("limit", "integer")])},
        "/api/incidents/{id}": {"get": _op("One incident", _INCIDENT, [_path("id", "^[0-9a-f]{16}$")])},
        "/api/incidents/{id}/ack": {"post": _op("Acknowledge an incident (open, or after its alarm cleared); who + note",
                                                _JSON, [_path("id", "^[0-9a-f]{16}$")], _ACK, write=True)},
        "/api/events": {"get": _op("Events with an id above since, oldest first (updates=0: without the alarms' "
                                   "update events; the default without since)", _JSON,
                                   [_query("since", "integer"), _query("camera", "string"), _query("limit", "integer"),
                                    _query("updates", "integer")])},
        "/api/events/{id}": {"get": _op("One event (snapshot_url / clip_url when it has them)", _JSON,
                                        [_path("id", "^[0-9]+$")])},
        "/api/events/{id}/snapshot.jpg": {"get": _op("The event's snapshot (?annotated=1: its annotated twin)", _JPG,
                                                     [_path("id", "^[0-9]+$"), _ANNOTATED])},
        "/api/events/{id}/clip": {"get": _op("The event's alarm clip (?annotated=1: the annotated clip)", _MP4,
                                             [_path("id", "^[0-9]+$"), _ANNOTATED])},
        "/api/openapi.json": {"get": _op("This description", _JSON)},
    },
}
