"""OpenVINO backend, precision selection, and ``auto``'s measured choice between CPU runtimes."""
from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from edgeseg import Segmenter
from edgeseg.runtime.backends import autoselect
from edgeseg.runtime.backends.base import BackendOptions
from edgeseg.runtime.backends.registry import BACKENDS, backend_names, open_backend
from edgeseg.core.errors import ModelError

HAVE_OV = importlib.util.find_spec("openvino") is not None
needs_ov = pytest.mark.skipif(not HAVE_OV, reason="OpenVINO not installed (pip install 'edgeseg[openvino]')")


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (48 + 16 * i, 80, 3), dtype=np.uint8) for i in range(n)]


def test_openvino_is_registered_after_onnxruntime():
    assert list(BACKENDS)[:3] == ["tensorrt", "onnxruntime", "openvino"]
    assert "openvino" in backend_names() and BACKENDS["openvino"].suffixes == (".onnx",)


@needs_ov
def test_openvino_matches_onnxruntime_and_reads_metadata(tiny_onnx):
    ov = open_backend(tiny_onnx, "openvino", BackendOptions(threads=1))
    ort = open_backend(tiny_onnx, "onnxruntime", BackendOptions(threads=1))
    assert ov.name == "openvino" and ov.info == ort.info and ov.info.input_size == (64, 64)
    assert "CPU" in ov.providers[0] and ov.max_batch is None
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 96)).astype(np.float32)
    a, b = ov.infer(x), ort.infer(x)
    assert a.shape == (2, 3, 64, 96) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4)
    # a second shape recompiles; the first is still served
    np.testing.assert_allclose(ov.infer(x[:1, :, :32, :32]), ort.infer(x[:1, :, :32, :32]), atol=1e-4)
    np.testing.assert_allclose(ov.infer(x), b, atol=1e-4)
    ov.close()
    with pytest.raises(RuntimeError, match="closed"):
        ov.infer(x)


@needs_ov
def test_throughput_hint_splits_a_batch_over_parallel_requests(tiny_onnx):
    lat = Segmenter(tiny_onnx, backend="openvino")
    tput = Segmenter(tiny_onnx, backend=open_backend(tiny_onnx, "openvino", BackendOptions(hint="throughput")))
    frames = _frames(4)
    for a, b in zip(lat.segment_batch(frames), tput.segment_batch(frames)):
        np.testing.assert_array_equal(a.mask, b.mask)
    with pytest.raises(ModelError, match="hint must be one of latency, throughput"):
        open_backend(tiny_onnx, "openvino", BackendOptions(hint="fast"))


