"""The sink registry: a new sink is one module (its settings model + its Sink) plus one entry here.

Both front ends read it: ``edgeseg watch`` builds a sink for each key under ``sinks:`` (the
config section itself is made from this registry, ``edgeseg.config.settings.SinkSettings``), and
``edgeseg detect --sink URL`` builds one from a URL's scheme, e.g.::

    edgeseg detect clip.mp4 --sink mqtt://127.0.0.1:1883/site1 --sink http://10.0.0.9/hook

Each sink module imports its heavy dependency (paho-mqtt, ...) only when a sink is opened.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from edgeseg.core.errors import OutputError
from edgeseg.io.sinks.base import Sink
from edgeseg.io.sinks.jsonl import JsonlEvents, JsonlSettings
from edgeseg.io.sinks.mqtt import MqttSettings
from edgeseg.io.sinks.notify import NotifySettings
from edgeseg.io.sinks.webhook import WebhookSettings


@dataclass(frozen=True)
class SinkKind:
    name: str  # the key under ``sinks:``
    settings: type  # its pydantic settings model
    schemes: tuple[str, ...]  # URL schemes ``--sink`` accepts for it
    from_url: Callable[[SplitResult, Path], dict[str, Any]]  # URL (+ folder for relative paths) -> settings keys
    open: Callable[[Any], Sink]  # settings -> a ready sink
    doc: str


def _query(u: SplitResult) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in parse_qsl(u.query):
        out[k] = int(v) if v.isdigit() else v
    return out


def _jsonl_url(u: SplitResult, base: Path) -> dict[str, Any]:
    path = unquote(u.netloc + u.path) if u.netloc else unquote(u.path)
    return {"path": path if Path(path).is_absolute() else str(base / path), **_query(u)}


def _mqtt_url(u: SplitResult, base: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"host": u.hostname or "127.0.0.1", "port": u.port or 1883, "queue_dir": _mqtt_queue(base),
                           **_query(u)}
    if u.path.strip("/"):
        out["topic_prefix"] = u.path.strip("/")
    if u.username:
        out["username"], out["password"] = unquote(u.username), unquote(u.password or "")
    return out


def _webhook_url(u: SplitResult, base: Path) -> dict[str, Any]:
    return {"url": u.geturl(), "queue_dir": str(base / "webhook-queue")}


def _mqtt_queue(base: Path) -> str:
    return str(base / "mqtt-queue")


def _open_jsonl(s: JsonlSettings) -> Sink:
    return JsonlEvents(s.path, append=True, max_bytes=s.max_bytes, backups=s.backups)


def _open_webhook(s: WebhookSettings) -> Sink:
    from edgeseg.io.sinks.webhook import WebhookSink  # noqa: PLC0415

    return WebhookSink(s.url, s.queue_dir, s.timeout_s, s.max_backoff_s, dict(s.headers), max_events=s.max_events,
                       max_mb=s.max_mb, dead_letter_after=s.dead_letter_after, drain_cpu_share=s.drain_cpu_share)


def _open_mqtt(s: MqttSettings) -> Sink:
    from edgeseg.io.sinks.mqtt import MqttSink  # noqa: PLC0415

    try:
        return MqttSink(s.host, s.port, s.topic_prefix, s.client_id, s.qos, s.keepalive_s, s.username, s.password,
                        queue_dir=s.queue_dir, max_events=s.max_events)
    except ImportError:
        raise OutputError("the MQTT sink needs paho-mqtt (fix: pip install 'edgeseg[gateway]')") from None


def _open_notify(s: NotifySettings) -> Sink:
    from edgeseg.io.sinks.notify import NotifySink  # noqa: PLC0415

    return NotifySink(s)


def _no_url(u: SplitResult, base: Path) -> dict[str, Any]:
    raise OutputError("notify is configured in a watch config (sinks.notify.urls), not by --sink")


SINKS: dict[str, SinkKind] = {}


def register_sink(kind: SinkKind) -> None:
    SINKS[kind.name] = kind


register_sink(SinkKind("jsonl", JsonlSettings, ("jsonl", "file"), _jsonl_url, _open_jsonl,
                       "Events to a rotating JSON-lines file"))
register_sink(SinkKind("webhook", WebhookSettings, ("http", "https"), _webhook_url, _open_webhook,
                       "Events POSTed to an HTTP receiver (queued on disk)"))
register_sink(SinkKind("mqtt", MqttSettings, ("mqtt",), _mqtt_url, _open_mqtt, "Events published to an MQTT broker"))
register_sink(SinkKind("notify", NotifySettings, (), _no_url, _open_notify,
                       "Messages to people through Apprise (e-mail, Telegram, Slack, ntfy...), snapshot attached"))


def sink_from_url(url: str, base: str | Path = ".") -> Sink:
    """A sink from ``--sink URL`` (relative paths / queues under ``base``); one-line errors."""
    from edgeseg.core.declare import ConfigError  # noqa: PLC0415
    from edgeseg.core.validation import validate  # noqa: PLC0415

    u = urlsplit(url)
    kind = next((k for k in SINKS.values() if u.scheme.lower() in k.schemes), None)
    if kind is None:
        known = ", ".join(f"{s}://" for k in SINKS.values() for s in k.schemes)
        raise ConfigError(f"--sink {url}: unknown sink scheme {u.scheme + '://' if u.scheme else '(none)'} (fix: one of {known})")
    try:
        settings = validate(kind.settings, kind.from_url(u, Path(base)))
    except ConfigError as exc:
        raise ConfigError(f"--sink {url}: {exc}") from None
    return kind.open(settings)


def open_sinks(section: Any) -> list[Sink]:
    """The sinks a ``sinks:`` config section names, in registry order."""
    return [kind.open(getattr(section, name)) for name, kind in SINKS.items() if getattr(section, name, None) is not None]
