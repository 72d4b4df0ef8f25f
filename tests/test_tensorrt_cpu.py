"""TensorRT path tests that run on a CPU-only machine.

The builder tests use ``FakeTensorRT``: a minimal stand-in ``trt`` module that records calls. It
checks OUR orchestration (flags, profile, precision branches, files), not TensorRT itself; the real
build is covered by tests/test_tensorrt_gpu.py on a GPU host.
"""
from __future__ import annotations

import enum
import json
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.runtime.cuda_layer import BackendUnavailable, CudaError, load_cuda_layer
from fakes import engine_meta as _meta
from edgeseg.core.model_meta import (
    EngineMismatch, read_sidecar, sidecar_path,
    write_sidecar,
)
from edgeseg.runtime.preprocess import preprocess
from edgeseg.runtime.backends.tensorrt_build import BuildError, BuildOptions, CalibrationBatches, build_engine


# ----------------------------------------------------------------------------- fakes

def make_tiny_onnx(path: Path, size=(64, 96), labels: str = "none", meta: dict | None = None) -> Path:
    """Softmax 'probs' (+ 'labels' = Cast(ArgMax(probs), to=labels) as the exporter writes it)."""
    import onnx
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    nodes = [helper.make_node("Softmax", ["image"], ["probs"], axis=1)]
    outs = [out]
    if labels != "none":
        to = {"uint8": TensorProto.UINT8, "int32": TensorProto.INT32}[labels]
        nodes += [helper.make_node("ArgMax", ["probs"], ["am"], axis=1, keepdims=0),
                  helper.make_node("Cast", ["am"], ["labels"], to=to)]
        outs.append(helper.make_tensor_value_info("labels", to, ["batch", "height", "width"]))
    graph = helper.make_graph(nodes, "tiny", [inp], outs)
    # IR 8 is what opset 17 needs; onnx's newest default (IR 14 in onnx 1.23) is refused by
    # onnxruntime <= 1.30 (seen on a GPU host with those versions)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for k, v in {"input_size": json.dumps(list(size)), "classes": json.dumps(["background", "gas-smoke", "machine"]),
                 **(meta or {})}.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(model, str(path))
    return path


class FakeCuda:
    supports_events = False

    def device_name(self):
        return "Fake Orin"

    def compute_capability(self):
        return "8.7"


# Values from NVIDIA's headers, NVIDIA/TensorRT at tags v8.6.1, v10.3.0, v11.0 and v11.1:
# include/NvInfer.h `enum class NetworkDefinitionCreationFlag`:
#   v8.6.1:  kEXPLICIT_BATCH = 0, kEXPLICIT_PRECISION (deprecated) = 1
#   v10.3.0: kEXPLICIT_BATCH (deprecated, ignored) = 0, kSTRONGLY_TYPED = 1
#   v11.x:   kSTRONGLY_TYPED (deprecated: "Strongly typed mode is always enabled") = 0,
#            kPREFER_JIT_PYTHON_PLUGINS = 1, kPREFER_AOT_PYTHON_PLUGINS = 2
NDCF_VALUES = {
    8: {"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1},
    10: {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1},
    11: {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2},
}
# include/NvInferRuntimeBase.h `enum class DataType` (same numbers in v8.6.1, v10.3.0, v11.1; kBF16 and
# kINT64 from 10.0): kFLOAT 0, kHALF 1, kINT8 2, kINT32 3, kBOOL 4, kUINT8 5, kFP8 6, kBF16 7, kINT64 8.
# Its kUINT8 comment: "kUINT8 conversions are only supported for {kFLOAT, kHALF}".
DATA_TYPE = {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "UINT8": 5, "INT64": 8}
NPTYPE = {0: np.float32, 1: np.float16, 2: np.int8, 3: np.int32, 4: np.bool_, 5: np.uint8, 8: np.int64}
# include/NvInferRuntimeBase.h `enum class TensorIOMode`: kNONE = 0, kINPUT = 1, kOUTPUT = 2
TENSOR_IO_MODE = {"NONE": 0, "INPUT": 1, "OUTPUT": 2}


def _uint8_cast_from_int(path: str) -> bool:
    """Does this ONNX cast an integer (ArgMax) result to UINT8, which TensorRT does not support?"""
    import onnx
    from onnx import TensorProto

    g = onnx.load(path, load_external_data=False).graph
    made_by = {o: n.op_type for n in g.node for o in n.output}
    return any(n.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.UINT8 for a in n.attribute)
               and made_by.get(n.input[0]) == "ArgMax" for n in g.node)


# how TensorRT's ONNX parser types a graph IO tensor (onnx-tensorrt importerUtils convertDtype, release/10.1-GA):
# FLOAT -> kFLOAT, FLOAT16 -> kHALF, INT32 -> kINT32, UINT8 -> kUINT8, INT64 -> kINT64, BOOL -> kBOOL
ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 6: "INT32", 2: "UINT8", 7: "INT64", 9: "BOOL"}


def _onnx_io(path: str, data_type):
    import onnx

    g = onnx.load(path, load_external_data=False).graph
    init = {i.name for i in g.initializer}

    def tensor(vi):
        t = vi.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        return types.SimpleNamespace(name=vi.name, dtype=data_type[ONNX_TO_TRT[t.elem_type]], shape=shape)

    return [tensor(v) for v in g.input if v.name not in init], [tensor(v) for v in g.output]


