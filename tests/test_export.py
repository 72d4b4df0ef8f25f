"""Checkpoint -> ONNX conversion: round trips, checkpoint flavours, refusals, fp16."""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from edgeseg.cli import app
from export.checkpoint import CheckpointError, load_model
from export.model import UNetResNet18
from export.onnx_export import (
    DEFAULT_MEAN, DEFAULT_STD, build_metadata, check_size, convert_fp16, export_onnx,
    image_like_inputs, verify_against_torch, verify_fp16,
)


def _meta(size=(256, 256)):
    return build_metadata(["background", "gas-smoke", "machine"], "softmax", size, DEFAULT_MEAN,
                          DEFAULT_STD, "0" * 64, "test.pt")


@pytest.fixture(scope="module")
def model() -> UNetResNet18:
    torch.manual_seed(0)
    m = UNetResNet18(classes=3).eval()
    # Non-trivial BN statistics so folding BN into convs is actually exercised.
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "m.onnx", _meta())


def test_round_trip_dynamic_batch_1_and_4(model, onnx_path):
    errors = verify_against_torch(model, onnx_path, (256, 256), batches=(1, 4), tolerance=1e-4)
    assert set(errors) == {"random_b1", "image_like_b1", "random_b4", "image_like_b4"}
    assert max(errors.values()) < 1e-4


def test_non_square_input(model, onnx_path):
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = image_like_inputs(1, (256, 384))
    probs, labels = sess.run(["probs", "labels"], {"image": x})
    assert probs.shape == (1, 3, 256, 384) and labels.shape == (1, 256, 384)
    assert labels.dtype == np.uint8
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(ref - probs).max() < 1e-4
    np.testing.assert_array_equal(labels, probs.argmax(1))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_metadata_inside_onnx(onnx_path):
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(meta["classes"]) == ["background", "gas-smoke", "machine"]
    assert json.loads(meta["input_size"]) == [256, 256]
    assert json.loads(meta["mean"]) == list(DEFAULT_MEAN)
    assert meta["activation"] == "softmax" and len(meta["source_sha256"]) == 64


def test_size_must_be_multiple_of_32():
    check_size(256, 384)
    with pytest.raises(ValueError, match="multiple of 32"):
        check_size(250, 256)


def test_fixed_batch_export(model, tmp_path):
    p = export_onnx(model, tmp_path / "b2.onnx", _meta(), batch=2, labels="int32")
    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape[0] == 2
    assert sess.get_outputs()[1].type == "tensor(int32)"
    assert max(verify_against_torch(model, p, (256, 256)).values()) < 1e-4


def test_fp16_agreement(onnx_path, tmp_path):
    half, _clamped = convert_fp16(onnx_path, tmp_path / "m.fp16.onnx")
    assert half.stat().st_size < 0.6 * onnx_path.stat().st_size
    sess = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == "tensor(float)"  # fp32 I/O kept
    iou, err = verify_fp16(onnx_path, half, (256, 256), min_iou=0.95)
    assert iou >= 0.95 and err < 0.05


# ---- checkpoint flavours --------------------------------------------------------------------

def _sd(classes=3):
    torch.manual_seed(1)
    return UNetResNet18(classes=classes).state_dict()


@pytest.mark.parametrize("flavour", ["plain", "state_dict", "lightning", "model", "ddp", "safetensors"])
def test_checkpoint_flavours_load(flavour, tmp_path):
    sd = _sd()
    path = tmp_path / ("ck.safetensors" if flavour == "safetensors" else "ck.pt")
    if flavour == "plain":
        torch.save(sd, path)
    elif flavour == "state_dict":
        torch.save({"state_dict": sd, "epoch": 3}, path)
    elif flavour == "lightning":
        torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "global_step": 10}, path)
    elif flavour == "model":
        torch.save({"model": sd, "optimizer": {"lr": 1e-4}}, path)
    elif flavour == "ddp":
        torch.save({f"module.{k}": v for k, v in sd.items()}, path)
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    model, info = load_model(path)
    assert info["num_classes"] == 3 and info["classes"][1] == "gas-smoke"
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k].float()), k


def test_wrong_class_names_count(tmp_path):
    torch.save(_sd(2), tmp_path / "two.pt")
    with pytest.raises(CheckpointError, match="2 classes but 3 class names"):
        load_model(tmp_path / "two.pt", ["background", "gas-smoke", "machine"])


def test_missing_and_unexpected_keys_listed(tmp_path):
    sd = _sd()
    del sd["encoder.layer4.1.conv2.weight"]
    sd["decoder.center.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path / "bad.pt")
    msg = str(err.value)
    assert "missing keys: encoder.layer4.1.conv2.weight" in msg
    assert "unexpected keys: decoder.center.weight" in msg
    assert "\n" not in msg


def test_shape_mismatch_listed(tmp_path):
    sd = _sd()
    sd["decoder.blocks.0.conv1.0.weight"] = torch.zeros(256, 100, 3, 3)
    torch.save(sd, tmp_path / "shape.pt")
    # refused from the archive's index, before the tensors are allocated
    with pytest.raises(CheckpointError, match=r"refused before loading: tensor 'decoder.blocks.0.conv1.0.weight' has "
                                              r"shape \[256, 100, 3, 3\].*needs \[256, 768, 3, 3\]"):
        load_model(tmp_path / "shape.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_needing_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Evil()}, path)  # what torch.save(model) of custom code looks like
    with pytest.raises(CheckpointError, match="code execution"):
        load_model(path)


def test_not_a_checkpoint_and_missing(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a PyTorch zip archive"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pt")
    torch.save({"optimizer": {"lr": 1}}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="no tensors"):
        load_model(tmp_path / "empty.pt")


# ---- CLI ------------------------------------------------------------------------------------

def test_cli_export_and_inspect_json(tmp_path):
    torch.save({"state_dict": {f"model.{k}": v for k, v in _sd().items()}}, tmp_path / "ck.ckpt")
    out = tmp_path / "m.onnx"
    runner = CliRunner()
    res = runner.invoke(app, ["export", "onnx", str(tmp_path / "ck.ckpt"), "-o", str(out), "--fp16", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout[res.stdout.index("{"):])
    assert report["max_abs_error"] < 1e-4 and report["fp16_mask_iou"] >= 0.95
    res = runner.invoke(app, ["inspect", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["inputs"][0]["name"] == "image" and info["metadata"]["activation"] == "softmax"
    assert 8 < info["gflops"] < 14 and info["params"] > 14_000_000


def test_cli_bad_checkpoint_one_line_error(tmp_path):
    torch.save(_sd(2), tmp_path / "two.pt")
    res = CliRunner().invoke(app, ["export", "onnx", str(tmp_path / "two.pt"), "--classes", "a,b,c",
                                   "-o", str(tmp_path / "x.onnx")])
    assert res.exit_code == 2
    assert "2 classes but 3 class names" in res.output
    assert not (tmp_path / "x.onnx").exists()


def test_fp16_conversion_counts_tiny_weights_instead_of_printing_them(recwarn):
    """onnxconverter-common warns once per weight below 1e-7; a trained net has hundreds."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.core.onnx_precision import convert_to_fp16

    w = np.array([1e-9, -2e-9, 0.5, 0.0], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [numpy_helper.from_array(w, "w")])
    half, clamped = convert_to_fp16(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    assert clamped == 2
    assert not [r for r in recwarn if "truncated" in str(r.message)]
    out = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.ones(4, np.float32)})[0]
    np.testing.assert_allclose(out, 1 + np.array([1e-7, -1e-7, 0.5, 0.0]), atol=1e-3)
