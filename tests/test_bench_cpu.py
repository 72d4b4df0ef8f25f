"""`edgeseg bench cpu` on the tiny model: every variant this host runs, both measurements, machine facts."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from edgeseg.bench.cpu import available_variants, markdown, run_cpu_bench
from edgeseg.cli import app


def test_bench_cpu_reports_every_variant_with_flags_and_versions(tiny_onnx, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_onnx.read_bytes())
    (tmp_path / "m.int8.onnx").write_bytes(tiny_onnx.read_bytes())  # stands in for `export int8`'s file
    found, skipped = available_variants(model)
    assert ("onnxruntime", "fp32") in found and ("onnxruntime", "int8") in found
    assert len(found) + len(skipped) == 5
    res = run_cpu_bench(model, threads=1, duration_s=0.15, rounds=2, clip_frames=4)
    rows = {r["variant"]: r for r in res["segment_256"]}
    assert set(rows) == {f"{b} {p}" for b, p in found}
    for r in rows.values():
        assert r["segment_ms"]["median"] > 0 and r["bare_ms"]["median"] > 0 and r["segment_vs_bare"] > 0
    assert rows["onnxruntime fp32"]["bare_vs_ort_fp32_bare"] == 1.0
    v = res["video"]
    assert v["frame_size"] == [720, 1280] and v["frames"] == 4 and v["bare_ort_fp32_fps"] > 0
    for r in v["rows"]:
        assert r["decode_segment_fps"] > 0 and r["detect_fps"] > 0, r.get("detect_error")  # detect ran
    st = v["stage_costs"]  # decode and annotate + encode alone, and the fp32 ceiling they imply
    assert st["frames"] == 4 and st["decode_ms"] > 0 and st["annotate_encode_ms"] > 0
    assert 0 < st["fp32_ceiling_vs_bare"] < 1 and st["cores"] >= 1
    assert "avx2" in res["machine"]["cpu_features"] and "onnxruntime" in res["machine"]["packages"]
    text = markdown(res)
    assert "flags read at run time" in text and "| onnxruntime fp32 |" in text and "1280x720" in text
    assert "can reach at most" in text


def test_bench_cpu_cli_writes_md_and_json(tiny_onnx, tmp_path):
    res = CliRunner().invoke(app, ["bench", "cpu", "--model", str(tiny_onnx), "--threads", "1", "--duration", "0.1",
                                   "--rounds", "1", "--clip-frames", "3", "--no-detect", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "cpu.json").read_text())
    assert data["segment_256"] and (tmp_path / "cpu.md").read_text().startswith("# edgeseg bench cpu")