def make_fake_trt(version: str, gpu: str = "Fake Orin"):
    """FakeTensorRT: records every builder call; no real TensorRT (checks our orchestration only).

    It follows the real API's values (NDCF_VALUES, DATA_TYPE above) and failure modes: a timing cache
    made on another GPU / TensorRT is refused by set_timing_cache (returns False, pyCoreDoc.h "A failure
    will be reported if the CUDA device property in the provided cache is different"), an unreadable one
    makes create_timing_cache return None (the C++ API returns nullptr), get_timing_cache() is None when
    no cache is set, and a network casting ArgMax to UINT8 does not build (build_serialized_network
    returns None, as on a failed build).
    """
    major = int(version.split(".")[0])
    calls: list[tuple] = []
    trt = types.SimpleNamespace(__version__=version, calls=calls)
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", NDCF_VALUES[min(major, 11) if major >= 10 else 8])
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    if major < 11:
        trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    else:
        trt.BuilderFlag = types.SimpleNamespace()  # FP16/INT8 removed in TensorRT 11
    # set_timing_cache refuses a cache whose CUDA device properties differ (pyCoreDoc.h); a cache from
    # another TensorRT version on the same GPU is not documented as refused, so the stand-in keys on the GPU
    cache_tag = f"TC|{gpu}|".encode()

    class Logger:
        WARNING, VERBOSE = "W", "V"

        def __init__(self, level):
            calls.append(("Logger", level))

    class Profile:
        def set_shape(self, name, mn, opt, mx):
            calls.append(("set_shape", name, mn, opt, mx))
            trt.profile = (mn, opt, mx)

    class TimingCache:
        def __init__(self, tag):
            self.tag = tag

        def serialize(self):
            return self.tag + b"timings"

    class Config:
        cache = None

        def set_memory_pool_limit(self, pool, size):
            calls.append(("set_memory_pool_limit", pool, size))

        def set_flag(self, flag):
            calls.append(("set_flag", flag))

        def add_optimization_profile(self, p):
            calls.append(("add_optimization_profile",))

        def create_timing_cache(self, data):
            data = bytes(data)
            calls.append(("create_timing_cache", data))
            if not data:
                return TimingCache(cache_tag)
            if not data.startswith(b"TC|"):
                return None  # unreadable blob
            return TimingCache(data[: data.index(b"|", 3) + 1])

        def set_timing_cache(self, cache, ignore_mismatch):
            ok = bool(ignore_mismatch) or cache.tag == cache_tag
            calls.append(("set_timing_cache", ok))
            if ok:
                self.cache = cache
            return ok

        def get_timing_cache(self):
            return self.cache

    trt.DataType = enum.IntEnum("DataType", DATA_TYPE)

    class Network:
        """Filled by the parser from the ONNX it reads, as TensorRT's parser does: one ITensor per graph
        input / output with the ONNX name, dtype (ONNX_TO_TRT) and shape (-1 for a symbolic dim)."""

        inputs: list = []
        outputs: list = []

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))

        def get_input(self, i):
            return self.inputs[i]

        def get_output(self, i):
            return self.outputs[i]

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("build_serialized_network",))
            if getattr(trt, "fail_build", False) or getattr(network, "uint8_cast_from_int", False):
                return None
            return b"PLAN"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse_from_file(self, path):
            calls.append(("parse_from_file", path))
            self.network.uint8_cast_from_int = _uint8_cast_from_int(path)
            self.network.inputs, self.network.outputs = _onnx_io(path, trt.DataType)
            return True

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    return trt


def names(calls):
    return [c[0] for c in calls]


# ----------------------------------------------------------------------------- (a) builder orchestration