@needs_ov
def test_openvino_refuses_bad_files(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf" * 20)
    # the backend's own refusal, not "openvino backend unavailable" (OpenVINO is there; the file is bad)
    with pytest.raises(ModelError, match="junk.onnx: not a loadable ONNX model"):
        open_backend(junk, "openvino")
    with pytest.raises(ModelError):
        Segmenter(tmp_path / "absent.onnx", backend="openvino")


def test_missing_openvino_is_a_one_line_install_hint(tiny_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(ModelError, match=r"openvino backend unavailable: OpenVINO is not installed \(pip install"):
        Segmenter(tiny_onnx, backend="openvino")


def test_bf16_is_refused_by_onnxruntime_saying_where_it_runs(tiny_onnx):
    with pytest.raises(ModelError, match="bf16 runs on the openvino backend only"):
        Segmenter(tiny_onnx, backend="onnxruntime", precision="bf16")
    with pytest.raises(ModelError, match="precision must be one of fp32, bf16, int8"):
        Segmenter(tiny_onnx, precision="fp16")


@needs_ov
def test_bf16_runs_on_openvino_or_names_the_missing_cpu_feature(tiny_onnx, monkeypatch):
    from edgeseg.runtime.backends import openvino_backend as ovb
    from edgeseg.core.host import has_bf16

    if has_bf16():
        seg = Segmenter(tiny_onnx, precision="bf16")  # auto: ONNX Runtime refuses, OpenVINO takes it
        assert seg.backend_name == "openvino" and "bf16" in seg.backend.providers[0]
        ref = Segmenter(tiny_onnx, backend="onnxruntime")
        f = _frames(1)[0]
        assert (seg.segment(f).mask == ref.segment(f).mask).mean() > 0.95
    monkeypatch.setattr(ovb, "cpu_capabilities", lambda core: ("FP32", "INT8"))
    with pytest.raises(ModelError, match="bf16 needs a CPU with AVX512-BF16 or AMX; this CPU has"):
        Segmenter(tiny_onnx, backend="openvino", precision="bf16")


def test_int8_precision_runs_the_sibling_or_says_how_to_make_it(tiny_onnx, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_onnx.read_bytes())
    with pytest.raises(ModelError, match=r"no INT8 model for m.onnx .*edgeseg export int8 .*m.int8.onnx"):
        Segmenter(model, precision="int8")
    (tmp_path / "m.int8.onnx").write_bytes(tiny_onnx.read_bytes())  # stands in for a quantised file
    seg = Segmenter(model, precision="int8", backend="onnxruntime")
    assert seg.model_path.name == "m.int8.onnx" and seg.precision == "int8"


@needs_ov
@pytest.mark.parametrize("winner", ["onnxruntime", "openvino"])
def test_auto_picks_the_runtime_measured_faster_and_caches_it(tiny_onnx, monkeypatch, winner):
    monkeypatch.setenv("EDGESEG_AUTO_MEASURE", "1")
    calls = []

    def fake_timing(backends, **_):
        calls.append(sorted(backends))
        return {"onnxruntime": 10.0, "openvino": 5.0} if winner == "openvino" else {"onnxruntime": 10.0, "openvino": 9.8}

    monkeypatch.setattr(autoselect, "time_backends", fake_timing)
    assert Segmenter(tiny_onnx).backend_name == winner
    assert Segmenter(tiny_onnx).backend_name == winner  # second time: from the cache
    assert calls == [["onnxruntime", "openvino"]]
    cache = json.loads((autoselect.cache_dir() / "backend_choice.json").read_text())
    assert [v["choice"] for v in cache.values()] == [winner]
    monkeypatch.setenv("EDGESEG_AUTO_MEASURE", "0")
    assert Segmenter(tiny_onnx).backend_name == "onnxruntime"


@needs_ov
def test_auto_measurement_really_times_both(tiny_onnx):
    ort = open_backend(tiny_onnx, "onnxruntime")
    ov = open_backend(tiny_onnx, "openvino")
    ms = autoselect.time_backends({"onnxruntime": ort, "openvino": ov}, budget_s=0.2)
    assert set(ms) == {"onnxruntime", "openvino"} and all(v > 0 for v in ms.values())


def test_cpu_flags_are_read_not_assumed():
    from edgeseg.core.host import cpu_features, describe_cpu_features, has_bf16, has_vnni, machine_info

    fake = "processor : 0\nflags : fpu sse2 avx2 fma avx512f avx512_vnni\n"
    f = cpu_features(fake)
    assert f["avx2"] and f["avx512"] and f["avx512_vnni"] and not f["avx512_bf16"] and not f["amx_int8"]
    assert has_vnni(f) and not has_bf16(f)
    assert "no avx_vnni avx512_bf16 amx_bf16 amx_int8" in describe_cpu_features(f)
    arm = cpu_features("Features : fp asimd asimddp bf16\n")
    assert arm["neon"] and has_vnni(arm) and has_bf16(arm)
    info = machine_info()
    assert set(info["cpu_features"]) >= {"avx2", "avx512_vnni", "avx512_bf16", "amx_int8"}
    assert "openvino" in info["packages"]


@needs_ov
@pytest.mark.parametrize("threshold", [None, 0.05, 0.4])
@pytest.mark.parametrize("letterbox", [False, True])
def test_labels_made_inside_openvino_equal_the_numpy_postprocessing(tiny_onnx, threshold, letterbox):
    """The Segmenter's OpenVINO path (uint8 frames in, normalisation, labels and the leak map made in
    the compiled graph) gives the same labels and regions as the probabilities through
    edgeseg.runtime.postprocess.analyse, and the same probabilities (to float rounding) as the float path."""
    from edgeseg.runtime.postprocess import analyse
    from edgeseg.runtime.preprocess import network_images, preprocess

    seg = Segmenter(tiny_onnx, backend="openvino", threshold=threshold, letterbox=letterbox, min_area=0)
    ort = Segmenter(tiny_onnx, backend="onnxruntime", threshold=threshold, letterbox=letterbox, min_area=0)
    frames = _frames(4, seed=3)
    for frame, res, ref in zip(frames, seg.segment_batch(frames), ort.segment_batch(frames)):
        x, t = network_images([frame], seg.info.input_size, seg.mode)
        probs = seg.backend.infer_uint8(x)
        xf, _ = preprocess([frame], seg.info.input_size, seg.info.mean, seg.info.std, seg.mode)
        np.testing.assert_allclose(probs, seg.backend.infer(xf), atol=1e-5)
        labels, regions = analyse(probs[0], t[0], seg.threshold, seg.info.leak_class, 0)
        np.testing.assert_array_equal(res.network_mask, labels)
        assert [r.to_dict() for r in res.regions] == [r.to_dict() for r in regions]
        assert (res.mask == ref.mask).mean() > 0.99  # and ONNX Runtime agrees (float rounding only)


@needs_ov
def test_labels_path_takes_per_frame_thresholds_and_falls_back_when_mixed(tiny_onnx):
    seg = Segmenter(tiny_onnx, backend="openvino", threshold=0.05)
    frames = _frames(3, seed=5)
    batch = seg.segment_batch(frames, thresholds=[0.05, 0.9, None])  # None: the Segmenter's own
    single = [Segmenter(tiny_onnx, backend="openvino", threshold=t).segment(f)
              for t, f in zip([0.05, 0.9, 0.05], frames)]
    for a, b in zip(batch, single):
        np.testing.assert_array_equal(a.network_mask, b.network_mask)
    argmax = Segmenter(tiny_onnx, backend="openvino")  # no threshold: argmax labels in the graph
    mixed = argmax.segment_batch(frames, thresholds=[0.05, None, None])  # not expressible: probabilities path
    np.testing.assert_array_equal(mixed[1].network_mask, argmax.segment(frames[1]).network_mask)
    np.testing.assert_array_equal(mixed[0].network_mask, single[0].network_mask)
    # return_probs takes the probabilities path and agrees with the labels path
    with_probs = seg.segment(frames[0], return_probs=True)
    np.testing.assert_array_equal(with_probs.network_mask, batch[0].network_mask)


@needs_ov
def test_throughput_backend_reports_its_parallel_frames(tiny_onnx):
    lat = open_backend(tiny_onnx, "openvino", BackendOptions())
    tput = open_backend(tiny_onnx, "openvino", BackendOptions(hint="throughput"))
    assert lat.parallel_frames == 1 and tput.parallel_frames >= 1
    frames = np.stack([f[:48, :64] for f in _frames(3)])
    frames = np.stack([np.resize(f, (64, 64, 3)) for f in frames]).astype(np.uint8)
    a = lat.infer_labels(frames, np.full(3, 0.1, np.float32))
    b = tput.infer_labels(frames, np.full(3, 0.1, np.float32))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)
