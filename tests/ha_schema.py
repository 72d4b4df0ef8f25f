"""Home Assistant's MQTT discovery schema, as its own source declares it: the keys each platform accepts.

``fixtures/ha_mqtt_discovery_keys.json`` was extracted from Home Assistant 2024.3.3 (the wheel from
``pip download homeassistant==2024.3.3 --no-deps``, not installed): the ``vol.Optional`` /
``vol.Required`` / ``vol.Exclusive`` keys of ``homeassistant/components/mqtt/{binary_sensor,sensor,
button,switch,image}.py`` (``PLATFORM_SCHEMA_MODERN``, whose ``DISCOVERY_SCHEMA`` is the same with
``extra=vol.REMOVE_EXTRA``), ``config.py`` (``MQTT_BASE_SCHEMA`` / ``MQTT_RO_SCHEMA`` /
``MQTT_RW_SCHEMA``) and ``mixins.py`` (``MQTT_ENTITY_COMMON_SCHEMA``, ``MQTT_AVAILABILITY_*_SCHEMA``,
``MQTT_ENTITY_DEVICE_INFO_SCHEMA``), the ``CONF_*`` names resolved through ``homeassistant/const.py``
and the mqtt component's own constants. Discovery *removes* a key it does not know without a word
(``REMOVE_EXTRA``), so a misspelt key would be silently lost: hence this check.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KEYS = json.loads((Path(__file__).parent / "fixtures" / "ha_mqtt_discovery_keys.json").read_text())
#: Home Assistant 2024.3 ``homeassistant/components/mqtt/mixins.py``: AVAILABILITY_MODES
AVAILABILITY_MODES = ("all", "any", "latest")


def ha_errors(topic: str, cfg: dict[str, Any]) -> list[str]:
    """Why Home Assistant would not take ``cfg`` as published on discovery ``topic`` (empty: it would)."""
    parts = topic.split("/")
    platform = parts[1]
    if platform not in KEYS["platforms"] or len(parts) != 5 or parts[-1] != "config":
        return [f"{topic}: not <discovery>/<platform>/<node>/<object>/config of a known platform"]
    accepted = set(KEYS["platforms"][platform])
    errs = [f"{topic}: key {k!r} is not in Home Assistant's {platform} schema" for k in cfg if k not in accepted]
    for req in KEYS["required"][platform]:
        if isinstance(req, list):
            if sum(k in cfg for k in req) != 1:
                errs.append(f"{topic}: exactly one of {req} is required")
        elif req not in cfg:
            errs.append(f"{topic}: {req} is required")
    if "availability" in cfg and "availability_topic" in cfg:
        errs.append(f"{topic}: availability and availability_topic exclude each other")
    for item in cfg.get("availability", []):
        errs += [f"{topic}: availability key {k!r} unknown" for k in item if k not in KEYS["availability_item"]]
        if "topic" not in item:
            errs.append(f"{topic}: an availability item needs a topic")
    if cfg.get("availability_mode", "latest") not in AVAILABILITY_MODES:
        errs.append(f"{topic}: availability_mode {cfg['availability_mode']!r}")
    device = cfg.get("device", {})
    errs += [f"{topic}: device key {k!r} unknown" for k in device if k not in KEYS["device"]]
    if device and not (device.get("identifiers") or device.get("connections")):
        errs.append(f"{topic}: a device needs identifiers or connections")
    if platform == "image" and "content_type" in cfg and "url_topic" in cfg:
        errs.append(f"{topic}: content_type cannot go with url_topic")
    for k, v in cfg.items():
        if k in ("qos",) and v not in (0, 1, 2):
            errs.append(f"{topic}: qos {v!r}")
        if k in ("retain", "optimistic", "force_update", "enabled_by_default") and not isinstance(v, bool):
            errs.append(f"{topic}: {k} must be a boolean")
        if k.endswith("_topic") and (not isinstance(v, str) or "+" in v or "#" in v):
            errs.append(f"{topic}: {k} {v!r} is not a plain topic")
    return errs