class TestFakeTensorRTOrchestration:
    """FakeTensorRT... checks our orchestration, not TensorRT."""

    # flags = 1 << (enum value) from NDCF_VALUES: 8.6 EXPLICIT_BATCH (0) -> 1; 10.x none (EXPLICIT_BATCH
    # ignored) -> 0; 11.x STRONGLY_TYPED (0, ignored but harmless) -> 1, never 2 (PREFER_JIT_PYTHON_PLUGINS)
    @pytest.mark.parametrize("version,flags,fp16_flag", [("8.6.1", 1, True), ("10.3.0", 0, True), ("11.0.0", 1, False),
                                                         ("11.1.0", 1, False)])
    def test_build_branches(self, tmp_path, version, flags, fp16_flag):
        same = {"source_sha256": "c" * 64}  # exported from the same checkpoint: the fp16 file is this model's
        onnx_path = make_tiny_onnx(tmp_path / "m.onnx", meta=same)
        fp16_path = make_tiny_onnx(tmp_path / "m.fp16.onnx", meta=same)
        trt = make_fake_trt(version)
        opts = BuildOptions(fp16=True, min_batch=1, opt_batch=2, max_batch=4, workspace_mb=256,
                            timing_cache=str(tmp_path / "tc.bin"))
        engine = tmp_path / "out" / "m.engine"
        rep = build_engine(onnx_path, engine, opts, trt=trt, cuda=FakeCuda())
        c = trt.calls
        assert ("create_network", flags) in c
        assert (("set_flag", "FP16") in c) is fp16_flag
        assert ("set_shape", "image", (1, 3, 64, 96), (2, 3, 64, 96), (4, 3, 64, 96)) in c
        assert ("set_memory_pool_limit", "WORKSPACE", 256 << 20) in c
        assert ("create_timing_cache", b"") in c
        assert (tmp_path / "tc.bin").read_bytes() == b"TC|Fake Orin|timings"
        parsed = [x[1] for x in c if x[0] == "parse_from_file"]
        assert parsed == [str(fp16_path if version.startswith("11") else onnx_path)]
        assert rep["strongly_typed"] is version.startswith("11")
        assert engine.read_bytes() == b"PLAN"  # plain plan, no header
        side = json.loads(sidecar_path(engine).read_text())
        assert side["precision"] == "fp16" and side["batch_profile"] == [1, 2, 4] and side["input_size"] == [64, 96]
        assert side["tensorrt_version"] == version and side["gpu_name"] == "Fake Orin" and side["compute_capability"] == "8.7"
        assert json.loads(side["onnx_metadata"]["input_size"]) == [64, 96]
        assert len(side["onnx_sha256"]) == 64 and side["built_at"]

    def test_timing_cache_is_loaded_when_present(self, tmp_path):
        onnx_path = make_tiny_onnx(tmp_path / "m.onnx")
        (tmp_path / "tc.bin").write_bytes(b"old")
        trt = make_fake_trt("10.3.0")
        build_engine(onnx_path, tmp_path / "m.engine", BuildOptions(timing_cache=str(tmp_path / "tc.bin")), trt=trt, cuda=FakeCuda())
        assert ("create_timing_cache", b"old") in trt.calls

    @pytest.mark.parametrize("blob,why", [(b"TC|NVIDIA GeForce RTX 4090|timings", "refused by TensorRT (made on another GPU"),
                                          (b"garbage", "unreadable")])
    def test_timing_cache_from_elsewhere_is_replaced_and_engine_keeps_its_sidecar(self, tmp_path, blob, why):
        """Another GPU's cache is refused (set_timing_cache -> False); an unreadable one gives
        None. The build goes on with a fresh cache, saved over the old one, and the sidecar is written."""
        onnx_path = make_tiny_onnx(tmp_path / "m.onnx")
        tc = tmp_path / "tc.bin"
        tc.write_bytes(blob)
        trt = make_fake_trt("10.3.0")
        rep = build_engine(onnx_path, tmp_path / "m.engine", BuildOptions(timing_cache=str(tc)), trt=trt, cuda=FakeCuda())
        assert any(why in n and "started a fresh one" in n for n in rep["notes"])
        assert tc.read_bytes() == b"TC|Fake Orin|timings"
        assert read_sidecar(tmp_path / "m.engine").tensorrt_version == "10.3.0"
        # the next build on this machine loads it
        rep = build_engine(onnx_path, tmp_path / "m.engine", BuildOptions(timing_cache=str(tc)), trt=trt, cuda=FakeCuda())
        assert f"timing cache loaded from {tc}" in rep["notes"]

    def test_no_timing_cache_set_still_writes_engine_and_sidecar(self, tmp_path):
        """get_timing_cache() is None when no cache is set (pyCoreDoc.h): noted, no AttributeError."""
        onnx_path = make_tiny_onnx(tmp_path / "m.onnx")
        trt = make_fake_trt("10.3.0")
        real_builder = trt.Builder

        class RefusingBuilder(real_builder):
            def create_builder_config(self):
                cfg = super().create_builder_config()
                cfg.set_timing_cache = lambda cache, ignore_mismatch: False
                return cfg

        trt.Builder = RefusingBuilder
        rep = build_engine(onnx_path, tmp_path / "m.engine", BuildOptions(timing_cache=str(tmp_path / "tc.bin")),
                           trt=trt, cuda=FakeCuda())
        assert "no timing cache to save (TensorRT had none set)" in rep["notes"]
        assert not (tmp_path / "tc.bin").exists() and sidecar_path(tmp_path / "m.engine").is_file()

    def test_uint8_labels_are_built_as_int32(self, tmp_path):
        """ArgMax -> Cast(UINT8) does not build (TensorRT casts to UINT8 only from FP32/FP16); the
        default rewrites the Cast to INT32 in a copy and says so in the sidecar."""
        onnx_path = make_tiny_onnx(tmp_path / "m.onnx", labels="uint8")
        before = onnx_path.read_bytes()
        with pytest.raises(BuildError, match="--labels none"):
            build_engine(onnx_path, tmp_path / "k.engine", BuildOptions(labels="keep"), trt=make_fake_trt("8.6.1"),
                         cuda=FakeCuda())
        trt = make_fake_trt("8.6.1")
        rep = build_engine(onnx_path, tmp_path / "m.engine", BuildOptions(), trt=trt, cuda=FakeCuda())
        side = read_sidecar(tmp_path / "m.engine")
        assert rep["labels_dtype"] == side.labels_dtype == "int32"
        assert any("from uint8 to int32" in n for n in side.notes)
        parsed = [c[1] for c in trt.calls if c[0] == "parse_from_file"][0]
        assert parsed != str(onnx_path) and not Path(parsed).exists()  # a temporary copy, cleaned up
        assert onnx_path.read_bytes() == before  # the user's ONNX is untouched
        assert side.onnx_sha256 == __import__("edgeseg.core.files", fromlist=["x"]).sha256_file(onnx_path)

    def test_labels_none_drops_the_output_and_int32_is_kept(self, tmp_path):
        import onnx

        seen = {}
        onnx_path = make_tiny_onnx(tmp_path / "m.onnx", labels="uint8")
        trt = make_fake_trt("10.3.0")
        parser = trt.OnnxParser

        class Peek(parser):
            def parse_from_file(self, path):
                g = onnx.load(path).graph
                seen["outputs"], seen["ops"] = [o.name for o in g.output], [n.op_type for n in g.node]
                return super().parse_from_file(path)

        trt.OnnxParser = Peek
        rep = build_engine(onnx_path, tmp_path / "m.engine", BuildOptions(labels="none"), trt=trt, cuda=FakeCuda())
        assert seen == {"outputs": ["probs"], "ops": ["Softmax"]} and rep["labels_dtype"] == "none"
        i32 = make_tiny_onnx(tmp_path / "i.onnx", labels="int32")
        rep = build_engine(i32, tmp_path / "i.engine", BuildOptions(), trt=make_fake_trt("10.3.0"), cuda=FakeCuda())
        assert rep["labels_dtype"] == "int32" and rep["parsed_onnx"] == str(i32)
        with pytest.raises(ValueError, match="labels must be one of"):
            BuildOptions(labels="uint16").validate()

    def test_fp32_sets_no_precision_flag(self, tmp_path):
        trt = make_fake_trt("10.3.0")
        rep = build_engine(make_tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", BuildOptions(fp16=False), trt=trt, cuda=FakeCuda())
        assert "set_flag" not in names(trt.calls) and rep["precision"] == "fp32"

    def test_failed_build_raises_clearly(self, tmp_path):
        trt = make_fake_trt("10.3.0")
        trt.fail_build = True
        with pytest.raises(BuildError, match="failed to build"):
            build_engine(make_tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", BuildOptions(), trt=trt, cuda=FakeCuda())
        assert not (tmp_path / "m.engine").exists()

    def test_trt11_int8_refused_and_old_trt_refused(self, tmp_path):
        onnx_path = make_tiny_onnx(tmp_path / "m.onnx")
        (tmp_path / "calib").mkdir()
        with pytest.raises(BuildError, match="Q/DQ"):
            build_engine(onnx_path, tmp_path / "m.engine", BuildOptions(int8=True, calib_data=str(tmp_path / "calib")),
                         trt=make_fake_trt("11.0.0"), cuda=FakeCuda())
        with pytest.raises(BuildError, match=r">= 8.6 \(JetPack 5 ships 8.5 with Python 3.8 and np.bool .*use JetPack 6"):
            build_engine(onnx_path, tmp_path / "m.engine", BuildOptions(), trt=make_fake_trt("8.5.3"), cuda=FakeCuda())

    def test_bad_profile_rejected(self):
        with pytest.raises(ValueError, match="min <= opt <= max"):
            BuildOptions(min_batch=4, opt_batch=2, max_batch=8).validate()


# ----------------------------------------------------------------------------- (b) sidecar

# ----------------------------------------------------------------------------- (d) (e) no TensorRT / CUDA here

def _has(mod: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


@pytest.mark.skipif(_has("tensorrt"), reason="tensorrt is installed here")
def test_backend_without_tensorrt_names_it(tmp_path):
    from edgeseg.runtime.backends.tensorrt_backend import TensorRTBackend

    with pytest.raises(BackendUnavailable, match="TensorRT python package not installed"):
        TensorRTBackend(tmp_path / "m.engine")


def test_backend_refuses_mismatched_engine_with_fake_trt(tmp_path):
    from edgeseg.runtime.backends.tensorrt_backend import TensorRTBackend

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"PLAN")
    write_sidecar(engine, _meta(gpu_name="RTX 4090", compute_capability="8.9"))
    with pytest.raises(EngineMismatch, match="rebuild with: edgeseg build"):
        TensorRTBackend(engine, trt=make_fake_trt("10.3.0"), cuda=FakeCuda())


def test_load_cuda_layer_unavailable_here():
    try:
        layer = load_cuda_layer()
    except BackendUnavailable as exc:
        msg = str(exc)
        assert "pycuda" in msg and "cuda-python" in msg
    else:  # pragma: no cover - a GPU host
        pytest.skip(f"a CUDA layer works here ({layer.name})")


@pytest.mark.skipif(not _has("cuda"), reason="cuda-python not installed")
def test_cuda_python_layer_no_driver_error_path():
    from edgeseg.runtime.cuda_layer import CudaPythonLayer

    try:
        layer = CudaPythonLayer()
    except CudaError as exc:
        assert "cudaError" in str(exc)  # the CUDA error name, e.g. cudaErrorInsufficientDriver / NoDevice
    except BackendUnavailable as exc:
        assert "no CUDA GPU" in str(exc)
    else:  # pragma: no cover - a GPU host
        pytest.skip(f"CUDA works here ({layer.device_name()})")
    with pytest.raises(BackendUnavailable, match="cuda-python: .*cudaError"):
        load_cuda_layer(prefer="cuda-python")


# ----------------------------------------------------------------------------- (f) calibration batches

def test_calibration_batches(tmp_path):
    rng = np.random.default_rng(0)
    imgs = []
    for i in range(5):
        img = rng.integers(0, 255, (20 + i, 30, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), img)
        imgs.append(img)
    (tmp_path / "03b_broken.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    cb = CalibrationBatches(tmp_path, (16, 24), mean, std, batch=2)
    batches = list(cb)
    assert [b.shape for b in batches] == [(2, 3, 16, 24), (2, 3, 16, 24), (1, 3, 16, 24)]
    assert all(b.dtype == np.float32 for b in batches)
    expected = preprocess(imgs, (16, 24), mean, std)[0]
    np.testing.assert_array_equal(np.concatenate(batches), expected)
    assert len(cb.skipped) == 1 and cb.skipped[0].endswith("03b_broken.png")
    assert [b.shape[0] for b in CalibrationBatches(tmp_path, (16, 24), mean, std, batch=4, limit=3)] == [3]
    with pytest.raises(FileNotFoundError):
        CalibrationBatches(tmp_path / "nope", (16, 24), mean, std, batch=2)


def test_no_torch_in_runtime_modules():
    import subprocess
    import sys

    code = ("import sys, edgeseg.core.model_meta, edgeseg.runtime.cuda_layer, edgeseg.runtime.backends.tensorrt_backend, edgeseg.runtime.backends.tensorrt_build, edgeseg.cli, edgeseg.apps.doctor;"
            "bad=[m for m in ('torch','tensorrt','pycuda') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ----------------------------------------------------------------------------- backend + calibrator data flow (fakes)

class FakeMemCuda(FakeCuda):
    """FakeCuda with host-side 'device' memory so data flow can be checked without a GPU."""

    supports_events = True

    def __init__(self):
        self.mem, self.allocs, self.syncs, self.destroyed, self.freed, self.dtoh = {}, 0, 0, [], [], []

    def free(self, ptr):
        self.freed.append(ptr)

    def free_host(self, arr):
        self.freed.append(("host", arr.shape))

    def alloc_device(self, nbytes):
        self.allocs += 1
        ptr = 4096 * (len(self.mem) + 1)
        self.mem[ptr] = bytearray(nbytes)
        return ptr

    def device_ptr(self, p):
        return int(p)

    def alloc_host_pinned(self, shape, dtype):
        self.allocs += 1
        return np.zeros(shape, dtype)

    def memcpy_htod_async(self, dst, src, stream, nbytes=None):
        b = np.ascontiguousarray(src).tobytes()
        self.mem[dst][: len(b)] = b

    def memcpy_dtoh_async(self, dst, src, stream, nbytes=None):
        self.dtoh.append(src)
        dst.reshape(-1).view(np.uint8)[:] = np.frombuffer(bytes(self.mem[src][: dst.nbytes]), np.uint8)

    def stream_create(self):
        return "stream"

    def stream_handle(self, s):
        return 7

    def stream_sync(self, s):
        self.syncs += 1

    def stream_destroy(self, s):
        self.destroyed.append(s)

    def event_create(self):
        return object()

    def event_destroy(self, e):
        self.destroyed.append(e)

    def event_record(self, e, s):
        pass

    def event_elapsed_ms(self, a, b):
        return 1.5

    def push(self):
        pass

    def pop(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        pass


def add_fake_runtime(trt, cuda, io_dtype=np.float32, profile=None):
    """Runtime side of the stand-in: DataType / TensorIOMode numbers from the headers (see above),
    ``get_tensor_profile_shape`` -> [min, opt, max] (pyCore.cpp), and ``set_input_shape`` returning
    False for a shape outside the profile ("True on success, false if ... some other error occurred",
    NvInferRuntime.h). ``profile`` defaults to the one the stand-in builder was given."""
    Mode = enum.IntEnum("TensorIOMode", TENSOR_IO_MODE)
    DataType = enum.IntEnum("DataType", DATA_TYPE)
    trt.TensorIOMode, trt.DataType = Mode, DataType
    trt.nptype = lambda t: NPTYPE[int(t)]
    io = DataType.HALF if io_dtype == np.float16 else DataType.FLOAT
    tensors = [("image", Mode.INPUT, io), ("probs", Mode.OUTPUT, io), ("labels", Mode.OUTPUT, DataType.INT32)]

    class Context:
        def __init__(self, prof):
            self.shape, self.addr, self.runs, self.prof = None, {}, [], prof

        def set_input_shape(self, name, shape):
            shape = tuple(shape)
            mn, _, mx = self.prof
            if name != "image" or len(shape) != 4 or not all(a <= s <= b for a, s, b in zip(mn, shape, mx)):
                return False
            self.shape = shape
            return True

        def get_tensor_shape(self, name):
            n, c, h, w = self.shape
            return (n, h, w) if name == "labels" else (n, 3, h, w)

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr
            return True

        def execute_async_v3(self, stream_handle):
            assert stream_handle == 7
            self.runs.append(self.shape)
            n = int(np.prod(self.shape))
            x = np.frombuffer(bytes(cuda.mem[self.addr["image"]][: n * np.dtype(io_dtype).itemsize]), io_dtype).reshape(self.shape)
            p = (x * 2).astype(io_dtype).tobytes()
            cuda.mem[self.addr["probs"]][: len(p)] = p
            lab = x.argmax(1).astype(np.int32).tobytes()
            cuda.mem[self.addr["labels"]][: len(lab)] = lab
            return True

    class Engine:
        num_io_tensors = 3

        def __init__(self):
            self.prof = tuple(tuple(d) for d in (profile or trt.profile))
            self.ctx = Context(self.prof)

        def get_tensor_profile_shape(self, name, profile_index):
            assert profile_index == 0
            return [list(d) for d in self.prof] if name == "image" else [[], [], []]

        def get_tensor_name(self, i):
            return tensors[i][0]

        def get_tensor_mode(self, name):
            return next(t[1] for t in tensors if t[0] == name)

        def get_tensor_dtype(self, name):
            return next(t[2] for t in tensors if t[0] == name)

        def create_execution_context(self):
            return self.ctx

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            assert data == b"PLAN"
            trt.engine = Engine()
            return trt.engine

    trt.Runtime = Runtime
    return trt


@pytest.mark.parametrize("io_dtype", [np.float32, np.float16])
def test_backend_data_flow_with_fakes(tmp_path, io_dtype):
    """FakeTensorRT runtime: buffers allocated once, actual (not max) output shapes, fp16 I/O cast back to fp32."""
    from edgeseg.runtime.backends.tensorrt_backend import TensorRTBackend

    onnx_path = make_tiny_onnx(tmp_path / "m.onnx", size=(8, 12))
    cuda = FakeMemCuda()
    trt = add_fake_runtime(make_fake_trt("10.3.0"), cuda, io_dtype)
    engine = tmp_path / "m.engine"
    build_engine(onnx_path, engine, BuildOptions(min_batch=1, opt_batch=2, max_batch=4), trt=trt, cuda=cuda)
    be = TensorRTBackend(engine, onnx_path=onnx_path, trt=trt, cuda=cuda)
    assert be.info.input_size == (8, 12) and be.max_batch == 4
    allocs = cuda.allocs
    assert allocs == 5  # device for image, probs, labels; host (pinned) for image and probs only
    x = np.random.default_rng(0).normal(size=(3, 3, 8, 12)).astype(np.float32)
    y = be.infer(x)
    assert y.dtype == np.float32 and y.shape == (3, 3, 8, 12)
    np.testing.assert_allclose(y, (x.astype(io_dtype) * 2).astype(np.float32))
    assert be.gpu_timing_ms == 1.5
    assert set(cuda.dtoh) == {be._dev["probs"]}  # only probs is copied back (labels stay on the device)
    y6 = be.infer(np.concatenate([x, x]))  # > max batch: split into 4 + 2
    assert y6.shape[0] == 6 and trt.engine.ctx.runs[-2:] == [(4, 3, 8, 12), (2, 3, 8, 12)]
    assert cuda.allocs == allocs  # no per-frame allocation
    with pytest.raises(ValueError, match="8x12"):
        be.infer(np.zeros((1, 3, 16, 16), np.float32))


def test_batch_below_min_batch_is_padded_with_fakes(tmp_path):
    """FakeTensorRT: an engine built with --min-batch 2 still serves Segmenter.segment() (batch 1)."""
    from edgeseg.runtime.backends.tensorrt_backend import TensorRTBackend

    onnx_path = make_tiny_onnx(tmp_path / "m.onnx", size=(8, 12))
    cuda = FakeMemCuda()
    trt = add_fake_runtime(make_fake_trt("10.3.0"), cuda)
    engine = tmp_path / "m.engine"
    build_engine(onnx_path, engine, BuildOptions(min_batch=2, opt_batch=2, max_batch=4), trt=trt, cuda=cuda)
    be = TensorRTBackend(engine, onnx_path=onnx_path, trt=trt, cuda=cuda)
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 12)).astype(np.float32)
    y = be.infer(x)
    assert y.shape == (1, 3, 8, 12) and trt.engine.ctx.runs[-1] == (2, 3, 8, 12)
    np.testing.assert_allclose(y, x * 2)
    events = be._events
    be.close()
    assert be._dev == {} and be._host == {}
    assert cuda.destroyed == [*events, "stream"]  # the stream and both timing events are released
    be.close()  # twice is harmless
    assert len(cuda.destroyed) == 3


def test_int8_calibrator_with_fakes(tmp_path):
    from edgeseg.runtime.backends.tensorrt_calibration import make_calibrator
    from edgeseg.runtime.backends.base import ModelInfo

    trt = make_fake_trt("8.6.1")

    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass

    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((10, 10, 3), 40 * i, np.uint8))
    cuda = FakeMemCuda()
    cal = make_calibrator(trt, tmp_path, ModelInfo(input_size=(8, 8)), 2, tmp_path / "c.cache", cuda)
    assert isinstance(cal, IInt8EntropyCalibrator2) and cal.get_batch_size() == 2
    assert cal.read_calibration_cache() is None
    p1, p2, end = cal.get_batch(["image"]), cal.get_batch(["image"]), cal.get_batch(["image"])
    assert p1 == p2 and len(p1) == 1 and end is None  # remainder padded to a full batch, then done
    cal.write_calibration_cache(b"CAL")
    assert cal.read_calibration_cache() == b"CAL"


def test_int8_build_orchestration_with_fakes(tmp_path):
    """FakeTensorRT 8.6: INT8 + FP16 fallback flags and an entropy calibrator attached."""
    trt = make_fake_trt("8.6.1")
    trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None})
    calib = tmp_path / "calib"
    calib.mkdir()
    cv2.imwrite(str(calib / "a.png"), np.zeros((10, 10, 3), np.uint8))
    cuda = FakeMemCuda()
    rep = build_engine(make_tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine",
                       BuildOptions(int8=True, calib_data=str(calib)), trt=trt, cuda=cuda)
    assert ("set_flag", "INT8") in trt.calls and ("set_flag", "FP16") in trt.calls
    assert rep["precision"] == "int8" and read_sidecar(tmp_path / "m.engine").precision == "int8"
    assert rep["int8"] == "calibrate"
    # the calibrator's device buffer, pinned host buffer and stream are released after the build
    assert len(cuda.freed) == 2 and ("host", (4, 3, 64, 96)) in cuda.freed and cuda.destroyed == ["stream"]


