"""Issue 17: device-agnostic training (the CUDA code path's logic on the CPU), ImageNet encoder
weights, the training pack + one-command GPU run, and the bundled weights stored once (fp16)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.data import NOT_LEAK, synthetic_gas


ROOT = Path(__file__).resolve().parents[1]


def run_isolated(code: str, timeout: int = 600) -> str:
    """Run ``code`` in a fresh interpreter (stdout returned). DataLoader worker processes are
    started only there: in the long-lived test process, after OpenVINO / ONNX Runtime tests had
    run, a worker's shutdown intermittently took the whole process down with SIGSEGV."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**__import__("os").environ, "PYTHONPATH": f"{ROOT}{__import__('os').pathsep}{ROOT / 'tests'}"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def _tiny_smoke(n: int = 12, size: int = 64, seed: int = 3):
    d = synthetic_gas(n, seed=seed, size=size)
    d.labels = np.where(d.labels == 1, 1, NOT_LEAK).astype(np.uint8)
    d.real = np.arange(n) % 2 == 0  # half "real photos", half "composites"
    return d


# ------------------------------------------------------------------------------- item 1: device code path
def test_train_runs_the_gpu_code_path_on_cpu(tmp_path):
    """bf16 autocast, channels-last, a DataLoader worker and on-device augmentation: the same code
    a CUDA run takes, on the CPU, for a few steps."""
    out = run_isolated(f"""
import json
from pathlib import Path
from test_gpu_training import _tiny_smoke
from training.train import Config, Phase, Runtime, StageConfig, train
cfg = Config(stages=[StageConfig("smoke", [Phase(3, 64, 2)], lr=1e-3, warmup=1),
                     StageConfig("gas", [Phase(2, 64, 2)], lr=1e-3, warmup=1, synth_fraction=0.5)],
             synth_train=4, eval_every=1000, ckpt_every=2, threads=1)
logs = []
rt = Runtime(device="cpu", amp="bf16", channels_last=True, workers=1, gpu_aug=True)
final = train(cfg, Path({str(tmp_path)!r}), _tiny_smoke(6), None, None, log=logs.append, rt=rt)
print(json.dumps({{"final": str(final), "logs": logs}}))
""")
    res = json.loads(out.strip().splitlines()[-1])
    from export.checkpoint import load_model

    assert any("amp torch.bfloat16" in m and "workers 1" in m for m in res["logs"])
    hist = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert len(hist) == 5 and all(np.isfinite(h["loss"]) for h in hist)
    load_model(res["final"])


def test_batches_do_not_depend_on_the_worker_count():
    out = run_isolated("""
import json, torch
from test_gpu_training import _tiny_smoke
from training import accel
from training.train import Phase, StageBatches, StageConfig
stage = StageConfig("smoke", [Phase(2, 32, 2), Phase(2, 64, 2)], lr=1e-3)
ds = StageBatches(_tiny_smoke(6), None, stage, 0, seed=5)
direct = [ds[i] for i in range(4)]
via = list(accel.loader(ds, torch.device("cpu"), workers=2, sampler=range(4)))
print(json.dumps({"sizes": [int(x.shape[-1]) for x, _ in direct],
                  "equal": [bool(torch.equal(x0, x1) and torch.equal(y0, y1)) for (x0, y0), (x1, y1) in zip(direct, via)]}))
""")
    res = json.loads(out.strip().splitlines()[-1])
    assert res["sizes"] == [32, 32, 64, 64] and all(res["equal"]) and len(res["equal"]) == 4


