"""The package line drawn by dependency: what an install puts into site-packages, and who imports whom."""
from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_wheel_adds_no_generic_top_level_names(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("edgeseg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"edgeseg", "edgeseg_export"}, top  # no bare `export` / `training` in site-packages
    assert "edgeseg_export/onnx_export.py" in names and "edgeseg/models/edgeseg-unet-r18.json" in names
    assert {f"edgeseg/apps/gateway/static/{f}" for f in ("index.html", "app.js", "style.css")} <= set(names)  # the status page
    entry_points = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "onnx = edgeseg_export.cli:export_onnx_cmd" in entry_points
    assert "pytorch = edgeseg_export.torch_backend:TorchBackend" in entry_points


def test_edgeseg_never_imports_export_training_or_torch():
    """edgeseg is the bottom layer: export/ and training/ import it, never the reverse."""
    for path in (ROOT / "edgeseg").rglob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in {"export", "edgeseg_export", "training", "torch"}}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_export_imports_only_relative_or_edgeseg():
    """Inside export/ the package refers to itself relatively, so it works as `edgeseg_export` when installed."""
    for path in (ROOT / "export").rglob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in {"export", "training"}}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


RUNTIME_TESTS = ["test_engine_meta.py", "test_binary.py", "test_stages.py", "test_segmenter.py", "test_detect.py", "test_bad_inputs.py", "test_sinks.py", "test_sources.py",
                 "test_annotate.py", "test_postprocess.py", "test_preprocess.py", "test_metrics.py", "test_alarm.py",
                 "test_model_meta.py", "test_files.py", "test_registry.py"]


def test_runtime_tests_pass_with_torch_unimportable():
    """A gateway installs no torch: the runtime's tests must not need it (torch blocked in a subprocess)."""
    code = ("import sys; sys.modules['torch'] = None; import pytest; "
            f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', *{[f'tests/{t}' for t in RUNTIME_TESTS]!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in tail and "error" not in tail, tail