def test_cli_build_and_verify_on_cpu(tmp_path):
    from typer.testing import CliRunner

    from edgeseg.cli import app

    onnx_path = make_tiny_onnx(tmp_path / "m.onnx", size=(16, 16))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(2):
        cv2.imwrite(str(imgs / f"{i}.png"), np.full((20, 30, 3), 60 * i, np.uint8))
    runner = CliRunner()
    if not _has("tensorrt"):
        r = runner.invoke(app, ["build", str(onnx_path), "-o", str(tmp_path / "m.engine")])
        assert r.exit_code == 2 and "TensorRT python package not installed" in r.output
    r = runner.invoke(app, ["build", str(onnx_path), "-o", str(tmp_path / "m.engine"), "--min-batch", "4", "--opt-batch", "2"])
    assert r.exit_code == 2 and "min <= opt <= max" in r.output
    r = runner.invoke(app, ["build", str(onnx_path), "-o", str(tmp_path / "m.engine"), "--labels", "uint16"])
    assert r.exit_code == 2 and "labels must be one of int32, none, keep" in r.output
    ref = tmp_path / "ref.npz"
    r = runner.invoke(app, ["verify", str(tmp_path / "m.engine"), "--onnx", str(onnx_path), "--data", str(imgs), "--save-reference", str(ref)])
    assert r.exit_code == 0, r.output
    z = np.load(ref)
    assert z["probs"].shape == (2, 3, 16, 16) and z["masks"].shape == (2, 16, 16) and list(z["names"]) == ["0.png", "1.png"]


