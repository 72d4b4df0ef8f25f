"""The camera gateway (``edgeseg watch``): many live cameras, one model, batched inference, events
to JSONL / webhook / MQTT, Prometheus metrics and /healthz, clean stop and SIGHUP reload.

Optional dependencies (``pip install 'edgeseg[gateway]'``): PyYAML for YAML configs, paho-mqtt for
the MQTT sink, prometheus-client for /metrics; each is imported only when used.
"""
from __future__ import annotations

from edgeseg.apps.gateway.config import CameraConfig, ConfigError, GatewayConfig, load_config, parse_config
from edgeseg.apps.gateway.service import Gateway

__all__ = ["Gateway", "GatewayConfig", "CameraConfig", "ConfigError", "load_config", "parse_config"]
