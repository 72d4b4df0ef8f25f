"""Request budgets of the gateway's HTTP server (issue #37, point 12), by real HTTP requests to a
running gateway: the status page in a few tabs never trips its own limit, a flood on /metrics is
refused while a scrape every second is answered, and the limit cannot be dodged."""
from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from types import SimpleNamespace

from edgeseg import Gateway
from edgeseg.apps.gateway.ratelimit import Buckets, Limiter, client_key, kind
from test_api import call, gateway
from test_gateway import FakeCam, cams, wait_for

PAGE_INTERVAL_S = 2.0  # setInterval(refresh, 2000) in static/app.js


def get(gw, path: str, source: str = "127.0.0.1", headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.server.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def test_sixteen_cameras_in_three_tabs_never_get_429(tiny_onnx, tmp_path):
    """What app.js does each refresh, in 3 tabs at once (the worst case: in step), for 3 refreshes
    (~5 s): /api/cameras, /api/events, then every camera's latest.jpg with the ETag it shows."""
    cfg = {"model": str(tiny_onnx), "threads": 1, "cameras": cams(16), "metrics": {"port": 0},
           "state_dir": str(tmp_path / "state")}
    gw = Gateway(cfg, capture_factory=lambda spec: FakeCam(spec, fps=2)).start()
    try:
        assert wait_for(lambda: all(c["processed"] for c in __import__("json").loads(call(gw, "GET", "/api/cameras")[2])),
                        timeout=60, step=0.5)
        time.sleep(2.5)  # the buckets are full again after the wait above
        codes: Counter = Counter()
        lock = threading.Lock()

        def tab() -> None:
            etags: dict[str, str] = {}
            for _ in range(3):
                t0 = time.monotonic()
                got = [get(gw, "/api/cameras")[0], get(gw, "/api/events?limit=30")[0]]
                for i in range(16):
                    hdrs = {"If-None-Match": etags[f"cam{i}"]} if f"cam{i}" in etags else {}
                    code, h, _ = get(gw, f"/api/cameras/cam{i}/latest.jpg", headers=hdrs)
                    etags[f"cam{i}"] = h.get("ETag", etags.get(f"cam{i}", ""))
                    got.append(code)
                with lock:
                    codes.update(got)
                time.sleep(max(0.0, PAGE_INTERVAL_S - (time.monotonic() - t0)))

        tabs = [threading.Thread(target=tab) for _ in range(3)]
        for t in tabs:
            t.start()
        for t in tabs:
            t.join(60)
        assert sum(codes.values()) == 3 * 3 * 18, codes
        assert codes[429] == 0 and set(codes) <= {200, 304}, codes
    finally:
        gw.stop()


def test_latest_jpg_has_an_etag_and_answers_304_while_unchanged(tiny_onnx, tmp_path):
    gw = gateway(tiny_onnx, tmp_path, n=1).start()
    try:
        assert wait_for(lambda: call(gw, "GET", "/api/cameras/cam0/latest.jpg")[0] == 200)
        for _ in range(20):  # at 20 fps a frame may change between two requests: one of 20 tries is enough
            code, h, body = get(gw, "/api/cameras/cam0/latest.jpg")
            assert code == 200 and h["ETag"].startswith('"') and body[:2] == b"\xff\xd8"
            code2, h2, body2 = get(gw, "/api/cameras/cam0/latest.jpg", headers={"If-None-Match": h["ETag"]})
            if code2 == 304:
                assert body2 == b"" and h2["ETag"] == h["ETag"]
                break
            assert code2 == 200 and h2["ETag"] != h["ETag"]
        else:
            raise AssertionError("never 304")
    finally:
        gw.stop()


def test_metrics_flood_is_refused_while_a_scrape_every_second_is_answered(tiny_onnx, tmp_path):
    gw = gateway(tiny_onnx, tmp_path, n=1).start()
    try:
        flood: Counter = Counter()
        stop = threading.Event()

        def flooder() -> None:  # another host (127.0.0.2) hammering /metrics on kept-alive connections
            conn = None
            while not stop.is_set():
                try:
                    conn = conn or http.client.HTTPConnection("127.0.0.1", gw.server.port, timeout=10,
                                                              source_address=("127.0.0.2", 0))
                    conn.request("GET", "/metrics")
                    r = conn.getresponse()
                    r.read()
                    flood[r.status] += 1
                    if r.will_close:
                        conn.close()
                        conn = None
                except OSError:
                    conn = None
                    flood["error"] += 1

        threads = [threading.Thread(target=flooder) for _ in range(4)]
        for t in threads:
            t.start()
        scrapes = []
        t0 = time.monotonic()
        for i in range(4):  # Prometheus every second, and a health probe, from 127.0.0.1
            time.sleep(max(0.0, t0 + i + 1 - time.monotonic()))
            scrapes.append(get(gw, "/metrics")[0])
            scrapes.append(get(gw, "/healthz")[0])
        stop.set()
        for t in threads:
            t.join(15)
        took = time.monotonic() - t0
        print(f"flood: {dict(flood)} in {took:.1f} s ({sum(flood.values()) / took:.0f} requests/s)")
        assert scrapes == [200] * 8, scrapes
        assert flood[429] > flood[200] > 0, flood
        assert flood[200] <= 2 * 10 + 10 * took + 5, flood  # api.probe_rate 10/s, bursts of 20
    finally:
        gw.stop()


def test_no_path_or_method_is_unlimited(tiny_onnx, tmp_path):
    """Formerly only routed API requests were charged: /healthz, /metrics, OPTIONS and unknown
    methods were free; and a header the client writes (X-Forwarded-For) changes nothing."""
    gw = gateway(tiny_onnx, tmp_path, n=1, api={"rate": 5, "probe_rate": 5}).start()
    try:
        for method, path in (("GET", "/healthz"), ("OPTIONS", "/api/cameras"), ("PATCH", "/api/cameras"),
                             ("GET", "/api/cameras")):
            time.sleep(2.5)  # a full bucket: 10
            codes = [call(gw, method, path, headers={"X-Forwarded-For": f"10.9.{i}.1"})[0] for i in range(30)]
            assert 429 in codes and codes.count(429) >= 15, (method, path, codes)
    finally:
        gw.stop()


def test_rotating_addresses_neither_gets_fresh_buckets_nor_refills_others():
    """Formerly the table was cleared past 10000 clients: everyone, the flooder too, got a full
    bucket again. Now idle (full) buckets are forgotten and, past the bound, new clients share one."""
    b = Buckets(rate=1.0, max_keys=10)
    assert [b.allow("flooder") for _ in range(3)] == [True, True, False]
    assert all(b.allow(f"10.0.0.{i}") for i in range(9))  # the table is full now
    assert b.allow("new-a") and b.allow("new-b") and not b.allow("new-c")  # past the bound: one shared bucket
    assert not b.allow("flooder")  # still empty: nobody's bucket was reset


def test_client_key_ipv6_64_and_mapped_ipv4():
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1234") == "2001:db8::/64"
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert kind("GET", "/api/cameras/x/latest.jpg?t=1") == kind("GET", "/api/events/3/snapshot.jpg") == "image"
    assert kind("POST", "/api/cameras/x/latest.jpg") == kind("GET", "/api/cameras") == "api"
    assert kind("HEAD", "/metrics") == kind("GET", "/healthz?x") == "probe"


def test_x_forwarded_for_counts_only_from_a_trusted_proxy():
    s = SimpleNamespace(rate=1.0, image_rate=1.0, probe_rate=1.0, trusted_proxies=["127.0.0.1"])
    lim = Limiter(s)

    def req(peer: str, xff: str | None) -> SimpleNamespace:
        headers = SimpleNamespace(get_all=lambda name: [xff] if xff and name == "X-Forwarded-For" else None)
        return SimpleNamespace(client_address=(peer, 1), headers=headers, command="GET", path="/api/cameras")

    assert lim.client(req("127.0.0.1", "198.51.100.9, 203.0.113.5")) == "203.0.113.5"  # the proxy's peer
    assert lim.client(req("127.0.0.1", "203.0.113.5, 127.0.0.1")) == "203.0.113.5"  # a chain of trusted proxies
    assert lim.client(req("127.0.0.1", None)) == "127.0.0.1"
    assert lim.client(req("192.0.2.1", "203.0.113.5")) == "192.0.2.1"  # anyone else: the header is ignored
    assert [lim.allow(req("127.0.0.1", "203.0.113.5")) for _ in range(3)] == [None, None, "api.rate"]
    assert lim.allow(req("127.0.0.1", "203.0.113.6")) is None  # another client behind the proxy