def test_backend_auto_rebuild_with_fakes(tmp_path):
    """FakeTensorRT: a stale engine (other TensorRT version) is rebuilt when auto_rebuild and the ONNX are given."""
    from edgeseg.runtime.backends.tensorrt_backend import TensorRTBackend

    onnx_path = make_tiny_onnx(tmp_path / "m.onnx", size=(8, 8))
    cuda = FakeMemCuda()
    engine = tmp_path / "m.engine"
    build_engine(onnx_path, engine, BuildOptions(max_batch=2, opt_batch=2), trt=make_fake_trt("10.2.0"), cuda=cuda)
    trt = add_fake_runtime(make_fake_trt("10.3.0"), cuda)
    with pytest.raises(EngineMismatch, match="TensorRT 10.2.0 at build vs 10.3.0"):
        TensorRTBackend(engine, onnx_path=onnx_path, trt=trt, cuda=cuda)
    stale = engine.read_bytes()
    be = TensorRTBackend(engine, onnx_path=onnx_path, auto_rebuild=True, trt=trt, cuda=cuda)
    assert be.rebuilt and be.meta.tensorrt_version == "10.3.0" and be.meta.batch_profile == (1, 2, 2)
    # built into the engine cache beside it, keyed like engine_cache_path; the old plan still
    # serves the machine it was built for
    assert be.engine_path.parent == tmp_path / ".engine-cache" and be.engine_path.name.startswith("m.fp16.")
    assert engine.read_bytes() == stale
    again = TensorRTBackend(engine, onnx_path=onnx_path, auto_rebuild=True, trt=trt, cuda=cuda)
    assert not again.rebuilt and again.engine_path == be.engine_path  # found in the cache, no rebuild


