"""Issue #36 (TensorRT review 3), on a CPU-only machine.

TensorRT cannot run here: builds use the stand-in ``trt`` of tests/test_tensorrt_cpu.py (it records our
calls and refuses what TensorRT's ONNX parser refuses, rules cited there and in tensorrt_qdq.py). What is
checked with real files and real ONNX Runtime: the Q/DQ rewrite and its accuracy figures, the sidecar,
staleness, the Triton config (Triton's own protobuf), doctor's L4T table.
"""
from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgeseg.runtime.backends.tensorrt_build import BuildError, BuildOptions, build_engine
from edgeseg.core.model_meta import EngineMismatch, check_compatible, read_sidecar, sidecar_path
from edgeseg.runtime.segmenter import BUNDLED_INT8, bundled_model
from test_tensorrt_cpu import (FakeCuda, FakeMemCuda, _demo_frames, _qdq_parsing_fake, add_fake_runtime,
                               make_fake_trt, make_tiny_onnx)

ROOT = Path(__file__).resolve().parents[1]
needs_int8 = pytest.mark.skipif(not BUNDLED_INT8.is_file(), reason=f"{BUNDLED_INT8} not shipped in this checkout")


def _make_qdq_onnx(path: Path, scale: float = 0.05, size=(8, 12)) -> Path:
    """A tiny model already in TensorRT's Q/DQ form (INT8, zero point 0): image -> Q/DQ -> Softmax -> probs."""
    import json

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(scale, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["image", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
             helper.make_node("Softmax", ["dq"], ["probs"], axis=1)]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", 3, "h", "w"])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["b", 3, "h", "w"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for k, v in {"input_size": json.dumps(list(size)), "classes": json.dumps(["background", "gas-smoke", "machine"])}.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(model, str(path))
    return path


# ----------------------------------------------------------------------------- 1: a Q/DQ input always takes the rewrite

@needs_int8
@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "10.16.1", "11.1.0"])
def test_building_the_qdq_file_without_int8_takes_the_rewrite(tmp_path, version):
    """`edgeseg build X.int8.onnx` (no --int8): the stand-in parser refuses the raw UINT8 graph, as
    onnx-tensorrt does; the build must parse the rewritten copy and record INT8."""
    trt = _qdq_parsing_fake(version)
    rep = build_engine(BUNDLED_INT8, tmp_path / "q.engine", BuildOptions(), trt=trt, cuda=FakeMemCuda())
    assert trt.parsed_problems == [] and rep["precision"] == "int8" and rep["int8"] == "qdq"
    assert any("--int8 implied" in n for n in rep["notes"])
    assert read_sidecar(tmp_path / "q.engine").precision == "int8"


@needs_int8
def test_backend_rebuild_of_the_int8_model_takes_the_rewrite(tmp_path):
    """`--backend tensorrt --precision int8 --rebuild-engine` opens the .int8.onnx with no engine: the
    automatic build used int8=False and handed the raw UINT8 graph to the parser."""
    from edgeseg.runtime.backends.tensorrt_backend import TensorRTBackend

    model = shutil.copyfile(BUNDLED_INT8, tmp_path / BUNDLED_INT8.name)
    cuda = FakeMemCuda()
    trt = add_fake_runtime(_qdq_parsing_fake("10.3.0"), cuda)
    be = TensorRTBackend(model.with_suffix(".engine"), onnx_path=model, auto_rebuild=True, trt=trt, cuda=cuda)
    assert be.rebuilt and trt.parsed_problems == [] and be.meta.precision == "int8"
    assert ".int8." in be.engine_path.name.replace(BUNDLED_INT8.stem, "")  # cache keyed as INT8


def test_calib_data_with_a_qdq_model_is_refused(tmp_path):
    q = _make_qdq_onnx(tmp_path / "m.onnx")
    with pytest.raises(BuildError, match="Q/DQ.*carries its own ranges"):
        build_engine(q, tmp_path / "m.engine", BuildOptions(int8=True, calib_data=str(tmp_path)),
                     trt=make_fake_trt("10.3.0"), cuda=FakeMemCuda())


# ----------------------------------------------------------------------------- 2 + 3: the rewrite and its figures