def test_gpu_augment_is_seeded_and_keeps_labels_valid():
    from training.accel import gpu_augment

    img = torch.randint(0, 255, (4, 32, 32, 3), dtype=torch.uint8)
    lab = torch.randint(0, 4, (4, 32, 32), dtype=torch.uint8)
    a = gpu_augment(img, lab, torch.Generator().manual_seed(1))
    b = gpu_augment(img, lab, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (4, 3, 32, 32) and set(a[1].unique().tolist()) <= {0, 1, 2, 3}


def test_device_choice_is_refused_in_one_line_without_cuda(monkeypatch):
    from training.accel import amp_dtype, cpu_has_amx_bf16, pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto").type == "cpu"
    with pytest.raises(SystemExit, match="sees no CUDA GPU.*--device cpu"):
        pick_device("cuda")
    # auto on the CPU: bf16 exactly where this host's /proc/cpuinfo lists amx_bf16, else fp32
    flags = next((ln.split() for ln in open("/proc/cpuinfo") if ln.startswith("flags")), [])
    assert cpu_has_amx_bf16() == ("amx_bf16" in flags)
    assert amp_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if "amx_bf16" in flags else None)
    assert amp_dtype("none", torch.device("cpu")) is None
    with pytest.raises(SystemExit, match="--amp bf16"):
        amp_dtype("fp16", torch.device("cpu"))


# ------------------------------------------------------------------------------- item 2: encoder weights
def _torchvision_like_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    """A resnet18 state_dict with torchvision's key names (conv1, bn1, layer1..4, fc)."""
    from export.model import ResNet18Encoder

    torch.manual_seed(seed)
    enc = ResNet18Encoder()
    sd = {k: (torch.randn_like(v) if v.is_floating_point() else v) for k, v in enc.state_dict().items()}
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    return sd


def test_encoder_weights_from_a_torchvision_file(tmp_path):
    from export.model import UNetResNet18
    from training.encoder_weights import load_encoder_weights

    sd = _torchvision_like_sd()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(sd, path)
    model = UNetResNet18()
    msg = load_encoder_weights(model, str(path))
    assert "120 of 120 tensors loaded" in msg and "fc dropped" in msg
    got = model.encoder.state_dict()
    assert torch.equal(got["layer3.0.downsample.0.weight"], sd["layer3.0.downsample.0.weight"])
    assert torch.equal(got["bn1.running_var"], sd["bn1.running_var"])


def test_encoder_weights_from_a_timm_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    from export.model import UNetResNet18
    from training.encoder_weights import load_encoder_weights

    sd = {k: v for k, v in _torchvision_like_sd(1).items() if not k.endswith("num_batches_tracked")}  # timm has none
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "timm_resnet18.safetensors"))
    model = UNetResNet18()
    msg = load_encoder_weights(model, str(tmp_path / "timm_resnet18.safetensors"))
    assert "100 of 120 tensors loaded" in msg  # 20 num_batches_tracked counters keep their value
    assert torch.equal(model.encoder.conv1.weight, sd["conv1.weight"])


