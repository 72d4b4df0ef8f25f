"""`edgeseg doctor`: the checks run on stand-in facts (pure function, the real checker), and the command
runs for real on this host, reporting what is missing."""
from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edgeseg.apps.doctor import check, gather_facts, report

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
        ("cuda-python 13 needs driver >= 580; this driver is 550", "pip install 'edgeseg[gpu-cu12]'")]
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
    assert any(x.topic == "cuda" and x.fix == "pip install 'edgeseg[gpu-cu12]'" for x in by_level(f, "error"))


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
    # the CUDA layer is always tried, its error kept, how edgeseg is installed recorded
    assert {"cuda_layer", "cuda_layer_error", "cuda_runtime_version", "driver_cuda_version", "install",
            "l4t_release"} <= set(rep["facts"])
    if rep["facts"]["cuda_layer"] is None:  # this CPU host: why it does not load, in words
        assert "no usable CUDA layer" in rep["facts"]["cuda_layer_error"]
    if facts["tensorrt"] is None:  # this CPU host: says TensorRT is missing
        assert any(f["topic"] == "tensorrt" and "not installed" in f["message"] for f in rep["findings"])
    r = CliRunner().invoke(app, ["doctor"])
    assert "onnxruntime" in r.output


def test_broken_cuda_layer_is_an_error_with_the_fix_for_this_install():
    facts = {**X86_550, "cuda_layer": None, "install": {"kind": "checkout", "root": "/src/edgeseg"},
             "cuda_layer_error": "BackendUnavailable: no usable CUDA layer (cuda-python: cudaGetDeviceCount failed: "
                                 "cudaErrorInsufficientDriver)"}
    err = [x for x in by_level(check(facts), "error") if x.topic == "cuda"]
    assert len(err) == 1 and "cudaErrorInsufficientDriver" in err[0].message
    assert err[0].fix == "pip install -e '/src/edgeseg[gpu-cu12]'"  # a checkout: its own path, editable
    ok = check({**X86_550, "cuda_layer": "cuda-python"})
    assert any(x.topic == "cuda" and x.level == "ok" and "CUDA runtime 12.9" in x.message for x in ok)


def test_runtime_against_driver_cuda():
    cross = check({**X86_550, "cuda_layer": "cuda-python", "cuda_runtime_version": 13000})
    assert any("runtime 13.0 is newer than the driver's CUDA 12.4" in x.message for x in by_level(cross, "error"))
    minor = check({**X86_550, "cuda_layer": "cuda-python", "cuda_runtime_version": 12090})  # 12.9 on a 12.4 driver
    assert not [x for x in by_level(minor, "error") if x.topic == "cuda"]
    assert any("minor version compatibility" in x.message for x in minor)


def test_jetpack_from_nv_tegra_release_and_its_cuda():
    from edgeseg.apps.doctor import parse_l4t

    line = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025"
    assert parse_l4t(line) == {"l4t": "36.4.3", "jetpack": "6.2", "jetpack_cuda": 12060}
    assert parse_l4t("# R36 (release), REVISION: 3.0, GCID: 36923193")["jetpack"] == "6.0"
    assert parse_l4t("# R35 (release), REVISION: 4.1, GCID: 33958178")["jetpack"] == "5.x"
    assert parse_l4t(None) == {}
    jp61 = dict(machine="aarch64", jetson=True, gpu_name="Orin", compute_capability="8.7", tensorrt="10.3.0",
                tensorrt_dists={"tensorrt": "10.3.0"}, cuda_python="12.9.4", cuda_layer="cuda-python",
                cuda_runtime_version=12090, ort_providers=["CPUExecutionProvider"],
                **parse_l4t("# R36 (release), REVISION: 4.0, GCID: 37537400"))
    err = [x for x in by_level(check(jp61), "error") if x.topic == "cuda"]
    assert len(err) == 1 and "12.9 is newer than JetPack's CUDA 12.6" in err[0].message and "[jetson]" in err[0].fix
    assert any(x.topic == "jetpack" and "JetPack 6.1 (L4T 36.4.0, CUDA 12.6)" in x.message for x in check(jp61))
    assert not [x for x in by_level(check({**jp61, "cuda_runtime_version": 12020}), "error") if x.topic == "cuda"]


def test_install_kind_checkout_and_wheel(tmp_path):
    """This checkout is a checkout; a package folder without the project beside it (site-packages) is a wheel."""
    import edgeseg
    from edgeseg.apps.doctor import install_kind, pip_fix

    here = install_kind(Path(edgeseg.__file__).parent)
    assert here["kind"] == "checkout" and (Path(here["root"]) / "pyproject.toml").is_file()
    site = tmp_path / "site-packages" / "edgeseg"
    site.mkdir(parents=True)
    assert install_kind(site) == {"kind": "wheel", "root": ""}
    assert pip_fix("jetson", {"install": here}) == f"pip install -e '{here['root']}[jetson]'"
    assert pip_fix("jetson", {"install": install_kind(site)}) == "pip install 'edgeseg[jetson]'"


# -- the gateway section (issue #34) -------------------------------------------------------------------
def test_doctor_gateway_section_names_a_folder_it_cannot_write_and_a_port_in_use(tmp_path):
    """Real folders and a real listening socket: each problem is one finding with a fix."""
    import json as _json
    import os
    import socket

    from edgeseg.apps.doctor_gateway import gateway_findings

    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(_json.dumps({"cameras": [{"name": "c", "source": "0"}], "state_dir": str(tmp_path / "state"),
                                "clips": {"dir": str(locked / "clips")}, "metrics": {"port": port}}))
    try:
        found = gateway_findings(cfg)
    finally:
        holder.close()
        os.chmod(locked, 0o700)
    by_topic = {}
    for f in found:
        by_topic.setdefault(f.topic, []).append(f)
    if os.geteuid() != 0:  # root writes anywhere: the folder check cannot fail for it
        bad = [f for f in by_topic["gateway: folders"] if f.level == "error"]
        assert bad and "clips" in bad[0].message and bad[0].fix
    port_f = by_topic["gateway: port"][0]
    assert port_f.level == "error" and str(port) in port_f.message and "metrics.port" in port_f.fix
    assert {f.topic for f in found} >= {"gateway: av", "gateway: paho-mqtt", "gateway: prometheus-client", "gateway: pyyaml"}


def test_doctor_gateway_port_probe_is_not_fooled_by_time_wait():
    """A port a client just used (TIME_WAIT) is free for a server with SO_REUSEADDR: the probe says so."""
    import socket
    import threading

    from edgeseg.apps.gateway.preflight import port_problem

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]

    def serve_once():
        conn, _ = srv.accept()
        conn.close()  # the server closes first: its side of the connection goes to TIME_WAIT

    t = threading.Thread(target=serve_once)
    t.start()
    c = socket.create_connection(("127.0.0.1", port))
    t.join()
    c.recv(1)
    c.close()
    srv.close()
    assert port_problem("127.0.0.1", port) == ""
