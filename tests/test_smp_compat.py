"""smp ``Unet("resnet18")`` checkpoints convert to ONNX graphs that compute smp's forward, or are refused.

The reference is ``tests/smp_reference.py``: an independent functional implementation of smp's
forward over smp's key names (not ``export.model``). Each case is converted through the real
``edgeseg export onnx`` command and the ONNX Runtime output is compared with that reference on
image-like and random inputs, at the exported size and at another (dynamic) size.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from edgeseg.cli import app  # noqa: E402
from edgeseg.apps.fp16 import cpu_session, image_like_inputs  # noqa: E402
from edgeseg.core.model_meta import read_model_info  # noqa: E402
from export.checkpoint import CheckpointError, load_model  # noqa: E402
from export.model import UNetResNet18  # noqa: E402
from tests import smp_reference as smp  # noqa: E402

SIZE = 128


def _export(src, out, *flags):
    res = CliRunner().invoke(app, ["export", "onnx", str(src), "-o", str(out), "--size", str(SIZE), "--json", *flags])
    return res


def _max_error(onnx_path, sd, interpolation, activation):
    sess = cpu_session(onnx_path)
    worst = 0.0
    for x in (image_like_inputs(2, (SIZE, SIZE), seed=7),
              np.random.default_rng(3).standard_normal((1, 3, 96, 160)).astype(np.float32)):
        with torch.no_grad():
            ref = smp.forward(sd, torch.from_numpy(x), interpolation, activation).numpy()
        got = sess.run(["probs"], {"image": x})[0]
        assert got.shape == ref.shape
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst


@pytest.mark.parametrize("classes", [1, 2, 3])
def test_reference_keys_are_smp_and_export_models(classes):
    """The test's smp key layout is the exporter network's layout (names and shapes)."""
    ours = {k: tuple(v.shape) for k, v in UNetResNet18(classes=classes, activation="none").state_dict().items()}
    assert ours == smp.smp_keys(classes)


# (case, classes, how the checkpoint is stored, smp's interpolation, flags, activation the graph must have)
CASES = [
    ("default", 1, "pretrained", "nearest", [], "sigmoid"),
    ("bilinear", 1, "pretrained", "bilinear", [], "sigmoid"),
    ("bicubic-flag", 1, "plain", "bicubic", ["--decoder-interpolation", "bicubic"], "sigmoid"),
    ("2-class-lightning-bilinear", 2, "lightning", "bilinear", [], "softmax"),
    ("3-class", 3, "plain", "nearest", [], "softmax"),
    ("3-class-bilinear-flag", 3, "safetensors", "bilinear", ["--decoder-interpolation", "bilinear"], "softmax"),
    ("3-class-logits", 3, "plain", "nearest", ["--activation", "none"], None),
    ("1-class-logits", 1, "pretrained", "nearest", ["--activation", "none"], None),
]


@pytest.mark.parametrize("case,classes,store,mode,flags,activation", CASES, ids=[c[0] for c in CASES])
def test_export_matches_independent_smp_forward(case, classes, store, mode, flags, activation, tmp_path, capsys):
    sd = smp.random_state_dict(classes, seed=classes, head_scale=8.0 if activation is None else 1.0)
    if store == "pretrained":
        src = smp.save_pretrained(tmp_path / "smp_model", sd, smp.smp_config(classes, decoder_interpolation=mode))
    elif store == "lightning":
        src = tmp_path / "last.ckpt"
        torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 4,
                    "hyper_parameters": {"arch": "Unet", "encoder_name": "resnet18", "lr": 1e-3,
                                         "model_kwargs": {"decoder_interpolation": mode, "classes": classes}}}, src)
    elif store == "safetensors":
        from safetensors.torch import save_file
        src = tmp_path / "w.safetensors"
        save_file(sd, str(src))
    else:
        src = tmp_path / "w.pt"
        torch.save(sd, src)
    out = tmp_path / "m.onnx"
    res = _export(src, out, *flags)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout[res.stdout.index("{"):])
    assert report["decoder_interpolation"] == mode
    assert report["activation"] == (activation or "none")
    err = _max_error(out, sd, mode, activation)
    peak = float(np.abs(smp.forward(sd, torch.from_numpy(image_like_inputs(1, (SIZE, SIZE))), mode,
                                    activation).numpy()).max())
    with capsys.disabled():
        print(f"\n[smp-compat] {case}: ONNX vs independent smp forward max abs error {err:.2e} "
              f"(max |output| {peak:.3g}); exporter's own check {report['max_abs_error']:.2e} "
              f"<= {report['tolerance_used']:.2e}")
    assert err <= 1e-4 + 5e-5 * peak
    info = read_model_info(out)
    if classes == 1:
        assert info.binary and info.classes == ("background", "gas-smoke") and info.leak_class == 1
        x = image_like_inputs(1, (SIZE, SIZE), seed=11)
        probs, labels = cpu_session(out).run(["probs", "labels"], {"image": x})
        cut = 0.0 if activation is None else 0.5
        np.testing.assert_array_equal(labels[0], (probs[0, 0] >= cut).astype(np.uint8))
    else:
        assert not info.binary and len(info.classes) == classes


def test_interpolation_matters(tmp_path):
    """A bilinear checkpoint exported with nearest upsampling is visibly wrong: the option is not cosmetic."""
    sd = smp.random_state_dict(1, seed=1)
    x = torch.from_numpy(image_like_inputs(1, (SIZE, SIZE)))
    with torch.no_grad():
        diff = (smp.forward(sd, x, "bilinear", "sigmoid") - smp.forward(sd, x, "nearest", "sigmoid")).abs().max()
    assert diff > 0.05


@pytest.mark.parametrize("override,named", [
    ({"encoder_name": "resnet34"}, "encoder_name='resnet34'"),
    ({"encoder_depth": 4}, "encoder_depth=4"),
    ({"decoder_channels": [128, 64, 32, 16, 8]}, "decoder_channels"),
    ({"decoder_attention_type": "scse"}, "decoder_attention_type='scse'"),
    ({"decoder_interpolation": "area"}, "decoder_interpolation='area'"),
    ({"decoder_use_norm": "instancenorm"}, "decoder_use_norm='instancenorm'"),
    ({"in_channels": 1}, "in_channels=1"),
    ({"aux_params": {"classes": 2}}, "aux_params"),
    ({"activation": "tanh"}, "activation='tanh'"),
    ({"_model_class": "FPN"}, "_model_class='FPN'"),
])
def test_unsupported_smp_options_refused_by_name(override, named, tmp_path):
    folder = smp.save_pretrained(tmp_path / "m", smp.random_state_dict(1), smp.smp_config(1, **override))
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    assert named in str(err.value) and "\n" not in str(err.value)
    res = _export(folder, tmp_path / "x.onnx")
    assert res.exit_code == 2 and named.split("=")[0] in res.output
    assert not (tmp_path / "x.onnx").exists()


def test_deprecated_decoder_use_batchnorm_accepted(tmp_path):
    cfg = smp.smp_config(2, decoder_use_batchnorm=True)
    del cfg["decoder_use_norm"]
    model, info = load_model(smp.save_pretrained(tmp_path / "m", smp.random_state_dict(2), cfg))
    assert info["num_classes"] == 2 and info["options_from"] == "config.json"


def test_refusals_for_binary_and_contradictions(tmp_path):
    sd = smp.random_state_dict(1)
    torch.save(sd, tmp_path / "one.pt")
    with pytest.raises(CheckpointError, match="use --activation sigmoid"):
        load_model(tmp_path / "one.pt", activation="softmax")
    res = _export(tmp_path / "one.pt", tmp_path / "x.onnx", "--activation", "softmax")
    assert res.exit_code == 2 and "sigmoid" in res.output and not (tmp_path / "x.onnx").exists()
    folder = smp.save_pretrained(tmp_path / "m", sd, smp.smp_config(1, decoder_interpolation="bilinear"))
    with pytest.raises(CheckpointError, match="contradicts"):
        load_model(folder, interpolation="nearest")
    bad = smp.save_pretrained(tmp_path / "m3", sd, smp.smp_config(3))
    with pytest.raises(CheckpointError, match="classes=3 but the segmentation head has 1"):
        load_model(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(tmp_path / "empty")
    _, info = load_model(tmp_path / "one.pt", ["smoke"])
    assert info["classes"] == ["background", "smoke"] and info["activation"] == "sigmoid"


def test_failed_verification_leaves_previous_file_untouched(tmp_path):
    torch.save(smp.random_state_dict(3), tmp_path / "w.pt")
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous model")
    res = _export(tmp_path / "w.pt", out, "--tolerance", "0", "--rtol", "0")
    assert res.exit_code == 1
    msg = " ".join(res.output.split())
    assert "beyond the tolerance" in msg and "at (n,c,y,x)=" in msg and "opset" not in msg
    assert out.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "w.pt"]  # no temporary left behind


def test_pytorch_backend_runs_a_binary_checkpoint(tmp_path):
    """The PyTorch backend (bench suite's eager baseline) opens a 1-class checkpoint as binary too."""
    from edgeseg.runtime.segmenter import Segmenter
    from export.torch_backend import TorchBackend

    torch.save(smp.random_state_dict(1), tmp_path / "one.pt")
    be = TorchBackend(tmp_path / "one.pt")
    assert be.info.binary and be.info.classes == ("background", "gas-smoke") and be.info.activation == "sigmoid"
    frame = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)  # the model's size: no resize
    r = Segmenter(backend=be, min_area=0).segment(frame, return_probs=True)  # every region kept
    np.testing.assert_array_equal(r.mask, (r.probs[1] >= 0.5).astype(np.uint8))
