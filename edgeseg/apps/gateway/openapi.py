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
        "who": {"type": "string", "description": "the name typed (a note)"},
        "user": {"type": "string", "description": "the authenticated user (the audit trail)"},
        "role": {"type": "string"}, "note": {"type": "string"}, "wall_time": {"type": "number"},
        "time_iso": {"type": "string", "format": "date-time"}, "while_open": {"type": "boolean"}}},
    "event_ids": {"type": "array", "items": {"type": "integer"}, "description": "its start / end / ack events"},
    "evidence_event_ids": {"type": "array", "items": {"type": "integer"},
                           "description": "its start / end events with evidence files (GET /api/events/{id}: files)"},
}}}}}
_INCIDENTS = {"content": {"application/json": {"schema": {"type": "array",
                                                           "items": _INCIDENT["content"]["application/json"]["schema"]}}}}
_STATE = {"name": "state", "in": "query", "required": False, "schema": {
    "type": "string", "enum": ["open", "cleared_unacknowledged", "acknowledged", "unresolved"]}}
_SUSPEND = {"type": "object", "properties": {**_WHO["properties"], "minutes": {
    "type": "number", "exclusiveMinimum": 0, "maximum": 525600, "description": "none: until resumed"}}}


def _op(summary: str, ok: dict, params: list | None = None, body: dict | None = None, write: bool = False) -> dict:
    op: dict = {"summary": summary, "responses": {"200": {"description": "ok", **ok}, "400": _ERR, "401": _ERR,
                                                  "403": _ERR, "404": _ERR, "429": _ERR, **({"413": _ERR} if write else {})}}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    op["security"] = [{"bearer": []}, {"basic": []}]  # reads: a viewer beyond loopback; writes: an operator (#35)
    return op


def _path(name: str, pattern: str = "") -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", **({"pattern": pattern} if pattern else {})}}


def _query(name: str, kind: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind}}


_CAM = _path("name", "^[A-Za-z0-9_.-]{1,64}$")
_JPG = {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}
_MP4 = {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}}
_ANNOTATED = {"name": "annotated", "in": "query", "required": False, "schema": {"type": "integer", "enum": [0, 1]}}
_DOWNLOAD = {"name": "download", "in": "query", "required": False, "schema": {"type": "integer", "enum": [0, 1]},
             "description": "1: Content-Disposition attachment (a download keeps the file's name)"}
_PART = {"name": "part", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 999},
         "description": "the clip part (a long alarm continues in parts of clips.max_s); default 1"}
_RANGE = {"name": "Range", "in": "header", "required": False, "schema": {"type": "string", "example": "bytes=0-1"},
          "description": "one byte range (bytes=a-b, bytes=a-, bytes=-n): 206 with that part; several ranges: 200"}
_FILE_HEADERS = {"Accept-Ranges": {"schema": {"type": "string", "enum": ["bytes"]}},
                 "ETag": {"schema": {"type": "string"}, "description": "If-Range may name it"},
                 "Repr-Digest": {"schema": {"type": "string"}, "description": "sha-256 the recorder wrote down (RFC 9530)"}}
_FILE = {"type": "object", "properties": {
    "kind": {"type": "string", "enum": ["clip", "snapshot"]}, "annotated": {"type": "boolean"},
    "part": {"type": "integer", "nullable": True}, "name": {"type": "string"}, "url": {"type": "string"},
    "download_url": {"type": "string"}, "mime": {"type": "string"}, "bytes": {"type": "integer", "nullable": True},
    "sha256": {"type": "string", "nullable": True, "description": "set once the alarm's evidence is final (its end)"},
    "duration_s": {"type": "number", "nullable": True}}}
_EVENT = {"content": {"application/json": {"schema": {"type": "object", "properties": {
    "id": {"type": "integer"}, "event": {"type": "string"}, "snapshot_url": {"type": "string"},
    "clip_url": {"type": "string"}, "files": {"type": "array", "items": _FILE}}}}}}
_CAMERA = {"content": {"application/json": {"schema": {"type": "object", "properties": {
    "state": {"type": "string", "enum": ["ok", "alarm", "suspended", "trouble", "offline", "ended"]},
    "fps": {"type": "number", "description": "over the last frames; 0 while stale"},
    "stale": {"type": "boolean", "description": "offline, stalled or silent: latest.jpg answers 503"},
    "troubles": {"type": "array", "items": {"type": "string"}},
    "trouble_details": {"type": "array", "items": {"type": "object", "properties": {
        "trouble": {"type": "string"}, "fix": {"type": "string"}, "since_wall_time": {"type": "number", "nullable": True},
        "since_iso": {"type": "string", "format": "date-time", "nullable": True}}}},
    "last_frame_wall_time": {"type": "number", "nullable": True},
    "last_frame_iso": {"type": "string", "format": "date-time", "nullable": True}}}}}}


def _stale(op: dict) -> dict:
    op["responses"]["503"] = {**_ERR, "description": "the camera is offline, stalled or silent: its last frame is "
                                                     "stale and not served (last_frame_iso says when it was)"}
    return op


def _file_op(summary: str, ok: dict, params: list) -> dict:
    """A file answered with HTTP Range: 200 whole, 206 a part, 416 outside the file."""
    op = _op(summary, ok, params)
    op["responses"]["200"]["headers"] = _FILE_HEADERS
    op["responses"]["206"] = {"description": "the range asked for (Content-Range)", **ok,
                              "headers": {**_FILE_HEADERS, "Content-Range": {"schema": {"type": "string"}}}}
    op["responses"]["416"] = {**_ERR, "description": "the range is outside the file (Content-Range: bytes */size)"}
    return op
SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "edgeseg watch", "version": "1", "description": "The camera gateway's HTTP API (`edgeseg docs gateway`)"},
    "components": {"securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer", "description": "a token user of api.users_file, or the token "
                   "of api.token_file (an admin)"},
        "basic": {"type": "http", "scheme": "basic", "description": "a password user of api.users_file: name:password"}}},
    "paths": {
        "/api/cameras": {"get": _op("Every camera: state, online, fps, drops, open alarm, troubles with their fix, "
                                    "last frame at", _JSON)},
        "/api/cameras/{name}": {"get": _op("One camera", _CAMERA, [_CAM])},
        "/api/cameras/{name}/latest.jpg": {"get": _stale(_op("The camera's latest frame, annotated", _JPG, [_CAM]))},
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
        "/api/events/{id}": {"get": _op("One event (snapshot_url / clip_url, files: every clip part and snapshot "
                                        "with its URLs and sha256)", _EVENT, [_path("id", "^[0-9]+$")])},
        "/api/events/{id}/snapshot.jpg": {"get": _file_op("The event's snapshot, full size (?annotated=1: its annotated "
                                                          "twin)", _JPG, [_path("id", "^[0-9]+$"), _ANNOTATED, _DOWNLOAD, _RANGE])},
        "/api/events/{id}/clip": {"get": _file_op("The event's alarm clip with HTTP Range: a player seeks (?annotated=1: "
                                                  "the annotated clip)", _MP4,
                                                  [_path("id", "^[0-9]+$"), _ANNOTATED, _PART, _DOWNLOAD, _RANGE])},
        "/api/reload": {"post": _op("Re-read the config file, as SIGHUP: cameras added, stopped, changed (an admin's "
                                    "action; 400 with the reason when the file does not load, nothing changed)", _JSON,
                                    write=True)},
        "/api/whoami": {"get": _op("The user the credentials name and its role (viewer, operator, admin); "
                                   "user null without credentials", _JSON)},
        "/api/openapi.json": {"get": _op("This description", _JSON)},
    },
}
