"""Against a real Triton server: ``edgeseg serve`` (PyTriton's tritonserver) started on 127.0.0.1.

Masks through the Triton backend equal local ONNX Runtime's; concurrent clients form batches
(read from Triton's own metrics endpoint); the image endpoint; one-line errors; the server killed
mid-run gives a clear error and the same Segmenter / gateway works again once it is back.
"""
from __future__ import annotations

import io
import json
import threading
from contextlib import redirect_stdout
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="needs the [triton] extra (tritonclient)")
pytest.importorskip("pytriton", reason="needs the [serve] extra (nvidia-pytriton)")

from edgeseg.errors import InferenceServerError, ModelError  # noqa: E402
from edgeseg.segmenter import Segmenter  # noqa: E402
from edgeseg.serve import batching_stats  # noqa: E402
from edgeseg.serve_process import ServerProcess  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(120, 160), (64, 64), (90, 200), (240, 320)]
    return [rng.integers(0, 255, (*sizes[i % len(sizes)], 3), dtype=np.uint8) for i in range(n)]


@pytest.fixture(scope="module")
def server(tiny_onnx: Path, tmp_path_factory) -> ServerProcess:
    log = tmp_path_factory.mktemp("triton") / "serve.log"
    srv = ServerProcess(tiny_onnx, None, "--max-batch", "8", "--queue-delay-us", "20000", "--threads", "1", log=log)
    try:
        srv.start()
    except (RuntimeError, TimeoutError) as exc:
        srv.stop()
        pytest.fail(f"edgeseg serve did not start: {exc}; log: {log.read_text()[-2000:] if log.exists() else ''}")
    yield srv
    srv.stop()


@pytest.mark.parametrize("proto", ["grpc", "http"])
def test_masks_equal_local_onnxruntime(server: ServerProcess, tiny_onnx: Path, proto: str) -> None:
    url = server.grpc_url if proto == "grpc" else server.http_url
    frames = _frames(6)
    with Segmenter(tiny_onnx, backend="onnxruntime", min_area=0) as local, Segmenter(url, min_area=0) as remote:
        assert remote.backend_name == "triton"
        assert remote.info.classes == local.info.classes and remote.info.mean == local.info.mean
        assert remote.info.input_size == local.info.input_size == (64, 64)
        assert remote.backend.max_batch == 8
        want = local.segment_batch(frames, return_probs=True)
        got = remote.segment_batch(frames, return_probs=True)
        for w, g in zip(want, got):
            assert np.array_equal(w.mask, g.mask)
            np.testing.assert_allclose(g.probs, w.probs, atol=1e-5)
            # geometry exactly; confidences up to float noise (the server batches frames differently)
            assert [r.bbox for r in w.regions] == [r.bbox for r in g.regions]
            assert [r.area_px for r in w.regions] == [r.area_px for r in g.regions]
            np.testing.assert_allclose([r.max_conf for r in g.regions], [r.max_conf for r in w.regions], atol=1e-5)
        big = remote.segment_batch(_frames(19, seed=3))  # > max batch: split into 8 + 8 + 3
        ref = local.segment_batch(_frames(19, seed=3))
        assert all(np.array_equal(a.mask, b.mask) for a, b in zip(big, ref))


def test_concurrent_clients_form_batches(server: ServerProcess) -> None:
    before = batching_stats(server.metrics_url, "edgeseg")
    errors: list[BaseException] = []
    n_clients, calls = 8, 6

    def client() -> None:
        try:
            with Segmenter(server.grpc_url) as seg:
                for f in _frames(calls, seed=7):
                    seg.segment(f)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    after = batching_stats(server.metrics_url, "edgeseg")
    requests = after["requests"] - before["requests"]
    executions = after["executions"] - before["executions"]
    inferences = after["inferences"] - before["inferences"]
    assert requests == inferences == n_clients * calls
    # Triton's dynamic batcher ran fewer model executions than it got requests: batches formed
    assert 0 < executions < requests, (requests, executions)


def test_image_endpoint(server: ServerProcess, tiny_onnx: Path) -> None:
    import tritonclient.http as httpclient

    frame = _frames(1, seed=5)[0]
    png = cv2.imencode(".png", frame)[1].tobytes()
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        inp = httpclient.InferInput("image", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[png]], dtype=object))
        res = client.infer("edgeseg_image", [inp])
    finally:
        client.close()
    mask = cv2.imdecode(np.frombuffer(res.as_numpy("mask")[0][0], np.uint8), cv2.IMREAD_UNCHANGED)
    result = json.loads(res.as_numpy("result")[0][0])
    with Segmenter(tiny_onnx, backend="onnxruntime", min_area=0.001) as local:
        want = local.segment(frame)
    assert np.array_equal(mask, want.mask)
    assert result["frame_size"] == list(frame.shape[:2]) and result["classes"] == list(want.classes)
    local_regions = [r.to_dict() for r in want.regions]
    assert [{k: v for k, v in r.items() if k not in ("mean_conf", "max_conf")} for r in result["regions"]] == \
        [{k: v for k, v in r.items() if k not in ("mean_conf", "max_conf")} for r in local_regions]
    for got, ref in zip(result["regions"], local_regions):  # the server's runtime rounds floats its own way
        assert got["mean_conf"] == pytest.approx(ref["mean_conf"], abs=1e-4)
        assert got["max_conf"] == pytest.approx(ref["max_conf"], abs=1e-4)