def test_auto_rebuild_refuses_int8_without_calibration_data(tmp_path):
    from edgeseg.runtime.backends.tensorrt_backend import TensorRTBackend

    onnx_path = make_tiny_onnx(tmp_path / "m.onnx", size=(8, 8))
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"PLAN")
    write_sidecar(engine, _meta(precision="int8", tensorrt_version="10.2.0"))
    cuda = FakeMemCuda()
    trt = add_fake_runtime(make_fake_trt("10.3.0"), cuda)
    with pytest.raises(EngineMismatch, match="no Q/DQ INT8 model beside .*--int8 --calib-data DIR"):
        TensorRTBackend(engine, onnx_path=onnx_path, auto_rebuild=True, trt=trt, cuda=cuda)


def test_partial_copy_views_are_prefixes_of_the_same_memory():
    """pycuda copies whole host buffers; a smaller batch passes a prefix view (no copy)."""
    from edgeseg.runtime.cuda_layer import _prefix

    buf = np.arange(8 * 3 * 4, dtype=np.float32).reshape(8, 3, 4)
    assert _prefix(buf, None) is buf
    part = _prefix(buf, buf[:3].nbytes)
    assert part.nbytes == buf[:3].nbytes and np.shares_memory(part, buf)
    assert np.array_equal(part.view(np.float32), buf[:3].reshape(-1))
    with pytest.raises(ValueError, match="does not fit"):
        _prefix(buf, buf.nbytes + 4)


def test_backend_reads_the_profile_from_the_engine(tmp_path):
    """The buffers follow the engine's profile (get_tensor_profile_shape), and an engine whose profile
    disagrees with its sidecar is refused instead of failing inside set_input_shape."""
    from edgeseg.runtime.backends.tensorrt_backend import TensorRTBackend

    onnx_path = make_tiny_onnx(tmp_path / "m.onnx", size=(8, 12))
    cuda = FakeMemCuda()
    trt = add_fake_runtime(make_fake_trt("10.3.0"), cuda, profile=((1, 3, 8, 12), (2, 3, 8, 12), (2, 3, 8, 12)))
    engine = tmp_path / "m.engine"
    build_engine(onnx_path, engine, BuildOptions(min_batch=1, opt_batch=2, max_batch=4), trt=trt, cuda=cuda)
    with pytest.raises(EngineMismatch, match=r"sidecar says batch 1..4 at 8x12, the engine's profile 1..2 at 8x12"):
        TensorRTBackend(engine, onnx_path=onnx_path, trt=trt, cuda=cuda)
    trt = add_fake_runtime(make_fake_trt("10.3.0"), cuda)
    build_engine(onnx_path, engine, BuildOptions(min_batch=2, opt_batch=2, max_batch=3), trt=trt, cuda=cuda)
    be = TensorRTBackend(engine, onnx_path=onnx_path, trt=trt, cuda=cuda)
    assert (be.min_batch, be.max_batch, be.input_hw) == (2, 3, (8, 12))
    assert trt.engine.ctx.set_input_shape("image", (4, 3, 8, 12)) is False  # outside the profile
    be.min_batch = 1  # as if the profile check were skipped: a refused shape raises, not garbage
    with pytest.raises(RuntimeError, match=r"TensorRT rejected input shape \(1, 3, 8, 12\)"):
        be.infer(np.zeros((1, 3, 8, 12), np.float32))


@pytest.mark.skipif(not _has("cuda"), reason="cuda-python not installed")
def test_cuda_python_stream_handle_is_the_native_handle():
    """cuda-bindings 13: int(cudaStream_t) is deprecated; getPtr() is the address of the handle's storage."""
    try:
        from cuda.bindings import runtime as rt
    except ImportError:
        pytest.skip("cuda-python without cuda.bindings")
    from edgeseg.runtime.cuda_layer import native_handle

    s = rt.cudaStream_t(0x1234)
    assert native_handle(s) == 0x1234 and native_handle(rt.cudaStream_t(0)) == 0
    assert native_handle(s) != int(s.getPtr())


# ----------------------------------------------------------------------------- INT8 from the shipped Q/DQ model

def _qdq_parsing_fake(version):
    """FakeTensorRT whose parser refuses what TensorRT's ONNX parser refuses in Q/DQ nodes: the rules of
    onnx-tensorrt QuantDequantLinearHelper (release/10.1-GA), as edgeseg.runtime.backends.tensorrt_qdq.trt_qdq_problems
    states them; the shipped model's problems are checked against that list in test_shipped_int8_model_*."""
    import onnx

    from edgeseg.runtime.backends.tensorrt_qdq import trt_qdq_problems

    trt = make_fake_trt(version)
    base = trt.OnnxParser

    class QdqParser(base):
        def parse_from_file(self, path):
            trt.parsed_problems = trt_qdq_problems(onnx.load(path, load_external_data=False))
            return super().parse_from_file(path) and not trt.parsed_problems

    trt.OnnxParser = QdqParser
    return trt