@needs_int8
def test_rewrite_keeps_probs_float_and_counts_the_one_sided_ranges(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, numpy_helper

    from edgeseg.runtime.backends.tensorrt_qdq import trt_qdq_copy

    src = onnx.load(str(BUNDLED_INT8))
    dst, note = trt_qdq_copy(BUNDLED_INT8, tmp_path / "q.onnx")
    g = onnx.load(str(dst)).graph
    producers = {o: n for n in g.node for o in n.output}
    chain, name = [], "probs"
    while name in producers and producers[name].op_type != "Softmax":
        chain.append(producers[name].op_type)
        name = producers[name].input[0]
    assert name in producers and "DequantizeLinear" not in chain and "QuantizeLinear" not in chain, chain
    # one-sided = a UINT8 zero point of 0, counted on the shipped file, less the pairs dropped before probs
    inits = {i.name: i for i in src.graph.initializer}
    pairs = {(n.input[1], n.input[2]) for n in src.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
             and len(n.input) > 2 and inits[n.input[2]].data_type == TensorProto.UINT8}
    zero = {p for p in pairs if not numpy_helper.to_array(inits[p[1]]).any()}
    dropped = {p for p in zero if "probs" in p[0]}
    assert dropped and f"{len(zero - dropped)} of them one-sided" in note and "probs stays float" in note
    x = np.random.default_rng(0).normal(size=(1, 3, 256, 256)).astype(np.float32)
    probs = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(["probs"], {"image": x})[0]
    assert len(np.unique(probs)) > 1000  # float, not 128 levels (the leak threshold 0.10 acts on it as is)


def _documented(name: str) -> float:
    text = (ROOT / "docs" / "tensorrt.md").read_text()
    m = re.search(rf"`{name}`\s+(\d\.\d+)", text)
    assert m, f"docs/tensorrt.md does not quote {name}"
    return float(m.group(1))


@needs_int8
def test_documented_rewrite_figures_are_what_the_shipped_files_give(tmp_path):
    """docs/tensorrt.md quotes `python -m edgeseg.runtime.backends.tensorrt_qdq` on the shipped files; recompute."""
    from edgeseg.runtime.backends.tensorrt_qdq import rewrite_agreement

    doc = (ROOT / "docs" / "tensorrt.md").read_text()
    assert "python -m edgeseg.runtime.backends.tensorrt_qdq" in doc
    assert "0.989" not in doc and "0.990" not in doc  # the stale claims (issue #36, 2)
    got = rewrite_agreement(BUNDLED_INT8, bundled_model(), tmp_path, _demo_frames())
    for key in ("shipped_vs_copy", "copy_vs_fp32", "shipped_vs_fp32"):
        assert abs(got[key] - _documented(key)) <= 0.002, (key, got[key], _documented(key))
    assert got["copy_vs_fp32"] >= 0.95


# ----------------------------------------------------------------------------- 4: strong typing from 10.12

@pytest.mark.parametrize("version,flags,typed", [("8.6.1", 1, False), ("10.3.0", 0, False), ("10.11.0", 0, False),
                                                 ("10.12.0", 2, True), ("10.16.1", 2, True), ("11.1.0", 1, True)])
def test_fp16_is_strongly_typed_from_an_fp16_onnx_from_10_12(tmp_path, version, flags, typed):
    same = {"source_sha256": "c" * 64}
    onnx_path = make_tiny_onnx(tmp_path / "m.onnx", meta=same)
    fp16 = make_tiny_onnx(tmp_path / "m.fp16.onnx", meta=same)
    trt = make_fake_trt(version)
    rep = build_engine(onnx_path, tmp_path / "m.engine", BuildOptions(), trt=trt, cuda=FakeCuda())
    assert ("create_network", flags) in trt.calls
    assert (("set_flag", "FP16") in trt.calls) is not typed  # deprecated in 10.12, gone in 11
    assert [c[1] for c in trt.calls if c[0] == "parse_from_file"] == [str(fp16 if typed else onnx_path)]
    side = read_sidecar(tmp_path / "m.engine")
    assert side.strongly_typed is typed and rep["branch"] == side.branch
    assert ("strongly typed" in side.branch) is typed and ("builder flags" in side.branch) is not typed


def test_calibrated_int8_keeps_the_flags_and_says_they_are_deprecated(tmp_path):
    import cv2

    trt = make_fake_trt("10.16.1")
    trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None})
    (tmp_path / "c").mkdir()
    cv2.imwrite(str(tmp_path / "c" / "a.png"), np.zeros((10, 10, 3), np.uint8))
    rep = build_engine(make_tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine",
                       BuildOptions(int8=True, calib_data=str(tmp_path / "c")), trt=trt, cuda=FakeMemCuda())
    assert ("set_flag", "INT8") in trt.calls and rep["strongly_typed"] is False
    assert any("deprecated since 10.1" in n for n in rep["notes"])


# ----------------------------------------------------------------------------- 5: Triton min batch, default max