def test_encoder_weights_refuse_wrong_shapes_and_missing_files(tmp_path):
    from export.model import UNetResNet18
    from training.encoder_weights import load_encoder_weights

    sd = _torchvision_like_sd()
    sd["layer4.1.conv2.weight"] = torch.zeros(512, 512, 1, 1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(SystemExit, match=r"shape mismatch: layer4\.1\.conv2\.weight"):
        load_encoder_weights(UNetResNet18(), str(tmp_path / "bad.pth"))
    torch.save({"conv1.weight": sd["conv1.weight"]}, tmp_path / "partial.pth")
    with pytest.raises(SystemExit, match="encoder tensors missing"):
        load_encoder_weights(UNetResNet18(), str(tmp_path / "partial.pth"))
    with pytest.raises(SystemExit, match="no such file"):
        load_encoder_weights(UNetResNet18(), str(tmp_path / "nope.pth"))


def test_imagenet_offline_says_how_to_pass_a_file(monkeypatch):
    import sys
    import urllib.error

    from export.model import UNetResNet18
    from training.encoder_weights import load_encoder_weights

    monkeypatch.setitem(sys.modules, "torchvision", None)  # not installed

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(SystemExit) as exc:
        load_encoder_weights(UNetResNet18(), "imagenet")
    msg = str(exc.value)
    assert "\n" not in msg and "resnet18-f37072fd.pth" in msg and "--encoder-weights PATH" in msg


# ------------------------------------------------------------------------------- item 3: pack + GPU run
@pytest.fixture()
def tiny_pack(tmp_path):
    from training.pack import write_pack

    data = _tiny_smoke(12)
    held = np.flatnonzero(data.real)[::3]
    path = tmp_path / "tiny.tar"
    info = write_pack(data, path, held, source="synthetic test data")
    return path, data, held, info


def test_pack_round_trip(tiny_pack):
    from training.pack import read_pack

    path, data, held, info = tiny_pack
    train, holdout, manifest = read_pack(path)
    assert len(train) + len(holdout) == 12 and holdout.names == [data.names[i] for i in held]
    assert holdout.real.all() and not set(train.names) & set(holdout.names)
    assert np.array_equal(holdout.labels, data.labels[held])  # masks are lossless
    assert np.abs(holdout.images.astype(int) - data.images[held]).mean() < 20  # images: WebP
    assert manifest["size"] == 64 and info["bytes"] == path.stat().st_size


def test_gpu_run_on_cpu_writes_pieces_and_record_and_ships(tiny_pack, tmp_path, monkeypatch):
    """The GPU command with --device cpu and one epoch (without albumentations); then training.ship turns it into the
    bundled model (into a temporary models folder) and Segmenter runs it."""
    from training import ship
    from training.shards import MAX_PIECE, load_pieces

    path = tiny_pack[0]
    out = tmp_path / "gpu"
    argv = ["--pack", str(path), "--out", str(out), "--device", "cpu", "--epochs", "1", "--gas-epochs", "1",
            "--synth-train", "4", "--batch", "2", "--workers", "1", "--amp", "bf16", "--gpu-aug"]
    # a fresh process (DataLoader workers), with albumentations unimportable: a GPU machine with
    # PyTorch alone runs the --gpu-aug command
    run_isolated(f"import sys; sys.modules['albumentations'] = None\n"
                 f"from training import gpu_run; gpu_run.main({argv!r})")
    rec = json.loads((out / "record.json").read_text())
    assert rec["hardware"].endswith("CPU cores") and rec["epochs"] == {"smoke": 1, "gas": 1}
    assert rec["wall_s"] > 0 and rec["images_per_s"] > 0 and rec["heldout_images"] == 2
    assert rec["command"].startswith("python -m training.gpu_run --pack")
    assert all(w["bytes"] <= MAX_PIECE + 100_000 for w in rec["weights"])
    sd = load_pieces(out)
    assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())
    before = (out / "weights-00.safetensors").read_bytes()
    run_isolated(f"from training import gpu_run; gpu_run.main({argv!r})")  # finished: a rerun does nothing
    assert (out / "weights-00.safetensors").read_bytes() == before

    models = tmp_path / "models"
    monkeypatch.setattr(ship, "MODELS", models)
    from training import bundle

    monkeypatch.setattr(bundle, "MODELS", models)  # compare_runs reads the bundled model's place from there
    monkeypatch.setattr(ship, "FIGURE", tmp_path / "fig.png")
    monkeypatch.setattr(ship, "SYNTH_TEST_COUNT", 3)
    monkeypatch.setattr(ship, "NO_LEAK_COUNT", 2)
    # compare_runs scores the run (and the bundled model, none in the temporary folder) on everything but val
    from training import compare_runs

    compare_runs.main([str(out), "--data", str(tmp_path / "no-smoke5k"), "--out", str(tmp_path / "cmp.json")])
    table = json.loads((tmp_path / "cmp.json").read_text())
    assert list(table) == [str(out)] and table[str(out)]["threshold"] is None  # no held-out photos here
    assert table[str(out)]["synthetic_gas_test"]["images"] == 3
    assert 0.0 <= table[str(out)]["synthetic_no_leak_false_alarms"] <= 1.0
    ship.main(["--run", str(out), "--data", str(tmp_path / "no-smoke5k")])
    side = json.loads((models / f"{ship.NAME}.json").read_text())
    stored = models / ship.STORED
    assert side["file"] == stored.name and side["training"]["hardware"] == rec["hardware"]
    assert sorted(p.name for p in models.iterdir()) == [f"{ship.NAME}.fp16.onnx", f"{ship.NAME}.json"]
    from edgeseg import Segmenter
    from edgeseg.runtime.derived import derived_fp32

    seg = Segmenter(derived_fp32(stored), backend="onnxruntime")
    assert seg.segment(np.full((48, 64, 3), 90, np.uint8)).mask.shape == (48, 64)