def _demo_frames(n=6):
    cap = cv2.VideoCapture(str(Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "demo_gas_leak.mp4"))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    for i in range(0, total, max(1, total // n)):
        cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, f = cap.read()
        if ok:
            frames.append(f)
    return frames[:n]


def test_shipped_int8_model_is_rewritten_to_trt_rules_and_still_agrees(tmp_path):
    """The shipped QDQ model breaks TensorRT's parser rules (UINT8, asymmetric, INT32 bias DQ); the copy
    edgeseg parses does not, and ONNX Runtime on the CPU gives the same masks from both files."""
    import onnx

    from edgeseg.runtime.backends.tensorrt_qdq import trt_qdq_copy, trt_qdq_problems
    from edgeseg.runtime.segmenter import BUNDLED_INT8, bundled_model

    if not BUNDLED_INT8.is_file():
        pytest.skip(f"{BUNDLED_INT8} not shipped in this checkout")
    before = trt_qdq_problems(onnx.load(str(BUNDLED_INT8)))
    assert any(p.startswith("UINT8 zero point on QuantizeLinear") for p in before)
    assert any(p.startswith("non-zero zero point") for p in before)
    assert any(p.startswith("INT32 DequantizeLinear input") for p in before)
    dst, note = trt_qdq_copy(BUNDLED_INT8, tmp_path / "q.onnx")
    assert dst == tmp_path / "q.onnx" and "saturations kept" in note
    onnx.checker.check_model(onnx.load(str(dst)), full_check=True)
    assert trt_qdq_problems(onnx.load(str(dst))) == []
    # the figures (and the floor against fp32) are checked against docs/tensorrt.md in
    # tests/test_tensorrt_review3.py::test_documented_rewrite_figures_are_what_the_shipped_files_give
    from edgeseg.runtime.backends.tensorrt_qdq import rewrite_agreement

    got = rewrite_agreement(BUNDLED_INT8, bundled_model(), tmp_path, _demo_frames())
    assert got["copy_vs_fp32"] >= 0.95  # the shipped model's own floor against fp32 (int8.json)
    assert got["shipped_vs_copy"] >= 0.97
    from edgeseg.runtime.precision import int8_host_warning

    assert int8_host_warning(BUNDLED_INT8) is None


@pytest.mark.parametrize("version,flags,int8_flag", [("8.6.1", 1, True), ("10.3.0", 2, False), ("10.16.1", 2, False),
                                                     ("11.1.0", 1, False)])
def test_int8_builds_from_the_shipped_qdq_model_without_a_calibrator(tmp_path, version, flags, int8_flag):
    """--int8 with no images: the bundled fp32 model's Q/DQ sibling is parsed (rewritten copy); TRT 10 / 11
    build it strongly typed with no precision flag (NVIDIA: "Use explicit quantization with Strong Typing.
    Precision-control build flags are not required and should not be specified"); 8.6 sets INT8."""
    from edgeseg.core.files import sha256_file
    from edgeseg.runtime.segmenter import BUNDLED_INT8, bundled_model

    if not BUNDLED_INT8.is_file():
        pytest.skip(f"{BUNDLED_INT8} not shipped in this checkout")
    trt = _qdq_parsing_fake(version)
    engine = tmp_path / "m.engine"
    rep = build_engine(bundled_model(), engine, BuildOptions(int8=True), trt=trt, cuda=FakeMemCuda())
    assert trt.parsed_problems == [] and rep["int8"] == "qdq" and rep["precision"] == "int8"
    assert ("create_network", flags) in trt.calls  # 10.x STRONGLY_TYPED = 1 -> 2; 11.x STRONGLY_TYPED = 0 -> 1
    assert (("set_flag", "INT8") in trt.calls) is int8_flag
    assert "int8_calibrator" not in str(trt.calls)
    side = read_sidecar(engine)
    assert side.built_from == {"path": str(BUNDLED_INT8), "sha256": sha256_file(BUNDLED_INT8)}
    assert {t["name"]: t["dtype"] for t in side.io} == {"image": "FLOAT", "probs": "FLOAT", "labels": "INT32"}


def test_int8_uses_the_default_calibration_cache_and_says_what_is_missing(tmp_path):
    trt = make_fake_trt("10.3.0")
    trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None})
    onnx_path = make_tiny_onnx(tmp_path / "m.onnx")
    engine = tmp_path / "m.engine"
    with pytest.raises(BuildError, match=r"--int8 needs the model's Q/DQ INT8 ONNX .*m.int8.onnx.*--calib-data DIR"):
        build_engine(onnx_path, engine, BuildOptions(int8=True), trt=trt, cuda=FakeMemCuda())
    Path(str(engine) + ".calib").write_bytes(b"CACHE")  # what an earlier calibrated build left
    rep = build_engine(onnx_path, engine, BuildOptions(int8=True), trt=trt, cuda=FakeMemCuda())
    assert rep["int8"] == "calibrate" and any(f"cache {engine}.calib (from an earlier build)" in n for n in rep["notes"])
    with pytest.raises(BuildError, match="drop --calib-data"):
        build_engine(onnx_path, engine, BuildOptions(int8=True, calib_data=str(tmp_path)), trt=make_fake_trt("11.1.0"),
                     cuda=FakeMemCuda())


def test_trt11_fp16_file_is_checked_against_its_model_and_written_beside_it(tmp_path):
    pytest.importorskip("onnxconverter_common")
    import onnx

    from edgeseg.core.model_meta import metadata_of

    onnx_path = make_tiny_onnx(tmp_path / "m.onnx", meta={"source_sha256": "a" * 64})
    stranger = make_tiny_onnx(tmp_path / "m.fp16.onnx", meta={"source_sha256": "b" * 64})
    with pytest.raises(BuildError, match="m.fp16.onnx is not known to come from .*m.onnx"):
        build_engine(onnx_path, tmp_path / "m.engine", BuildOptions(), trt=make_fake_trt("11.1.0"), cuda=FakeCuda())
    stranger.unlink()
    trt = make_fake_trt("11.1.0")
    rep = build_engine(onnx_path, tmp_path / "m.engine", BuildOptions(), trt=trt, cuda=FakeCuda())
    sibling = tmp_path / "m.fp16.onnx"
    assert [c[1] for c in trt.calls if c[0] == "parse_from_file"] == [str(sibling)]  # beside the model
    assert "m.onnx sha256" in metadata_of(onnx.load(str(sibling)))["derived_from"]
    stamp = sibling.stat().st_mtime_ns
    rep = build_engine(onnx_path, tmp_path / "m2.engine", BuildOptions(), trt=make_fake_trt("11.1.0"), cuda=FakeCuda())
    assert sibling.stat().st_mtime_ns == stamp and any("converted from m.onnx" in n for n in rep["notes"])
    assert read_sidecar(tmp_path / "m2.engine").built_from["path"] == str(sibling)


