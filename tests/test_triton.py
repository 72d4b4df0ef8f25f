"""``edgeseg export triton`` and the Triton backend without a server: the written config.pbtxt is
parsed with Triton's own model-config protobuf (tritonclient), URLs, and the server-down error."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("tritonclient.grpc", reason="needs the [triton] extra (tritonclient)")

from edgeseg.runtime.backends.registry import open_backend, remote_entry  # noqa: E402
from edgeseg.runtime.backends.triton_backend import parse_url  # noqa: E402
from edgeseg.cli import app  # noqa: E402
from edgeseg.core.errors import ModelError  # noqa: E402
from edgeseg.core.model_meta import EngineMeta, ModelInfo, read_model_info, write_sidecar  # noqa: E402
from edgeseg.runtime.segmenter import Segmenter  # noqa: E402
from edgeseg.apps.triton_repo import export_repository, read_config  # noqa: E402


def test_export_onnx_repository_parses_as_triton_model_config(tiny_onnx: Path, tmp_path: Path) -> None:
    from tritonclient.grpc import model_config_pb2 as mc

    config_path = export_repository(tiny_onnx, tmp_path / "repo", "gasseg", max_batch=16, instances=3,
                                    preferred=(4, 8), queue_delay_us=700)
    assert config_path == tmp_path / "repo" / "gasseg" / "config.pbtxt"
    assert (tmp_path / "repo" / "gasseg" / "1" / "model.onnx").read_bytes() == tiny_onnx.read_bytes()
    cfg = read_config(config_path)  # google.protobuf.text_format.Parse into mc.ModelConfig
    assert isinstance(cfg, mc.ModelConfig)
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("gasseg", "onnxruntime_onnx", 16)
    inputs = {t.name: t for t in cfg.input}
    outputs = {t.name: t for t in cfg.output}
    assert list(inputs["image"].dims) == [3, -1, -1] and inputs["image"].data_type == mc.TYPE_FP32
    assert list(outputs["probs"].dims) == [3, -1, -1] and outputs["probs"].data_type == mc.TYPE_FP32
    assert list(outputs["labels"].dims) == [-1, -1] and outputs["labels"].data_type == mc.TYPE_UINT8
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 700
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(3, mc.ModelInstanceGroup.KIND_AUTO)]
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    info = ModelInfo.from_metadata(params)
    want = read_model_info(tiny_onnx)
    assert (info.classes, info.mean, info.std, info.input_size, info.activation) == (
        want.classes, want.mean, want.std, want.input_size, want.activation)


def test_export_fixed_batch_onnx_keeps_the_batch_dim(tmp_path: Path) -> None:
    from tiny_model import make_tiny_onnx

    model = make_tiny_onnx(tmp_path / "b2.onnx", batch=2)
    cfg = read_config(export_repository(model, tmp_path / "repo", max_batch=8, kind="cpu"))
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [2, 3, -1, -1]
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_CPU


def test_export_engine_repository_from_sidecar(tiny_onnx: Path, tmp_path: Path) -> None:
    from edgeseg.core.model_meta import read_metadata

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not a real plan")  # the exporter copies it and reads only the sidecar
    # the IO build_engine records from the parsed network (tests/test_tensorrt_cpu.py builds and exports them)
    io = [{"name": "image", "mode": "input", "dtype": "FLOAT", "shape": [-1, 3, 64, 96]},
          {"name": "probs", "mode": "output", "dtype": "FLOAT", "shape": [-1, 3, -1, -1]},
          {"name": "labels", "mode": "output", "dtype": "UINT8", "shape": [-1, -1, -1]}]
    write_sidecar(engine, EngineMeta("0" * 64, "fp16", (1, 4, 8), (64, 96), "10.9.0", "NVIDIA H100", "9.0",
                                     onnx_metadata=read_metadata(tiny_onnx), labels_dtype="uint8", io=io))
    cfg = read_config(export_repository(engine, tmp_path / "repo", max_batch=8, preferred=(8,)))
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 8
    assert (tmp_path / "repo" / "edgeseg" / "1" / "model.plan").read_bytes() == b"not a real plan"
    assert list(cfg.input[0].dims) == [3, 64, 96]
    assert {o.name: list(o.dims) for o in cfg.output} == {"probs": [3, -1, -1], "labels": [-1, -1]}
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_GPU
    assert cfg.parameters["tensorrt_version"].string_value == "10.9.0"
    assert json.loads(cfg.parameters["classes"].string_value) == ["background", "gas-smoke", "machine"]
    with pytest.raises(ModelError, match="larger than the engine's profile"):
        export_repository(engine, tmp_path / "repo2", max_batch=16)


@pytest.mark.parametrize("kw, match", [
    ({"name": "bad name"}, "letters, digits"),
    ({"preferred": (4, 32)}, "between 1 and --max-batch"),
    ({"instances": 0}, "--instances"),
    ({"kind": "tpu"}, "--kind"),
])
def test_export_refuses_bad_settings(tiny_onnx: Path, tmp_path: Path, kw: dict, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        export_repository(tiny_onnx, tmp_path / "repo", **kw)


def test_export_triton_cli(tiny_onnx: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["export", "triton", str(tiny_onnx), "-o", str(tmp_path / "repo"), "--max-batch", "4",
            "--instances", "2", "--preferred-batch", "2,4"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    cfg = read_config(tmp_path / "repo" / "edgeseg" / "config.pbtxt")
    assert cfg.max_batch_size == 4 and list(cfg.dynamic_batching.preferred_batch_size) == [2, 4]
    again = runner.invoke(app, args)  # exists: one-line error, non-zero exit
    assert again.exit_code != 0 and "--force" in again.output
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    missing = runner.invoke(app, ["export", "triton", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "r")])
    assert missing.exit_code != 0 and "model not found" in missing.output


def test_parse_url() -> None:
    u = parse_url("triton://gpu-server:9001/gasseg")
    assert (u.protocol, u.host, u.port, u.model, u.version) == ("grpc", "gpu-server", 9001, "gasseg", "")
    u = parse_url("triton+http://10.0.0.5/gasseg/3?timeout=2.5")
    assert (u.protocol, u.port, u.model, u.version, u.timeout_s) == ("http", 8000, "gasseg", "3", 2.5)
    assert parse_url("localhost:8001/edgeseg").protocol == "grpc"
    for bad in ("triton://host:8001", "http://host:8000/edgeseg", "triton://host:8001/a/b/c"):
        with pytest.raises(ModelError):
            parse_url(bad)
    assert remote_entry("triton://h:1/m").name == "triton" and remote_entry("model.onnx") is None
    with pytest.raises(ModelError, match="no backend serves"):
        open_backend("ftp://h/m")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("scheme", ["triton", "triton+http"])
def test_server_down_is_one_line(scheme: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(ModelError) as err:
        Segmenter(f"{scheme}://127.0.0.1:{_closed_port()}/edgeseg?timeout=2")
    msg = str(err.value)
    assert "\n" not in msg and "not reachable" in msg and "127.0.0.1" in msg
    assert time.monotonic() - t0 < 10


def test_file_models_never_go_to_the_triton_backend(tiny_onnx: Path) -> None:
    seg = Segmenter(tiny_onnx)  # auto: onnxruntime, the triton entry is never tried for a file
    assert seg.backend_name == "onnxruntime"
    with pytest.raises(ModelError, match="triton"):
        Segmenter("triton://127.0.0.1:1/edgeseg", backend="onnxruntime")
    seg.segment(np.zeros((32, 32, 3), np.uint8))