def test_shards_split_and_refuse_a_missing_piece(tmp_path):
    from training.shards import load_pieces, save_pieces

    sd = {f"t{i}": torch.randn(1000) for i in range(10)}  # 2 kB each in fp16
    pieces = save_pieces(sd, tmp_path, max_bytes=5000)
    assert len(pieces) == 5
    back = load_pieces(tmp_path)
    assert all(torch.equal(back[k], sd[k].half()) for k in sd)
    pieces[-1].unlink()
    with pytest.raises(FileNotFoundError, match="header says 5"):
        load_pieces(tmp_path)


# ------------------------------------------------------------------------------- item 6: weights once
def test_upcast_fp16_model_matches_it(tiny_onnx, tmp_path):
    import onnx

    from edgeseg.runtime.derived import derived_fp32
    from edgeseg.apps.fp16 import convert_fp16, cpu_session, image_like_inputs
    from edgeseg.core.metrics import mask_iou
    from edgeseg.core.model_meta import read_metadata
    from edgeseg.runtime.precision import int8_sibling

    half, _ = convert_fp16(tiny_onnx, tmp_path / "m.fp16.onnx")
    full = derived_fp32(half, cache=tmp_path / "cache")
    assert full.name == "m.onnx" and derived_fp32(half, cache=tmp_path / "cache") == full  # cached
    proto = onnx.load(str(full))
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in proto.graph.initializer)
    assert read_metadata(full)["precision"] == "fp32" and "m.fp16.onnx" in read_metadata(full)["derived_from"]
    x = image_like_inputs(4, (64, 64), seed=3)
    p16 = cpu_session(half).run(["probs"], {"image": x})[0]
    p32 = cpu_session(full).run(["probs"], {"image": x})[0]
    assert mask_iou(p16.argmax(1), p32.argmax(1), 3) >= 0.99 and np.abs(p16 - p32).max() < 2e-3
    # the fp16 file of a derived model is the one it came from (TensorRT builds and the suite's fp16
    # variant use it rather than converting the derived model again)
    from edgeseg.runtime.backends.tensorrt_onnx import _fp16_onnx_for
    from edgeseg.runtime.precision import fp16_sibling

    assert fp16_sibling(full) == half.resolve() and fp16_sibling(half) == half
    assert fp16_sibling(tmp_path / "other.onnx") == tmp_path / "other.fp16.onnx"
    used, note = _fp16_onnx_for(full, read_metadata(full), tmp_path)
    assert used == half.resolve() and "derived from" in note
    assert int8_sibling(full) == tmp_path / "m.int8.onnx" == int8_sibling(half)


def test_bundled_weights_are_stored_once():
    from edgeseg.runtime.segmenter import BUNDLED_MODEL, MODELS_DIR

    if not BUNDLED_MODEL.is_file():
        pytest.skip(f"no bundled model at {BUNDLED_MODEL}")
    onnx_files = sorted(p.name for p in MODELS_DIR.glob("*.onnx"))
    assert onnx_files == ["edgeseg-unet-r18.fp16.onnx", "edgeseg-unet-r18.int8.onnx"]
    assert not list(MODELS_DIR.glob("*.safetensors"))
