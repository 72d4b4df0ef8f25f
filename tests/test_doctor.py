"""`edgeseg doctor`: the checks run on stand-in facts (pure function, the real checker), and the command
runs for real on this host, reporting what is missing."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from edgeseg.doctor import check, gather_facts, report

X86_550 = dict(machine="x86_64", jetson=False, gpu_name="NVIDIA GeForce RTX 4090", compute_capability="8.9",
               driver_version="550.54.15", driver_cuda_version=12040, tensorrt="10.13.0.35",
               tensorrt_dists={"tensorrt-cu12": "10.13.0.35"}, cuda_python="12.9.4", cuda_runtime_version=12090,
               ort_providers=["CPUExecutionProvider"], onnxruntime="1.20.1", onnxconverter_common="1.16.0")


def by_level(findings, level):
    return [f for f in findings if f.level == level]


def test_consistent_x86_cuda12_host_has_no_errors():
    f = check(X86_550)
    assert not by_level(f, "error") and not by_level(f, "warn")
    assert any(x.topic == "tensorrt" and "10.13.0.35" in x.message for x in by_level(f, "ok"))


def test_cuda_python_13_on_a_550_driver():
    f = by_level(check({**X86_550, "cuda_python": "13.0.1"}), "error")
    assert [(x.message, x.fix) for x in f if x.topic == "cuda-python"] == [
        ("cuda-python 13 needs driver >= 580; this driver is 550", "pip install 'cuda-python>=12.6,<13'")]
    assert report({**X86_550, "cuda_python": "13.0.1"})["ok"] is False


def test_tensorrt_cu13_on_a_cuda12_driver():
    facts = {**X86_550, "tensorrt_dists": {"tensorrt-cu13": "10.13.0.35"}}
    err = [x for x in by_level(check(facts), "error") if x.topic == "tensorrt"]
    assert len(err) == 1 and "tensorrt-cu13 needs a CUDA 13 driver (>= 580)" in err[0].message
    assert err[0].fix.endswith("pip install 'edgeseg[gpu-cu12]'")


def test_jetpack5_tensorrt_85_is_refused_and_jetpack6_passes():
    jp = dict(machine="aarch64", jetson=True, l4t_release="# R35 (release), REVISION: 4.1", gpu_name="Orin",
              compute_capability="8.7", driver_cuda_version=11040, tensorrt="8.5.2.2", tensorrt_dists={"tensorrt": "8.5.2.2"},
              cuda_python="12.6.2", ort_providers=["CPUExecutionProvider"])
    err = by_level(check(jp), "error")
    assert any("JetPack 5 ships 8.5" in x.message and "JetPack 6" in x.fix for x in err)
    jp6 = {**jp, "driver_cuda_version": 12060, "tensorrt": "10.3.0", "tensorrt_dists": {"tensorrt": "10.3.0"}}
    assert not by_level(check(jp6), "error")


def test_pip_tensorrt_on_jetson_and_missing_tensorrt_point_to_jetpack():
    jp = dict(machine="aarch64", jetson=True, gpu_name="Orin", driver_cuda_version=12060, tensorrt=None,
              tensorrt_error="ImportError: libnvinfer.so.10: cannot open shared object file",
              tensorrt_dists={"tensorrt-cu12": "10.13.0"}, cuda_python="12.6.2", ort_providers=["CPUExecutionProvider"])
    f = check(jp)
    assert any("does not import" in x.message and "--system-site-packages" in x.fix for x in by_level(f, "error"))
    assert any("pip TensorRT wheels on a Jetson" in x.message for x in by_level(f, "warn"))
    none = check({**jp, "tensorrt_dists": {}, "tensorrt_error": "ModuleNotFoundError: No module named 'tensorrt'"})
    assert any(x.topic == "tensorrt" and "--system-site-packages" in x.fix for x in by_level(none, "warn"))


def test_trt11_without_fp16_converter_and_without_cuda_layer():
    f = check({**X86_550, "tensorrt": "11.1.0", "onnxconverter_common": None, "cuda_python": None})
    assert any("onnxconverter-common is missing" in x.message for x in by_level(f, "warn"))
    assert any(x.topic == "cuda" and "cuda-python>=12.6,<13" in x.fix for x in by_level(f, "error"))


def test_cpu_only_facts_are_info_not_errors():
    f = check({"machine": "x86_64", "jetson": False, "ort_providers": ["CPUExecutionProvider"], "openvino": "2025.1",
               "openvino_devices": ["CPU"]})
    assert not by_level(f, "error") and not by_level(f, "warn")
    assert any(x.topic == "openvino" and "CPU" in x.message for x in f)


def test_doctor_runs_for_real_here():
    facts = gather_facts()
    assert facts["machine"] and "tensorrt" in facts and isinstance(facts["ort_providers"], list)
    from edgeseg.cli import app

    r = CliRunner().invoke(app, ["doctor", "--json"])
    rep = json.loads(r.stdout)
    assert r.exit_code == (0 if rep["ok"] else 1)
    topics = {f["topic"] for f in rep["findings"]}
    assert {"gpu", "tensorrt", "onnxruntime", "openvino"} <= topics
    if facts["tensorrt"] is None:  # this CPU host: says TensorRT is missing
        assert any(f["topic"] == "tensorrt" and "not installed" in f["message"] for f in rep["findings"])
    r = CliRunner().invoke(app, ["doctor"])
    assert "onnxruntime" in r.output