def test_orin_modules_are_told_apart(tmp_path):
    """All Orin modules report "Orin", sm 8.7: the sidecar's SM count / memory / board refuse an engine from
    an AGX Orin on an Orin Nano, and the cache keys differ."""
    from edgeseg.core.model_meta import cache_key, check_compatible

    agx = _meta(gpu_name="Orin", sm_count=16, memory_mib=62800, board="NVIDIA Jetson AGX Orin Developer Kit")
    check_compatible(agx, "10.3.0", "Orin", "8.7", sm_count=16, memory_mib=62841,
                     board="NVIDIA Jetson AGX Orin Developer Kit")
    with pytest.raises(EngineMismatch, match=r"GPU SMs 16 at build vs 8 here, GiB 61 at build vs 7 here, board .*AGX.* at build vs .*Nano"):
        check_compatible(agx, "10.3.0", "Orin", "8.7", sm_count=8, memory_mib=7620,
                         board="NVIDIA Jetson Orin Nano Developer Kit")
    check_compatible(_meta(), "10.3.0", "Orin", "8.7", sm_count=8, memory_mib=7620)  # old sidecar: not compared
    base = ("ab" * 32, "int8", (1, 4, 8), "10.3.0", "8.7", (256, 256), "Orin")
    assert cache_key(*base, (16, 62800, "AGX")) != cache_key(*base, (8, 7620, "Nano"))
    assert cache_key(*base, None) == cache_key(*base)


# ----------------------------------------------------------------------------- export triton from the recorded IO

def _make_io_onnx(path: Path, channels: int, labels: str, half: bool = False, size=(32, 48)) -> Path:
    """A tiny edgeseg-like model: probs (softmax over 3, or one sigmoid channel) + optional labels Cast."""
    import onnx
    from onnx import TensorProto, helper

    ft = TensorProto.FLOAT16 if half else TensorProto.FLOAT
    nodes, inits = [], []
    if channels == 1:
        nodes += [helper.make_node("ReduceMean", ["image"], ["m"], axes=[1], keepdims=1),
                  helper.make_node("Sigmoid", ["m"], ["probs"])]
    else:
        nodes.append(helper.make_node("Softmax", ["image"], ["probs"], axis=1))
    outs = [helper.make_tensor_value_info("probs", ft, ["batch", channels, "height", "width"])]
    if labels != "none":
        to = {"uint8": TensorProto.UINT8, "int32": TensorProto.INT32}[labels]
        if channels == 1:
            inits += [helper.make_tensor("half", ft, [], [0.5]), helper.make_tensor("ax", TensorProto.INT64, [1], [1])]
            nodes += [helper.make_node("GreaterOrEqual", ["probs", "half"], ["ge"]),
                      helper.make_node("Cast", ["ge"], ["c"], to=to), helper.make_node("Squeeze", ["c", "ax"], ["labels"])]
        else:
            nodes += [helper.make_node("ArgMax", ["probs"], ["am"], axis=1, keepdims=0),
                      helper.make_node("Cast", ["am"], ["labels"], to=to)]
        outs.append(helper.make_tensor_value_info("labels", to, ["batch", "height", "width"]))
    graph = helper.make_graph(nodes, "io", [helper.make_tensor_value_info("image", ft, ["batch", 3, "height", "width"])],
                              outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    classes = ["background", "gas-smoke"] + ([] if channels == 1 else ["machine"])
    meta = {"input_size": json.dumps(list(size)), "classes": json.dumps(classes), "output_channels": str(channels)}
    if half:
        meta["precision"] = "fp16"
    for k, v in meta.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("channels,labels_mode,onnx_labels,half,version", [
    (3, "int32", "uint8", False, "10.3.0"), (3, "none", "uint8", False, "10.3.0"), (3, "keep", "int32", False, "8.6.1"),
    (1, "int32", "uint8", False, "10.3.0"), (1, "none", "int32", False, "10.16.1"), (1, "keep", "int32", False, "10.3.0"),
    (3, "int32", "uint8", True, "11.1.0"), (1, "int32", "int32", True, "11.1.0"),
])
def test_export_triton_writes_the_recorded_engine_io(tmp_path, channels, labels_mode, onnx_labels, half, version):
    """build records the parsed network's IO in the sidecar; export triton writes exactly that (names, types,
    channel count), parsed back with Triton's ModelConfig protobuf and checked with the TensorRT backend's
    own rules (check_against_engine, ported from instance_state.cc / tensorrt_utils.cc)."""
    pytest.importorskip("tritonclient.grpc", reason="needs the [triton] extra (tritonclient)")
    from tritonclient.grpc import model_config_pb2 as mc

    from edgeseg.apps.triton_repo import check_against_engine, export_repository, read_config

    name = "m.fp16.onnx" if half else "m.onnx"
    onnx_path = _make_io_onnx(tmp_path / name, channels, onnx_labels, half)
    engine = tmp_path / "m.engine"
    build_engine(onnx_path, engine, BuildOptions(labels=labels_mode, opt_batch=2, max_batch=4),
                 trt=make_fake_trt(version), cuda=FakeCuda())
    io = read_sidecar(engine).io
    cfg = read_config(export_repository(engine, tmp_path / "repo", max_batch=4))
    assert check_against_engine(cfg, io) == []
    t = "TYPE_FP16" if half else "TYPE_FP32"
    want_out = {"probs": (t, [channels, -1, -1])}
    if labels_mode != "none":
        want_out["labels"] = ("TYPE_INT32" if labels_mode == "int32" or onnx_labels == "int32" else "TYPE_UINT8", [-1, -1])
    assert {o.name: (mc.DataType.Name(o.data_type), list(o.dims)) for o in cfg.output} == want_out
    assert [(i.name, mc.DataType.Name(i.data_type), list(i.dims)) for i in cfg.input] == [("image", t, [3, 32, 48])]


def test_export_triton_refuses_what_the_backend_would_refuse(tmp_path):
    """The old exporter's guesses (3 channels for a binary engine, FP32 for fp16 IO) fail the backend's checks."""
    pytest.importorskip("tritonclient.grpc", reason="needs the [triton] extra (tritonclient)")
    from edgeseg.core.errors import ModelError
    from edgeseg.apps.triton_repo import build_config, check_against_engine, export_repository, _engine_spec

    engine = tmp_path / "m.engine"
    build_engine(_make_io_onnx(tmp_path / "m.fp16.onnx", 1, "int32", half=True), engine, BuildOptions(max_batch=4),
                 trt=make_fake_trt("11.1.0"), cuda=FakeCuda())
    spec = _engine_spec(engine)
    spec.outputs[0].dims[1], spec.inputs[0].data_type = 2, "TYPE_FP32"
    bad = check_against_engine(build_config(spec, "m", 4), read_sidecar(engine).io)
    assert any("unexpected datatype TYPE_FP16 for input 'image'" in b for b in bad)
    assert any("output 'probs': the model expects shape [-1, 1, -1, -1], the config [-1, 2, -1, -1]" in b for b in bad)
    old = read_sidecar(engine)
    old.io = []
    write_sidecar(engine, old)
    with pytest.raises(ModelError, match="no recorded IO .*rebuild it with: edgeseg build"):
        export_repository(engine, tmp_path / "repo")