def test_export_triton_refuses_min_batch_above_one_and_defaults_to_the_engine_max(tmp_path):
    pytest.importorskip("tritonclient.grpc", reason="needs the [triton] extra (tritonclient)")
    from edgeseg.core.errors import ModelError
    from edgeseg.apps.triton_repo import export_repository, read_config

    onnx_path = make_tiny_onnx(tmp_path / "m.onnx")
    engine = tmp_path / "m.engine"
    build_engine(onnx_path, engine, BuildOptions(min_batch=2, opt_batch=2, max_batch=4), trt=make_fake_trt("10.3.0"),
                 cuda=FakeCuda())
    with pytest.raises(ModelError, match="starts at batch 2.*--min-batch 1"):
        export_repository(engine, tmp_path / "repo")
    # the documented pair: edgeseg build ... --max-batch 4, then edgeseg export triton model.engine -o repo
    build_engine(onnx_path, engine, BuildOptions(max_batch=4), trt=make_fake_trt("10.3.0"), cuda=FakeCuda())
    assert read_config(export_repository(engine, tmp_path / "repo")).max_batch_size == 4
    assert read_config(export_repository(onnx_path, tmp_path / "r2")).max_batch_size == 8
    docs = (ROOT / "docs" / "tensorrt.md").read_text() + (ROOT / "docs" / "triton.md").read_text()
    assert "--max-batch 4" in docs and "edgeseg export triton model.engine -o repo" in docs


def test_cli_export_triton_default_fits_the_engine(tmp_path):
    pytest.importorskip("tritonclient.grpc", reason="needs the [triton] extra (tritonclient)")
    from typer.testing import CliRunner

    from edgeseg.cli import app

    engine = tmp_path / "m.engine"
    build_engine(make_tiny_onnx(tmp_path / "m.onnx"), engine, BuildOptions(max_batch=4), trt=make_fake_trt("10.3.0"),
                 cuda=FakeCuda())
    r = CliRunner().invoke(app, ["export", "triton", str(engine), "-o", str(tmp_path / "repo")])
    assert r.exit_code == 0, r.output
    assert "max_batch_size: 4" in (tmp_path / "repo" / "edgeseg" / "config.pbtxt").read_text()


# ----------------------------------------------------------------------------- 6: INT8 staleness

def test_int8_engine_is_stale_when_its_qdq_file_changes(tmp_path):
    from edgeseg.runtime.backends.tensorrt_backend import TensorRTBackend

    onnx_path = make_tiny_onnx(tmp_path / "m.onnx", size=(8, 12))
    qdq = _make_qdq_onnx(tmp_path / "m.int8.onnx")
    cuda = FakeMemCuda()
    trt = add_fake_runtime(make_fake_trt("10.3.0"), cuda)
    engine = tmp_path / "m.engine"
    build_engine(onnx_path, engine, BuildOptions(int8=True, opt_batch=2, max_batch=2), trt=trt, cuda=cuda)
    side = read_sidecar(engine)
    assert side.built_from["path"] == str(qdq)
    check_compatible(side, "10.3.0", "Fake Orin", "8.7", engine, onnx_path)  # nothing changed
    _make_qdq_onnx(qdq, scale=0.07)  # re-exported INT8 model; the fp32 model is unchanged
    with pytest.raises(EngineMismatch, match=r"m.int8.onnx \(what the engine was built from\) changed"):
        check_compatible(side, "10.3.0", "Fake Orin", "8.7", engine, onnx_path)
    with pytest.raises(EngineMismatch, match="what the engine was built from"):
        TensorRTBackend(engine, onnx_path=onnx_path, trt=trt, cuda=cuda)
    be = TensorRTBackend(engine, onnx_path=onnx_path, auto_rebuild=True, trt=trt, cuda=cuda)
    assert be.rebuilt and be.meta.built_from["sha256"] != side.built_from["sha256"]


# ----------------------------------------------------------------------------- 7: close, None context, one thread at a time

def _backend(tmp_path, cuda=None, trt=None):
    from edgeseg.runtime.backends.tensorrt_backend import TensorRTBackend

    onnx_path = make_tiny_onnx(tmp_path / "m.onnx", size=(8, 12))
    cuda = cuda or FakeMemCuda()
    trt = trt or add_fake_runtime(make_fake_trt("10.3.0"), cuda)
    engine = tmp_path / "m.engine"
    build_engine(onnx_path, engine, BuildOptions(opt_batch=2, max_batch=4), trt=trt, cuda=cuda)
    return TensorRTBackend(engine, onnx_path=onnx_path, trt=trt, cuda=cuda), trt, cuda


def test_close_releases_context_engine_and_runtime(tmp_path):
    be, trt, cuda = _backend(tmp_path)
    be.infer(np.zeros((1, 3, 8, 12), np.float32))
    be.close()
    assert be.context is None and be.engine is None and be._runtime is None
    with pytest.raises(RuntimeError, match="closed"):
        be.infer(np.zeros((1, 3, 8, 12), np.float32))
    be.close()


def test_a_none_execution_context_is_an_error_not_an_attribute_error(tmp_path):
    cuda = FakeMemCuda()
    trt = add_fake_runtime(make_fake_trt("10.3.0"), cuda)
    runtime = trt.Runtime

    class NoContextRuntime(runtime):
        def deserialize_cuda_engine(self, data):
            engine = super().deserialize_cuda_engine(data)
            engine.create_execution_context = lambda: None  # what TensorRT returns when it cannot make one
            return engine

    trt.Runtime = NoContextRuntime
    with pytest.raises(RuntimeError, match="could not create an execution context"):
        _backend(tmp_path, cuda, trt)


