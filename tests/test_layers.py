"""edgeseg's layers run one way, and no module grows past what one reader holds in mind.

Why: a runtime module that imports a tool (the benchmark, the engine builder, a converter) drags
the tool's dependencies and failure modes onto every gateway that only wants to segment frames,
and makes the tool impossible to change without re-testing the runtime. The scan is static (ast),
so it also sees imports inside functions, which run only on some paths and are the ones a review
misses.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.import_graph import circles

PACKAGE = Path(__file__).resolve().parents[1] / "edgeseg"

#: bottom to top; a module may import its own layer and the ones below, never one above. Each layer is
#: a subpackage of edgeseg (the tree shows the layers); "edgeseg" names only the package's own
#: ``__init__`` (the lazy facade), which sits on top with the CLI.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("edgeseg.core",)),  # facts and formats: no inference, no I/O loops
    ("runtime", ("edgeseg.runtime",)),  # the model runtime: frames in, labels / regions out
    ("io", ("edgeseg.io",)),  # sources, sinks, evidence
    ("config", ("edgeseg.config",)),  # every setting declared once
    ("streaming", ("edgeseg.streaming",)),  # one stream's zones -> guards -> alarm -> events, the staged loop
    ("apps", ("edgeseg.apps",)),  # what a person runs: detect, the gateway, serving, doctor, converting
    ("bench", ("edgeseg.bench",)),  # measures the apps and the runtime, so it sits above both
    ("top", ("edgeseg.commands", "edgeseg.cli", "edgeseg.moved", "edgeseg")),  # the CLI, old paths, the facade
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
    runtime = [i for i, (name, _) in enumerate(LAYERS) if name in ("core", "runtime", "io", "config", "streaming")]
    tools = ("edgeseg.bench", "edgeseg.apps.fp16", "edgeseg.apps.verify", "edgeseg.commands", "edgeseg.cli")
    bad = [f"{module_name(p)}:{line} imports {t}" for p in modules() if layer_of(module_name(p)) in runtime
           for line, t in edgeseg_imports(p) if any(t == x or t.startswith(x + ".") for x in tools)]
    assert not bad, "\n".join(bad)


def test_scan_sees_function_local_and_relative_imports():
    """The scanner itself: an import inside a function counts like one at the top, a relative one by its target."""
    assert "edgeseg.runtime.backends.registry" in [t for _, t in edgeseg_imports(PACKAGE / "runtime" / "segmenter.py")]
    probe = ("import edgeseg.core.files\n"
             "def f():\n    from edgeseg.bench.stats import summarize\n    from ..segmenter import Segmenter\n"
             "    from edgeseg.core import errors, files\n")
    assert [t for _, t in imports_in(probe, "edgeseg.runtime.backends")] == [
        "edgeseg.core.files", "edgeseg.bench.stats", "edgeseg.runtime.segmenter", "edgeseg.core.errors", "edgeseg.core.files"]


def test_the_tree_is_the_layers():
    """Every subpackage of edgeseg is one layer and every layer one subpackage, and docs/architecture.md's
    layer table names the same folders in the same order."""
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    layered = sorted(x.split(".")[1] for _, prefixes in LAYERS for x in prefixes
                     if x.count(".") == 1 and (PACKAGE / x.split(".")[1] / "__init__.py").is_file())
    assert subpackages == layered, f"subpackages {subpackages} vs layers {layered}"
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "cli.py", "moved.py"))
    assert not loose, f"modules outside a layer's folder: {loose} (fix: move them into the layer they belong to)"
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    documented = re.findall(r"^\| `edgeseg/([a-z_]+)/` \|", page, flags=re.M)
    in_order = [x.split(".")[1] for _, prefixes in LAYERS for x in prefixes if x.count(".") == 1
                and (PACKAGE / x.split(".")[1] / "__init__.py").is_file()]
    assert documented == in_order, f"docs/architecture.md layer table {documented} vs tests/test_layers.py {in_order}"


def test_no_module_over_450_lines():
    sizes = {str(p.relative_to(PACKAGE.parent)): len(p.read_text().splitlines()) for p in modules()}
    big = {k: v for k, v in sizes.items() if v > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_no_import_circles():
    """No two modules reach each other through imports (function-local ones included), in the runtime
    package and across the repository's Python packages."""
    found = circles(PACKAGE.parent, ["edgeseg", "export", "training", "benchmarks", "examples"])
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)