def test_one_line_errors(server: ServerProcess) -> None:
    with pytest.raises(ModelError) as err:
        Segmenter(server.grpc_url.replace("/edgeseg", "/no_such_model"))
    assert "no_such_model" in str(err.value) and "missing or not ready" in str(err.value)
    with Segmenter(server.grpc_url) as seg:
        with pytest.raises(InferenceServerError, match="shape mismatch"):
            seg.backend.infer(np.zeros((1, 2, 64, 64), np.float32))
        # a deadline no server meets: the timeout error, then the next call reconnects and works
        url = seg.backend.url
        seg.backend.url = type(url)(**{**url.__dict__, "timeout_s": 1e-6})
        with pytest.raises(InferenceServerError, match="timeout"):
            seg.segment(_frames(1)[0])
        seg.backend.url = url
        assert seg.segment(_frames(1)[0]).mask.shape == (120, 160)


def test_malformed_requests_get_one_line_answers(server: ServerProcess, tiny_onnx: Path) -> None:
    """Garbage bytes next to a good image in one batch: the bad request gets a one-line error in its
    own result (no server traceback), the good one its masks; a wrong dtype / shape is refused by
    Triton itself with a 400 naming the problem."""
    import json
    import urllib.error
    import urllib.request

    import tritonclient.http as httpclient

    frame = _frames(1)[0]
    png = cv2.imencode(".png", frame)[1].tobytes()
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        inp = httpclient.InferInput("image", [2, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[b"certainly not an image"], [png]], dtype=object))
        res = client.infer("edgeseg_image", [inp])
    finally:
        client.close()
    bad, good = (json.loads(r[0]) for r in res.as_numpy("result"))
    assert set(bad) == {"error"} and "\n" not in bad["error"] and "Traceback" not in bad["error"]
    assert bad["error"].startswith("not a JPEG / PNG image") and "(fix: " in bad["error"]
    assert good["frame_size"] == list(frame.shape[:2]) and res.as_numpy("mask")[1][0][:4] == b"\x89PNG"
    body = json.dumps({"inputs": [{"name": "image", "shape": [1, 3, 64, 64], "datatype": "INT8",
                                   "data": [0] * (3 * 64 * 64)}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/v2/models/edgeseg/infer", data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    message = json.loads(err.value.read())["error"]
    assert err.value.code == 400 and "\n" not in message and "Traceback" not in message and "INT8" in message


def test_server_killed_mid_run_then_back(tiny_onnx: Path, tmp_path: Path) -> None:
    srv = ServerProcess(tiny_onnx, None, "--threads", "1", log=tmp_path / "serve.log").start()
    try:
        seg = Segmenter(srv.grpc_url + "?timeout=5")
        frame = _frames(1)[0]
        first = seg.segment(frame)
        srv.kill()  # SIGKILL: no clean shutdown
        with pytest.raises(InferenceServerError) as err:
            seg.segment(frame)
        msg = str(err.value)
        assert "\n" not in msg and "127.0.0.1" in msg, msg
        with pytest.raises(InferenceServerError, match="not reachable"):  # still down: clear, immediate
            seg.segment(frame)
        srv.start()  # same ports
        again = seg.segment(frame)  # the same Segmenter reconnects by itself
        assert np.array_equal(again.mask, first.mask)
        seg.close()

        # the gateway example pointed at the server: cameras run on the triton backend
        from examples import gateway_loop

        out = io.StringIO()
        with redirect_stdout(out):
            rc = gateway_loop.main([str(ROOT / "edgeseg" / "assets" / "demo_gas_leak.mp4"), "--model", srv.grpc_url])
        events = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
        assert rc == 0
        started = [e for e in events if e["event"] == "gateway_started"]
        assert started and started[0]["backend"] == "triton"
        finished = [e for e in events if e["event"] == "camera_finished"]
        assert len(finished) == 1 and finished[0]["processed"] == 48  # every frame of the clip
    finally:
        srv.stop()


def test_triton_benchmark_runs(tiny_onnx: Path, tmp_path: Path) -> None:
    """benchmarks/triton_bench.py end to end on the tiny model (short points): both sides, the hop."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("triton_bench", ROOT / "benchmarks" / "triton_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rep = bench.main(["--model", str(tiny_onnx), "--duration", "0.5", "--clients", "1,2", "--hop-calls", "5",
                      "--out", str(tmp_path)])
    assert [p["clients"] for p in rep["local"]] == [p["clients"] for p in rep["triton"]] == [1, 2]
    assert all(p["fps"] > 0 and p["p99_ms"] >= p["p50_ms"] for p in rep["local"] + rep["triton"])
    assert rep["hop"]["triton_infer_p50_ms"] > 0 and rep["machine"]["cpu"]
    assert "| 2 |" in (tmp_path / "report.md").read_text() and json.loads((tmp_path / "report.json").read_text())
