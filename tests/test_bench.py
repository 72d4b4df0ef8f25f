"""Benchmark suite: statistics, latency, machine record, INT8 search, reports, CLI, scripts, examples.

Everything runs for real on a tiny random-init U-Net (64x64) and a few synthetic labelled
images, with sub-second durations, so the whole file takes seconds, not minutes. Checks are on
structure and on the *consistency* of measured figures (positive, ordered percentiles, IoU in
[0, 1]), never on speed, which depends on the machine.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.bench.stats import mask_agreement, summarize, timed_loop
from edgeseg.cli import app
from fakes import DEMO_FLAGS

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
VARIANT_LABELS = ("PyTorch eager fp32", "ONNX Runtime fp32", "ONNX Runtime INT8", "ONNX Runtime fp16",
                  "TensorRT fp16", "TensorRT INT8")


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory) -> tuple[Path, Path]:
    """(ONNX model, the .pt checkpoint it was exported from): the PyTorch variant needs both."""
    torch = pytest.importorskip("torch", reason="the [export] extra (torch) builds the test model")
    from export.model import UNetResNet18
    from export.onnx_export import DEFAULT_MEAN, DEFAULT_STD, build_metadata, export_onnx

    d = tmp_path_factory.mktemp("pair")
    torch.manual_seed(1)
    model = UNetResNet18(classes=3).eval()
    torch.save(model.state_dict(), d / "tiny.pt")
    meta = build_metadata(["background", "gas-smoke", "machine"], "softmax", (64, 64), DEFAULT_MEAN,
                          DEFAULT_STD, "0" * 64, "tiny.pt")
    return export_onnx(model, d / "tiny.onnx", meta, size=(64, 64)), d / "tiny.pt"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from training.synth import write_dataset

    d = tmp_path_factory.mktemp("data")
    write_dataset(d, 5, seed=3, size=(64, 64))
    return d


def _check_stats(s: dict, what: str) -> None:
    """A real latency distribution: positive, min <= mean <= max, ordered percentiles."""
    assert s["count"] > 0, what
    assert 0 < s["min"] <= s["mean"] <= s["max"], (what, s)
    assert s["min"] <= s["median"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"], (what, s)


# ----------------------------------------------------------------------------- statistics
def test_summarize_hand_made_samples():
    s = summarize(list(range(100, 0, -1)))  # 100..1, unordered on purpose
    assert s["count"] == 100 and s["min"] == 1 and s["max"] == 100 and s["mean"] == 50.5
    # linear interpolation between order statistics: value at q is 1 + 99 q
    assert s["median"] == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1)
    assert s["p95"] == pytest.approx(95.05)
    assert s["p99"] == pytest.approx(99.01)
    assert summarize([4.0, 1.0, 7.0])["median"] == 4.0
    assert summarize([2.5])["p99"] == 2.5
    with pytest.raises(ValueError, match="no latency samples"):
        summarize([])


def test_timed_loop_counts_and_limits():
    calls = []
    samples, elapsed = timed_loop(calls.append, duration_s=0.0, warmup=2, min_iters=4)
    assert len(calls) == 6 and len(samples) == 4  # warm-up calls are not timed
    assert all(x >= 0 for x in samples) and elapsed >= 0
    samples, _ = timed_loop(lambda i: None, duration_s=60.0, warmup=0, min_iters=1, max_iters=3)
    assert len(samples) == 3


def test_mask_agreement_hand_made():
    a = np.zeros((4, 4), np.uint8)
    a[:2] = 1
    assert mask_agreement([a], [a.copy()], 3)["mask_iou"] == 1.0
    b = a.copy()
    b[2, :] = 1  # class 1: 8 vs 12 px -> IoU 8/12; class 0: 4 vs 8 px -> 4/8
    r = mask_agreement([a], [b], 3)
    assert r["mask_iou"] == pytest.approx((8 / 12 + 4 / 8) / 2)
    assert r["pixel_agreement"] == pytest.approx(12 / 16)
    with pytest.raises(ValueError):
        mask_agreement([a], [], 3)


# -------------------------------------------------------------------------------- machine
def test_machine_info_records_versions_without_importing_torch():
    code = ("import sys, json; from edgeseg.core.host import machine_info; m = machine_info(); "
            "print(json.dumps({'m': m, 'torch': 'torch' in sys.modules, 'trt': 'tensorrt' in sys.modules}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    cwd=ROOT).stdout)
    m = out["m"]
    assert not out["torch"] and not out["trt"]
    for key in ("cpu", "logical_cores", "ram_gb", "os", "python", "packages", "gpus", "load_average_1_5_15"):
        assert key in m
    assert m["cpu"] and m["logical_cores"] >= 1 and m["ram_gb"] > 0
    assert m["packages"]["numpy"] == np.__version__
    import onnxruntime

    assert m["packages"]["onnxruntime"] == onnxruntime.__version__


# -------------------------------------------------------------------------------- latency
def test_run_latency_per_stage(tiny_onnx):
    from edgeseg.bench.latency import run_latency

    r = run_latency(tiny_onnx, "onnxruntime", batches=(1, 2), duration_s=0.2, warmup=1, threads=1)
    assert r["backend"] == "onnxruntime" and r["input_size"] == [64, 64] and len(r["runs"]) == 2
    for run in r["runs"]:
        assert run["frames"] == run["iterations"] * run["batch"] and run["fps"] > 0
        for stage in ("preprocess", "inference", "postprocess", "end_to_end"):
            _check_stats(run["stages_ms_per_call"][stage], stage)
        # stages happen inside the end-to-end call
        e2e, st = run["stages_ms_per_call"]["end_to_end"], run["stages_ms_per_call"]
        assert st["inference"]["median"] < e2e["max"]
        assert run["gpu_compute_ms"] is None and "no GPU timing" in run["gpu_compute_note"]


def test_run_latency_other_input_size(tiny_onnx):
    from edgeseg.bench.latency import run_latency

    r = run_latency(tiny_onnx, "onnxruntime", batches=(1,), size=(96, 128), duration_s=0.05, warmup=0, threads=1)
    assert r["input_size"] == [96, 128] and r["frame_size"] == [96, 128]


def test_bare_session_baseline(tiny_onnx):
    from edgeseg.bench.latency import bare_ort_latency

    r = bare_ort_latency(tiny_onnx, batch=2, duration_s=0.1, warmup=1, threads=1, return_samples=True)
    _check_stats(r["inference_ms_per_call"], "bare")
    assert r["batch"] == 2 and r["fps"] > 0 and len(r["samples_ms"]) == r["iterations"]


def test_cli_bench_latency_json(tiny_onnx):
    res = runner.invoke(app, ["bench", "latency", "--model", str(tiny_onnx), "--batch", "1,2", "--duration", "0.1",
                              "--warmup", "1", "--threads", "1", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout[res.stdout.index("{"):])
    assert [x["batch"] for x in r["runs"]] == [1, 2]
    assert [x["batch"] for x in r["baseline_bare_onnxruntime"]] == [1, 2]
    assert r["machine"]["python"]
    for run in r["runs"]:
        _check_stats(run["stages_ms_per_call"]["end_to_end"], "cli")


def test_cli_bench_errors_are_one_line(tiny_onnx, tiny_data, tmp_path):
    cases = {
        "model not found": ["bench", "latency", "--model", str(tmp_path / "missing.onnx")],
        "--batch": ["bench", "latency", "--model", str(tiny_onnx), "--batch", "0"],
        "not a folder": ["bench", "accuracy", "--model", str(tiny_onnx), "--data", str(tmp_path / "nope")],
        "img/ and gt/": ["bench", "suite", "--model", str(tiny_onnx), "--data", str(tmp_path)],
        "unknown INT8 config": ["bench", "suite", "--model", str(tiny_onnx), "--data", str(tiny_data),
                                "--int8-configs", "bogus"],
    }
    for expected, args in cases.items():
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and expected in lines[0] and lines[0].startswith("error:"), res.output


def test_cli_bench_accuracy_with_compare(tiny_onnx, tiny_data):
    # a model compared with itself must agree perfectly: checks the agreement plumbing end to end
    res = runner.invoke(app, ["bench", "accuracy", "--model", str(tiny_onnx), "--data", str(tiny_data), "--limit", "3",
                              "--compare", str(tiny_onnx), "--threads", "1", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout[res.stdout.index("{"):])
    s = r["scores"]
    assert s["images"] == 3 and set(s["per_class"]) == {"background", "gas-smoke", "machine"}
    for c in s["per_class"].values():
        for k in ("iou_dataset", "f1_dataset"):
            assert c[k] is None or math.isnan(c[k]) or 0.0 <= c[k] <= 1.0
    (cmp,) = r["compare"].values()
    assert cmp["agreement_vs_reference"]["mask_iou"] == 1.0
    assert cmp["agreement_vs_reference"]["pixel_agreement"] == 1.0


# ----------------------------------------------------------------------------------- suite
@pytest.fixture(scope="module")
def suite_report(tiny_pair, tiny_data, tmp_path_factory) -> tuple[Path, dict]:
    model, ckpt = tiny_pair
    out = tmp_path_factory.mktemp("suite")
    res = runner.invoke(app, [
        "bench", "suite", "--model", str(model), "--data", str(tiny_data), "--checkpoint", str(ckpt),
        "--out", str(out), "--duration", "0.5", "--rounds", "2", "--calib", "2", "--threads", "1",
        "--int8-configs", "qop_u8s8_perchannel,ort_default_qdq", "--search-duration", "0.3", "--json",
    ])
    assert res.exit_code == 0, res.output
    stdout_json = json.loads(res.stdout[res.stdout.index("{"):res.stdout.rindex("}") + 1])
    report = json.loads((out / "report.json").read_text())
    assert stdout_json["variants"] == report["variants"]
    return out, report


def test_suite_markdown_has_a_row_per_variant(suite_report):
    out, report = suite_report
    md = (out / "report.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    for label in VARIANT_LABELS:
        assert any(r.startswith(f"| {label}") for r in rows), label
    header = next(r for r in rows if r.startswith("| Variant | Status"))
    for col in ("Size MB", "mIoU", "gas-smoke IoU", "ms/frame p50", "ms/frame p99", "FPS", "Speed-up vs PyTorch eager"):
        assert col in header
    assert "### Skipped or failed" in md and "TensorRT fp16** (skipped)" in md
    assert "## INT8 quantisation search" in md and "## Machine" in md
    assert "## Report for" not in md  # that header belongs to benchmarks/README.md


def test_suite_json_structure(suite_report):
    _, r = suite_report
    for key in ("machine", "options", "model", "frames", "variants", "int8_search", "baseline_bare_onnxruntime",
                "sdk_overhead", "plots", "speedup_reference"):
        assert key in r, key
    assert r["speedup_reference"] == "pytorch"
    keys = [v["key"] for v in r["variants"]]
    assert keys == ["pytorch", "ort_fp32", "ort_int8", "ort_fp16", "trt_fp16", "trt_int8"]
    s = r["int8_search"]
    assert [c["name"] for c in s["configs"]] == ["qop_u8s8_perchannel", "ort_default_qdq"]
    assert s["verdict"] and isinstance(s["beats_fp32"], bool)
    assert (s["chosen"] is None) == (not s["beats_fp32"])
    for c in s["configs"]:
        if c["status"] == "ok":
            _check_stats(c["latency_ms"], c["name"])
            assert 0.0 <= c["agreement"]["mask_iou"] <= 1.0 and c["speedup_vs_fp32"] > 0
    _check_stats(s["fp32"]["latency_ms"], "search fp32")


def test_suite_figures_are_real_measurements(suite_report):
    _, r = suite_report
    by_key = {v["key"]: v for v in r["variants"]}
    for key in ("pytorch", "ort_fp32", "ort_int8", "ort_fp16"):
        v = by_key[key]
        assert v["status"] == "ok", (key, v["reason"])
        assert v["size_mb"] > 0
        lat = v["latency"]
        assert lat["fps"] > 0 and lat["iterations"] == len(lat["samples_ms_end_to_end"]) > 0
        for stage, s in lat["stages_ms"].items():
            _check_stats(s, f"{key} {stage}")
        assert lat["speedup"] > 0
        acc = v["accuracy"]
        assert "predictions" not in acc
        for k in ("mean_iou_dataset", "mean_iou_per_image"):
            assert acc[k] is None or 0.0 <= acc[k] <= 1.0
        for c in acc["per_class"].values():
            assert c["iou_dataset"] is None or 0.0 <= c["iou_dataset"] <= 1.0
        if key != "ort_fp32":
            assert 0.0 <= v["agreement_vs_fp32"]["mask_iou"] <= 1.0
    assert by_key["pytorch"]["latency"]["speedup"] == pytest.approx(1.0)
    # the PyTorch checkpoint is the network the ONNX was exported from: same masks
    assert by_key["pytorch"]["agreement_vs_fp32"]["pixel_agreement"] > 0.99
    for key in ("trt_fp16", "trt_int8"):
        assert by_key[key]["status"] in ("skipped", "failed", "ok")
        if by_key[key]["status"] != "ok":
            assert by_key[key]["reason"] and by_key[key]["latency"] is None
    base = r["baseline_bare_onnxruntime"]
    _check_stats(base["inference_ms_per_call"], "baseline")
    assert base["fps"] > 0 and math.isfinite(r["sdk_overhead"]["overhead_pct"])


def test_suite_plots(suite_report):
    out, r = suite_report
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert all("matplotlib is not installed" in m for m in r["plots"].values())
        return
    for name in ("latency_distribution.png", "iou_vs_latency.png"):
        p = out / name
        assert p.is_file() and p.stat().st_size > 1000
        assert cv2.imread(str(p)) is not None
        assert f"]({name})" in (out / "report.md").read_text()


def test_plots_skip_cleanly_without_matplotlib(monkeypatch, tmp_path):
    from edgeseg.bench import plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes "import matplotlib" raise ImportError
    msg = plots.latency_distribution({"a": [1.0, 2.0]}, tmp_path / "x.png", "t")
    assert msg == plots.MISSING and "pip install" in msg and not (tmp_path / "x.png").exists()
    assert plots.iou_vs_latency({"a": (1.0, 0.5)}, tmp_path / "y.png", "mIoU", "t") == plots.MISSING


def test_quantize_keeps_metadata_and_runs_in_the_sdk(suite_report, tiny_data):
    out, r = suite_report
    from edgeseg.runtime.segmenter import Segmenter

    int8 = next(v for v in r["variants"] if v["key"] == "ort_int8")
    seg = Segmenter(int8["path"], backend="onnxruntime", threads=1)
    assert seg.info.input_size == (64, 64) and seg.info.metadata["precision"] == "int8"
    assert seg.info.metadata["int8_config"] == int8["details"]["config"]
    img = cv2.imread(str(next((tiny_data / "img").iterdir())))
    assert seg.segment(img).mask.shape == img.shape[:2]


def test_quant_prepare_leaves_no_scratch_in_cwd(tiny_onnx, tmp_path, monkeypatch):
    from edgeseg.bench.quantize import prepare

    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    out, note = prepare(tiny_onnx, tmp_path / "pre.onnx")
    assert out.is_file() and "quant_pre_process" in note and "dynamic H/W" in note
    assert list(work.iterdir()) == []  # ORT's sym_shape_infer_temp.onnx / *.data never land in the cwd


def test_int8_config_names_are_validated():
    from edgeseg.bench.quantize import CONFIGS, get_configs

    assert get_configs(None) == list(CONFIGS)
    with pytest.raises(ValueError, match="unknown INT8 config"):
        get_configs(["nope"])


def test_suite_without_checkpoint_compares_against_ort_fp32(tiny_onnx, tiny_data, tmp_path):
    from edgeseg.bench.suite import SuiteOptions, run_suite

    r = run_suite(SuiteOptions(model=tiny_onnx, data=tiny_data, out=tmp_path, duration_s=0.1, rounds=1, warmup=1,
                               calib=2, limit=2, skip_int8_search=True, threads=1, tensorrt=False))
    by_key = {v["key"]: v for v in r["variants"]}
    assert by_key["pytorch"]["status"] == "skipped" and "--checkpoint" in by_key["pytorch"]["reason"]
    assert by_key["trt_fp16"]["reason"] == "disabled (--no-tensorrt)"
    assert r["speedup_reference"] == "ort_fp32" and r["int8_search"] is None
    assert by_key["ort_int8"]["details"]["selected_by"].startswith("--skip-int8-search")
    assert by_key["ort_fp32"]["latency"]["speedup"] == pytest.approx(1.0)
    assert "Speed-up vs ONNX Runtime fp32" in (tmp_path / "report.md").read_text()


# ------------------------------------------------------------------------ scripts/examples
def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_sdk_overhead_script(tiny_onnx):
    p = _run(["benchmarks/sdk_overhead.py", "--model", str(tiny_onnx), "--frames", "4", "--width", "160",
              "--height", "90", "--duration", "0.2", "--threads", "1", "--json"])
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["video_size"] == [90, 160] and r["network_input"] == [64, 64]
    assert r["sdk_detect"]["frames"] == 4 and r["sdk_detect"]["fps"] > 0 and r["bare_onnxruntime"]["fps"] > 0
    assert math.isfinite(r["overhead_pct"]) and r["outside_network_pct"] < 100
    _check_stats(r["bare_onnxruntime"]["inference_ms"], "bare")
    text = _run(["benchmarks/sdk_overhead.py", "--model", str(tiny_onnx), "--frames", "2", "--width", "160",
                 "--height", "90", "--duration", "0.05", "--threads", "1"])
    assert text.returncode == 0 and "overhead:" in text.stdout
    missing = _run(["benchmarks/sdk_overhead.py", "--model", "does-not-exist.onnx"])
    assert missing.returncode == 2 and "model not found" in missing.stderr


def test_example_sdk_in_15_lines(tiny_onnx, tiny_data):
    src = ROOT / "examples" / "sdk_in_15_lines.py"
    assert len(src.read_text().splitlines()) <= 15
    img = next((tiny_data / "img").iterdir())
    p = _run([str(src), str(img), str(tiny_onnx)])
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("frame 0: ") and " ms)" in p.stdout


def test_example_gateway_loop(tiny_onnx, tmp_path):
    from training.synth import write_clip_video

    clip = tmp_path / "clip.mp4"
    write_clip_video(clip, seed=7, frames=6, size=(64, 96))
    # threshold 0.01, k = n = 1: every frame is a leak, so each camera opens an alarm it must close
    p = _run(["examples/gateway_loop.py", str(clip), str(clip), "--model", str(tiny_onnx),
              "--threshold", "0.01", "--k", "1", "--n", "1", "--min-area", "0", *DEMO_FLAGS])
    assert p.returncode == 0, p.stderr
    events = [json.loads(ln) for ln in p.stdout.splitlines()]
    started = [e for e in events if e["event"] == "camera_started"]
    finished = [e for e in events if e["event"] == "camera_finished"]
    assert {e["camera"] for e in started} == {"cam0", "cam1"}
    assert len(finished) == 2 and all(e["processed"] == 6 and e["reason"] == "source_ended" for e in finished)
    assert events[0]["event"] == "gateway_started" and events[-1]["event"] == "gateway_stopped"
    for cam in ("cam0", "cam1"):
        alarm = [e["event"] for e in events if e.get("camera") == cam and e["event"] in {"start", "update", "end"}]
        assert alarm == ["start"] + ["update"] * 5 + ["end"], (cam, alarm)
    ends = [e for e in events if e["event"] == "end"]
    assert all(e["reason"] == "source_ended" and e["frame"] == 5 for e in ends)
