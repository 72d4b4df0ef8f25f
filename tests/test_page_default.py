"""The status page is on by default, on loopback (#35 point 4): ``edgeseg watch`` without ``metrics.port``
serves the page and the API on 127.0.0.1:8088; a config turns it off with ``metrics.enabled: false`` or
``metrics.port: null``; when the default port is taken the gateway starts without a page and says why
in one warning with the fix (a second gateway on the machine), while a port the config names still
stops the start (tests/test_faults_watch.py)."""
from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from edgeseg import Gateway
from edgeseg.config.settings import DEFAULT_PAGE_PORT, GatewaySettings, MetricsSettings
from test_gateway import Collect, FakeCam, cams, free_port, stop_proc, wait_for

ROOT = Path(__file__).resolve().parents[1]


def test_where_the_page_listens():
    assert MetricsSettings().listen(DEFAULT_PAGE_PORT) == ("127.0.0.1", DEFAULT_PAGE_PORT, False)
    assert MetricsSettings().listen(None) is None  # a Gateway embedded in a program: only what it asks for
    assert MetricsSettings(port=None).listen(DEFAULT_PAGE_PORT) is None  # an explicit null: off
    assert MetricsSettings(enabled=False).listen(DEFAULT_PAGE_PORT) is None
    assert MetricsSettings(enabled=False, port=9108).listen(DEFAULT_PAGE_PORT) is None
    assert MetricsSettings(port=0).listen(DEFAULT_PAGE_PORT) == ("127.0.0.1", 0, True)
    # the default binds loopback even where metrics.host names all interfaces: open to the network only on purpose
    assert MetricsSettings(host="0.0.0.0").listen(DEFAULT_PAGE_PORT) == ("127.0.0.1", DEFAULT_PAGE_PORT, False)
    # from a config file: left out vs null
    base = {"cameras": [{"name": "c", "source": "0"}]}
    assert GatewaySettings.model_validate(base).metrics.listen(8088) == ("127.0.0.1", 8088, False)
    assert GatewaySettings.model_validate({**base, "metrics": {"port": None}}).metrics.listen(8088) is None
    assert GatewaySettings.model_validate({**base, "metrics": {"enabled": False}}).metrics.listen(8088) is None
    # off needs no token, whatever the host
    GatewaySettings.model_validate({**base, "metrics": {"host": "0.0.0.0", "port": 9108, "enabled": False}})


def _gateway(tiny_onnx, tmp_path, name: str, port: int, metrics: dict | None = None) -> Gateway:
    cfg = {"model": str(tiny_onnx), "threads": 1, "cameras": cams(1), "state_dir": str(tmp_path / name),
           **({"metrics": metrics} if metrics is not None else {})}
    return Gateway(cfg, sinks=[Collect()], capture_factory=lambda spec: FakeCam(spec, fps=10), default_port=port).start()


def test_default_port_serves_the_page_and_a_second_gateway_goes_on_without_one(tiny_onnx, tmp_path, caplog):
    port = free_port()
    first = _gateway(tiny_onnx, tmp_path, "a", port)
    try:
        assert first.server is not None and first.server.url == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(first.server.url + "/", timeout=5) as r:
            assert r.status == 200 and b"edgeseg watch" in r.read()
        with caplog.at_level(logging.WARNING, logger="edgeseg"):
            second = _gateway(tiny_onnx, tmp_path, "b", port)
        try:
            assert second.server is None and wait_for(lambda: second.stats()["cameras"]["cam0"]["processed"] > 0, 20)
            warned = [r.getMessage() for r in caplog.records if "no status page" in r.getMessage()]
            assert len(warned) == 1 and f"127.0.0.1:{port}" in warned[0] and "(fix: " in warned[0], warned
            assert "metrics.port" in warned[0] and "metrics.enabled: false" in warned[0], warned
        finally:
            second.stop()
    finally:
        first.stop()
    off = _gateway(tiny_onnx, tmp_path, "c", port, {"enabled": False})
    try:
        assert off.server is None
    finally:
        off.stop()


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_watch_without_metrics_port_serves_the_page_on_loopback_8088(tiny_onnx, tmp_path):
    if not _free(DEFAULT_PAGE_PORT):
        pytest.skip(f"127.0.0.1:{DEFAULT_PAGE_PORT} is in use on this machine (another gateway?)")
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"model": str(tiny_onnx), "threads": 1, "state_dir": "state",
                                  "cameras": [{"name": "yard", "source": "rtsp://127.0.0.1:9/none"}]}))
    # nothing answers on port 9: the camera is offline (trouble), the page still comes up and shows it
    p = subprocess.Popen([sys.executable, "-m", "edgeseg.cli", "watch", str(config)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT)
    url = f"http://127.0.0.1:{DEFAULT_PAGE_PORT}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(url + "/api/cameras", timeout=2) as r:
                return json.loads(r.read())[0]["name"] == "yard"
        except OSError:
            return False
    try:
        assert wait_for(up, 60, step=0.3), "no page on the default port"
        with urllib.request.urlopen(url + "/", timeout=5) as r:
            assert b"edgeseg watch" in r.read()
    finally:
        stop_proc(p)
    err = p.stderr.read()
    assert f"status page on {url}/" in err, err[-2000:]
