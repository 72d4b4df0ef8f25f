"""The table in docs/converter.md: ONNX vs an independent smp forward, per smp option.

Run from the repository root: ``python benchmarks/smp_compat_errors.py`` (needs the [export] extra).
Uses ``tests/smp_reference.py`` (functional smp 0.6 Unet forward over smp's key names), random
weights, conversion by the real ``edgeseg export onnx`` at 256x256, 4 image-like inputs.
"""
import json, sys, tempfile
import numpy as np, torch
from typer.testing import CliRunner
from edgeseg.cli import app
from edgeseg.apps.fp16 import cpu_session, image_like_inputs
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import smp_reference as smp
tmp = Path(tempfile.mkdtemp(prefix="smp_compat_"))
cases = [("default Unet('resnet18') classes=1 (save_pretrained folder)", 1, "pretrained", "nearest", [], "sigmoid"),
 ("decoder_interpolation='bilinear', classes=1 (save_pretrained folder)", 1, "pretrained", "bilinear", [], "sigmoid"),
 ("decoder_interpolation='bicubic', classes=1 (--decoder-interpolation bicubic)", 1, "plain", "bicubic", ["--decoder-interpolation","bicubic"], "sigmoid"),
 ("classes=2, Lightning hyper_parameters bilinear", 2, "lightning", "bilinear", [], "softmax"),
 ("classes=3 (plain state_dict)", 3, "plain", "nearest", [], "softmax"),
 ("classes=3 --activation none (logits)", 3, "plain", "nearest", ["--activation","none"], None)]
for name, n, store, mode, flags, act in cases:
    sd = smp.random_state_dict(n, seed=n, head_scale=8.0 if act is None else 1.0)
    d = tmp / name.split()[0].replace("'", "")
    if store == "pretrained":
        src = smp.save_pretrained(d, sd, smp.smp_config(n, decoder_interpolation=mode))
    elif store == "lightning":
        d.mkdir(exist_ok=True); src = d / "last.ckpt"
        torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "hyper_parameters": {"arch": "Unet", "encoder_name": "resnet18", "decoder_interpolation": mode, "classes": n}}, src)
    else:
        d.mkdir(exist_ok=True); src = d / "w.pt"; torch.save(sd, src)
    out = tmp / f"{n}{mode}{act}.onnx"
    res = CliRunner().invoke(app, ["export", "onnx", str(src), "-o", str(out), "--json", *flags])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout[res.stdout.index("{"):])
    x = image_like_inputs(4, (256, 256), seed=5)
    with torch.no_grad():
        ref = smp.forward(sd, torch.from_numpy(x), mode, act).numpy()
    got = cpu_session(out).run(["probs"], {"image": x})[0]
    print(f"| {name} | {act or 'none'} | {mode} | {np.abs(ref-got).max():.1e} | {rep['max_abs_error']:.1e} | {rep['tolerance_used']:.1e} | max abs output {np.abs(ref).max():.3g}")
    if n == 1 and mode == "bilinear":
        with torch.no_grad():
            wrong = smp.forward(sd, torch.from_numpy(x), "nearest", act).numpy()
        print("   bilinear checkpoint computed with nearest: max prob diff", f"{np.abs(ref-wrong).max():.3f}")
