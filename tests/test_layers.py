"""edgeseg's layers run one way, and no module grows past what one reader holds in mind.

Why: a runtime module that imports a tool (the benchmark, the engine builder, a converter) drags
the tool's dependencies and failure modes onto every gateway that only wants to segment frames,
and makes the tool impossible to change without re-testing the runtime. The scan is static (ast),
so it also sees imports inside functions, which run only on some paths and are the ones a review
misses.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgeseg"

#: bottom to top; a module may import its own layer and the ones below, never one above.
#: Names are module prefixes: "edgeseg.backends" covers every module of that package.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", (  # facts and formats: no inference, no I/O loops
        "edgeseg.errors", "edgeseg.files", "edgeseg.console", "edgeseg.host", "edgeseg.model_meta",
        "edgeseg.metrics", "edgeseg.onnx_info", "edgeseg.onnx_precision", "edgeseg.declare", "edgeseg.backoff",
    )),
    ("runtime", (  # what a deployed gateway runs: frames in, regions / alarms / files out
        "edgeseg.precision", "edgeseg.derived", "edgeseg.preprocess", "edgeseg.postprocess", "edgeseg.tiling",
        "edgeseg.cuda_layer", "edgeseg.backends", "edgeseg.segmenter", "edgeseg.alarm", "edgeseg.annotate",
        "edgeseg.sources", "edgeseg.sinks", "edgeseg.outdir", "edgeseg.pipeline", "edgeseg.stages",
        "edgeseg.settings", "edgeseg.zones", "edgeseg.stream", "edgeseg.guards", "edgeseg.settings_docs", "edgeseg.settings_ops",
        "edgeseg.evidence",
    )),
    ("apps", (  # what a person runs: detection runs, the camera gateway, serving, building, converting
        "edgeseg.detect", "edgeseg.gateway", "edgeseg.serve", "edgeseg.serve_process", "edgeseg.serve_errors", "edgeseg.triton_repo",
        "edgeseg.doctor", "edgeseg.fp16", "edgeseg.verify",
    )),
    ("bench", ("edgeseg.bench",)),  # measures the apps and the runtime, so it sits above both
    ("top", ("edgeseg.commands", "edgeseg.cli", "edgeseg")),  # the CLI and the package's lazy facade
]

#: the issue tolerates one import that runs back up; there are none today
MAX_BACK_UP = 0
MAX_LINES = 450


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of the longest prefix that names ``module``; -1 when none does.
    The bare package name "edgeseg" names only the package's own ``__init__``."""
    best, best_len = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            hit = module == p or (p != "edgeseg" and module.startswith(p + "."))
            if hit and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def is_module(name: str) -> bool:
    """Whether ``name`` (edgeseg.x.y) is a module or package of the source tree."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def edgeseg_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every edgeseg import in ``path``, top-level or inside a function."""
    pkg = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    return imports_in(path.read_text(), pkg)


def imports_in(source: str, pkg: str) -> list[tuple[int, str]]:
    """:func:`edgeseg_imports` of ``source``, a module of package ``pkg`` (relative imports resolve there)."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "edgeseg"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "edgeseg":
                continue
            # `from edgeseg import segmenter` imports the submodule; `from edgeseg import Segmenter` the package
            subs = [f"{mod}.{a.name}" for a in node.names if is_module(f"{mod}.{a.name}")]
            found += [(node.lineno, m) for m in subs] if len(subs) == len(node.names) else [(node.lineno, mod)]
    return found


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_a_layer():
    unplaced = [module_name(p) for p in modules() if layer_of(module_name(p)) < 0]
    assert not unplaced, f"place these modules in a layer of tests/test_layers.py LAYERS: {unplaced}"


def back_up_imports() -> list[str]:
    """'edgeseg/x.py:12 edgeseg.x (runtime) imports edgeseg.y (apps)' for each import that runs up."""
    bad = []
    for path in modules():
        me = module_name(path)
        mine = layer_of(me)
        for line, target in edgeseg_imports(path):
            theirs = layer_of(target)
            if theirs > mine:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} {me} ({LAYERS[mine][0]}) imports "
                           f"{target} ({LAYERS[theirs][0]})")
    return bad


def test_layers_run_one_way():
    bad = back_up_imports()
    print("\n".join(bad) or "no import runs back up")
    assert len(bad) <= MAX_BACK_UP, "imports that run back up the layers:\n" + "\n".join(bad)


def test_runtime_never_imports_tools():
    """The rule the layers exist for, spelled out: no runtime module reaches a bench, builder or converter."""
    runtime = [i for i, (name, _) in enumerate(LAYERS) if name in ("base", "runtime")]
    tools = ("edgeseg.bench", "edgeseg.fp16", "edgeseg.verify", "edgeseg.commands", "edgeseg.cli")
    bad = [f"{module_name(p)}:{line} imports {t}" for p in modules() if layer_of(module_name(p)) in runtime
           for line, t in edgeseg_imports(p) if any(t == x or t.startswith(x + ".") for x in tools)]
    assert not bad, "\n".join(bad)


def test_scan_sees_function_local_and_relative_imports():
    """The scanner itself: an import inside a function counts like one at the top, a relative one by its target."""
    assert "edgeseg.backends.registry" in [t for _, t in edgeseg_imports(PACKAGE / "segmenter.py")]
    probe = ("import edgeseg.files\n"
             "def f():\n    from edgeseg.bench.stats import summarize\n    from ..detect import run_detect\n"
             "    from edgeseg import bench, errors\n")
    assert [t for _, t in imports_in(probe, "edgeseg.backends")] == [
        "edgeseg.files", "edgeseg.bench.stats", "edgeseg.detect", "edgeseg.bench", "edgeseg.errors"]


def test_no_module_over_450_lines():
    sizes = {str(p.relative_to(PACKAGE.parent)): len(p.read_text().splitlines()) for p in modules()}
    big = {k: v for k, v in sizes.items() if v > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"