def test_infer_from_two_threads_never_overlaps_on_the_context(tmp_path):
    be, trt, cuda = _backend(tmp_path)
    ctx = trt.engine.ctx
    real = ctx.execute_async_v3
    state = {"in": 0, "max": 0}

    def slow_execute(handle):
        state["in"] += 1
        state["max"] = max(state["max"], state["in"])
        time.sleep(0.02)  # wide enough for a second thread to enter without the lock
        ok = real(handle)
        state["in"] -= 1
        return ok

    ctx.execute_async_v3 = slow_execute
    x = [np.full((1 + i % 2, 3, 8, 12), i, np.float32) for i in range(2)]
    out: dict[int, list] = {0: [], 1: []}

    def work(i):
        for _ in range(4):
            out[i].append(be.infer(x[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["max"] == 1
    for i in range(2):  # each thread got its own frames back (x * 2 in the stand-in runtime)
        assert all(np.array_equal(y, x[i] * 2) for y in out[i])


# ----------------------------------------------------------------------------- 8: JetPack 7

def test_doctor_names_jetpack_7_and_the_missing_python312_wheel():
    from edgeseg.apps.doctor import check, parse_l4t

    assert parse_l4t("# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic")["jetpack"] == "7.0"
    assert parse_l4t("# R38 (release), REVISION: 3.0")["jetpack"] == "7.1"
    assert parse_l4t("# R38 (release), REVISION: 2.0")["jetpack_cuda"] == 13000
    assert parse_l4t("# R36 (release), REVISION: 4.7")["jetpack"] == "6.2.1"
    thor = dict(machine="aarch64", jetson=True, gpu_name="NVIDIA Thor", tensorrt="10.13.3",
                tensorrt_dists={"tensorrt": "10.13.3"}, ort_providers=["CPUExecutionProvider"],
                **parse_l4t("# R38 (release), REVISION: 2.0"))
    jp = [f for f in check(thor) if f.topic == "jetpack"]
    assert len(jp) == 1 and jp[0].level == "warn"
    assert "JetPack 7" in jp[0].message and "Python 3.12" in jp[0].message and "no Python 3.12 wheel" in jp[0].message
    assert "6.2.1" not in jp[0].message


# ----------------------------------------------------------------------------- 10: nits

def test_no_fp16_int8_sets_no_fp16_flag(tmp_path):
    import cv2

    trt = make_fake_trt("8.6.1")
    trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None})
    (tmp_path / "c").mkdir()
    cv2.imwrite(str(tmp_path / "c" / "a.png"), np.zeros((10, 10, 3), np.uint8))
    build_engine(make_tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine",
                 BuildOptions(fp16=False, int8=True, calib_data=str(tmp_path / "c")), trt=trt, cuda=FakeMemCuda())
    assert ("set_flag", "INT8") in trt.calls and ("set_flag", "FP16") not in trt.calls


def test_a_failed_engine_write_leaves_the_old_engine_and_sidecar_paired(tmp_path):
    onnx_path = make_tiny_onnx(tmp_path / "m.onnx")
    engine = tmp_path / "m.engine"
    build_engine(onnx_path, engine, BuildOptions(), trt=make_fake_trt("10.3.0"), cuda=FakeCuda())
    old_side = sidecar_path(engine).read_text()
    trt = make_fake_trt("10.3.1")
    builder = trt.Builder

    class UnwritablePlan(builder):  # a plan object without the buffer protocol: the write fails midway
        def build_serialized_network(self, network, config):
            super().build_serialized_network(network, config)
            return object()

    trt.Builder = UnwritablePlan
    with pytest.raises(TypeError):
        build_engine(onnx_path, engine, BuildOptions(), trt=trt, cuda=FakeCuda())
    assert engine.read_bytes() == b"PLAN" and sidecar_path(engine).read_text() == old_side
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json", "m.onnx"]  # no temp files


def test_docs_say_things_once_and_name_the_qdq_default():
    doc = (ROOT / "docs" / "tensorrt.md").read_text()
    assert doc.count("`examples/jetson_bench.md` runs the benchmark suite on a device.") == 1
    first = doc.split("## Install")[0]
    assert "Q/DQ" in first and "--calib-data" in first  # the summary names the default and the calibrator
    qdq = (ROOT / "edgeseg" / "runtime" / "backends" / "tensorrt_qdq.py").read_text()
    for cited in set(re.findall(r"tests/(test_\w+\.py)", qdq)):
        assert (ROOT / "tests" / cited).is_file(), cited
