"""Credentials out of what the gateway shows: events (API, JSONL, MQTT, webhook) and logs.

A camera URL such as ``rtsp://user:pass@10.0.0.5/stream1`` opens the camera; everything that
*shows* the source (an event's ``source``, a warning, an error line) gets
``rtsp://***@10.0.0.5/stream1`` instead. :func:`redact_url` finds every URL inside a string, so a
whole message can be passed through it.
"""
from __future__ import annotations

import re
from typing import Any

#: ``scheme://`` then the userinfo (anything up to the last ``@`` before the path)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*@)")


def redact_url(text: Any) -> Any:
    """``text`` with the ``user:password@`` of every URL in it replaced by ``***@``; anything
    that is not a string (None, a webcam index) is returned as it is."""
    if not isinstance(text, str) or "@" not in text:
        return text
    return _USERINFO.sub(lambda m: m.group("scheme") + "***@", text)
