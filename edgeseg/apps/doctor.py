"""``edgeseg doctor``: what is installed for each backend, and whether it fits together.

Two halves, kept apart so the checks are tested with stand-in facts on any machine:
- :func:`gather_facts` reads this machine (package versions, ``nvidia-smi``, libcuda's
  ``cuDriverGetVersion``, ONNX Runtime providers, OpenVINO devices); every probe is lazy and a
  failure becomes a fact (``None`` / an error string), never an exception.
- :func:`check` is a pure function of that dict: findings, each with a one-line fix.

Version rules (sources):
- CUDA 13.x needs driver >= 580, CUDA 12.x >= 525 (CUDA Toolkit release notes, "CUDA Toolkit and
  Corresponding Driver Versions" / minor version compatibility). cuda-python 13 (cuda-bindings 13.x)
  and tensorrt-cu13 are built for CUDA 13, cuda-python 12.x and tensorrt-cu12 for CUDA 12.
- JetPack 6 ships TensorRT 8.6.2 (6.0) / 10.3 (6.1, 6.2) with CUDA 12.2 / 12.6 (L4T R36.3 / R36.4.x;
  NVIDIA JetPack archive, developer.nvidia.com/embedded/jetpack-archive). JetPack 5 (L4T R35) is out of
  reach for other reasons than its TensorRT 8.5: its Python is 3.8 (edgeseg needs >= 3.10) and TensorRT
  8.5's Python code uses ``np.bool``, removed in numpy 1.24 (edgeseg needs numpy >= 1.24).
- The CUDA runtime a CUDA layer was built for (``cudaRuntimeGetVersion``; pycuda: ``get_version()``) must
  not be newer than the driver's (``cuDriverGetVersion``) across a major; within a major x86 drivers run it
  under minor version compatibility (docs.nvidia.com/deploy/cuda-compatibility, "Minor Version
  Compatibility": CUDA 12.x >= 525, 13.x >= 580). On a Jetson it must not be newer than JetPack's CUDA
  (cudaErrorInsufficientDriver with cuda-python 12.9 on JetPack 6.1 / 6.2.1): the jetson extra pins 12.2.
- TensorRT >= 10.12 deprecates BuilderFlag.FP16 (11 removed it): ``build --fp16`` builds strongly typed from
  an fp16 ONNX, converted with onnxconverter-common (NVIDIA also documents ModelOpt AutoCast for this).
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.metadata as md
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

CUDA13_MIN_DRIVER = 580
CUDA12_MIN_DRIVER = 525
TRT_DISTS = ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-cu11")
FIX_CU12 = "pip install 'edgeseg[gpu-cu12]'"
FIX_CU13 = "pip install 'edgeseg[gpu-cu13]'"
FIX_JETSON = ("use JetPack's TensorRT: python3 -m venv --system-site-packages .venv && "
              ".venv/bin/pip install 'edgeseg[jetson]'")
#: L4T release (from /etc/nv_tegra_release) -> (JetPack, its CUDA as cudaRuntimeGetVersion numbers it);
#: NVIDIA JetPack archive / release notes: 6.0 = R36.3 (CUDA 12.2), 6.1 = R36.4.0, 6.2 = R36.4.3,
#: 6.2.1 = R36.4.4 (CUDA 12.6); 5.1.x = R35.x (CUDA 11.4). R38 is JetPack 7 (Jetson Thor, Ubuntu 24.04 with
#: Python 3.12, CUDA 13.0), not a JetPack 6.2.1: dusty-nv/jetson-containers jetson_containers/l4t_version.py
#: get_jetpack_version ("38.3.0": "7.1", "38.2.0": "7.0 GA", "38.1.0": "7.0 EA") and get_cuda_version (L4T
#: major >= 38 -> CUDA 13.0; "default to CUDA 13.0 for 24.04 containers on JP7")
L4T_JETPACK = [((38, 3, 0), "7.1", 13000), ((38, 2, 0), "7.0", 13000), ((38, 0, 0), "7.0 EA", 13000),
               ((36, 4, 4), "6.2.1", 12060), ((36, 4, 3), "6.2", 12060), ((36, 4, 0), "6.1", 12060),
               ((36, 3, 0), "6.0", 12020), ((36, 2, 0), "6.0 DP", 12020), ((35, 0, 0), "5.x", 11040)]


def install_kind(package_dir: Path) -> dict[str, str]:
    """How edgeseg was installed, from where its package lives: "checkout" (a source tree: pyproject.toml
    naming edgeseg beside the package, editable or run in place) or "wheel" (site-packages)."""
    root = Path(package_dir).resolve().parent
    project = root / "pyproject.toml"
    if project.is_file() and 'name = "edgeseg"' in project.read_text():
        return {"kind": "checkout", "root": str(root)}
    return {"kind": "wheel", "root": ""}


def pip_fix(extra: str, facts: dict[str, Any]) -> str:
    """The install line for ``extra`` that works for how edgeseg is installed here."""
    inst = facts.get("install") or {}
    if inst.get("kind") == "checkout":
        return f"pip install -e '{inst['root']}[{extra}]'"
    return f"pip install 'edgeseg[{extra}]'"


def parse_l4t(line: Optional[str]) -> dict[str, Any]:
    """``# R36 (release), REVISION: 4.3, ...`` -> L4T 36.4.3, JetPack 6.2, CUDA 12060."""
    import re

    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?", line or "")
    if not m:
        return {}
    ver = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    for floor, jetpack, cuda in L4T_JETPACK:
        if ver >= floor:
            return {"l4t": ".".join(map(str, ver)), "jetpack": jetpack, "jetpack_cuda": cuda}
    return {"l4t": ".".join(map(str, ver)), "jetpack": None, "jetpack_cuda": None}


@dataclass
class Finding:
    level: str  # "ok" | "info" | "warn" | "error"
    topic: str
    message: str
    fix: str = ""


# ----------------------------------------------------------------------------- facts

def _version(dist: str) -> Optional[str]:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _major(version: Optional[str]) -> Optional[int]:
    try:
        return int(str(version).split(".")[0]) if version else None
    except ValueError:
        return None


def _try(fn: Callable[[], Any]) -> tuple[Any, Optional[str]]:
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001 - every failure is a fact to report
        return None, f"{type(exc).__name__}: {exc}"


def _nvidia_smi() -> dict[str, Any]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {}
    out = subprocess.run([exe, "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=20)
    line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    parts = [p.strip() for p in line.split(",")]
    return dict(zip(("gpu_name", "driver_version", "compute_capability"), parts)) if len(parts) == 3 else {}


def _driver_cuda_version() -> Optional[int]:
    """cuDriverGetVersion from libcuda (e.g. 12060 = the driver supports CUDA 12.6); None without a driver."""
    lib = ctypes.CDLL("libcuda.so.1")
    v = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(v)) != 0:
        return None
    return int(v.value)


def _cudart_runtime_version() -> Optional[int]:
    try:
        from cuda.bindings import runtime as rt
    except ImportError:
        from cuda import cudart as rt  # type: ignore[no-redef]
    err, v = rt.cudaRuntimeGetVersion()
    return int(v) if int(err) == 0 else None


def _tensorrt() -> tuple[Optional[str], Optional[str]]:
    mod, err = _try(lambda: importlib.import_module("tensorrt"))
    return (str(getattr(mod, "__version__", "")) or None, None) if mod is not None else (None, err)


def gather_facts() -> dict[str, Any]:
    """What this machine has, as a flat JSON-able dict (missing things are None)."""
    tegra = Path("/etc/nv_tegra_release")
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "jetson": tegra.is_file(),
        "l4t_release": tegra.read_text().splitlines()[0].strip() if tegra.is_file() else None,
        "tensorrt_dists": {d: v for d in TRT_DISTS if (v := _version(d))},
        "cuda_python": _version("cuda-python") or _version("cuda-bindings"),
        "pycuda": _version("pycuda"),
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "onnxconverter_common": _version("onnxconverter-common"),
        "modelopt": _version("nvidia-modelopt"),
        "openvino": _version("openvino"),
    }
    facts["tensorrt"], facts["tensorrt_error"] = _tensorrt()
    smi, facts["nvidia_smi_error"] = _try(_nvidia_smi)
    smi = smi or {}
    facts["gpu_name"] = smi.get("gpu_name")
    facts["compute_capability"] = smi.get("compute_capability")
    facts["driver_version"] = smi.get("driver_version")
    if facts["driver_version"] is None and Path("/proc/driver/nvidia/version").is_file():
        text = Path("/proc/driver/nvidia/version").read_text()
        facts["driver_version"] = next((w for w in text.split() if w[:3].isdigit() and "." in w), None)
    facts["driver_cuda_version"], facts["driver_error"] = _try(_driver_cuda_version)
    facts["cuda_runtime_version"], _ = _try(_cudart_runtime_version) if facts["cuda_python"] else (None, None)
    # always: a broken CUDA layer (wrong cuda-python for the driver) is what makes build and inference fail
    from edgeseg.runtime.cuda_layer import load_cuda_layer

    layer, facts["cuda_layer_error"] = _try(load_cuda_layer)
    facts["cuda_layer"] = getattr(layer, "name", None)
    if layer is not None:
        facts["gpu_name"] = facts["gpu_name"] or layer.device_name()
        facts["compute_capability"] = facts["compute_capability"] or layer.compute_capability()
        facts["sm_count"], _ = _try(layer.sm_count)
        facts["gpu_memory_mib"], _ = _try(layer.total_memory_mib)
        rt, _ = _try(layer.runtime_version)
        facts["cuda_runtime_version"] = rt or facts["cuda_runtime_version"]
    facts.update(parse_l4t(facts["l4t_release"]))
    facts["install"] = install_kind(Path(__file__).resolve().parents[1])  # the edgeseg package folder
    facts["ort_providers"], facts["ort_error"] = _try(
        lambda: list(importlib.import_module("onnxruntime").get_available_providers()))
    if facts["openvino"]:
        facts["openvino_devices"], facts["openvino_error"] = _try(
            lambda: list(importlib.import_module("openvino").Core().available_devices))
    return facts


# ----------------------------------------------------------------------------- checks (pure)

def _cuda_text(v: Optional[int]) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}" if v else "?"


def _driver_major(facts: dict[str, Any]) -> Optional[int]:
    return _major(facts.get("driver_version"))


def _driver_cuda_major(facts: dict[str, Any]) -> Optional[int]:
    v = facts.get("driver_cuda_version")
    if v:
        return int(v) // 1000
    d = _driver_major(facts)
    if d is None:
        return None
    return 13 if d >= CUDA13_MIN_DRIVER else (12 if d >= CUDA12_MIN_DRIVER else 11)


def _driver_text(facts: dict[str, Any]) -> str:
    d = facts.get("driver_version")
    c = facts.get("driver_cuda_version")
    return " ".join(x for x in (d and f"driver {d}", c and f"(CUDA {_cuda_text(c)})") if x) or "this driver"


def _trt_cuda_major(facts: dict[str, Any]) -> Optional[int]:
    dists = facts.get("tensorrt_dists") or {}
    for major in (13, 12, 11):
        if f"tensorrt-cu{major}" in dists:
            return major
    return None


def check(facts: dict[str, Any]) -> list[Finding]:
    """Findings for a facts dict (from :func:`gather_facts` or a stand-in): a pure function."""
    out: list[Finding] = []
    jetson = bool(facts.get("jetson"))
    gpu = facts.get("gpu_name")
    has_driver = bool(facts.get("driver_cuda_version") or facts.get("driver_version"))
    cuda_major = _driver_cuda_major(facts)
    fix_cu12, fix_cu13 = pip_fix("gpu-cu12", facts), pip_fix("gpu-cu13", facts)
    fix_jetson = ("use JetPack's TensorRT: python3 -m venv --system-site-packages .venv && "
                  f".venv/bin/{pip_fix('jetson', facts)}")
    fix_for_driver = fix_jetson if jetson else (fix_cu13 if cuda_major and cuda_major >= 13 else fix_cu12)

    # GPU / driver
    if gpu:
        out.append(Finding("ok", "gpu", f"{gpu} (compute capability {facts.get('compute_capability') or '?'}), "
                                        f"{_driver_text(facts)}"))
    elif has_driver:
        out.append(Finding("warn", "gpu", f"an NVIDIA driver is present ({_driver_text(facts)}) but no GPU was named",
                           "check nvidia-smi / that the GPU is visible to this user or container"))
    else:
        out.append(Finding("info", "gpu", "no NVIDIA GPU driver here: the TensorRT backend cannot run "
                                          "(ONNX Runtime / OpenVINO still do)"))

    # TensorRT
    trt = facts.get("tensorrt")
    dists = facts.get("tensorrt_dists") or {}
    trt_cu = _trt_cuda_major(facts)
    if trt:
        major, minor = (int(x) for x in (trt.split(".") + ["0"])[:2])
        if (major, minor) < (8, 6):
            out.append(Finding("error", "tensorrt", f"TensorRT {trt} is too old (edgeseg needs 8.6+; JetPack 5 "
                                                    "ships 8.5, whose Python code uses np.bool, gone in numpy >= 1.24, "
                                                    "on Python 3.8)", "use JetPack 6 (TensorRT 8.6 / 10.3, Python 3.10)"))
        else:
            out.append(Finding("ok", "tensorrt", f"TensorRT {trt}" + (f" ({', '.join(dists)})" if dists else "")))
        if (major, minor) >= (10, 12) and not facts.get("onnxconverter_common"):
            out.append(Finding("warn", "tensorrt", f"TensorRT {trt} builds fp16 engines from an fp16 ONNX (strongly typed); "
                                                   "onnxconverter-common is missing, so 'edgeseg build --fp16' "
                                                   "needs a ready <model>.fp16.onnx",
                               "pip install 'onnxconverter-common>=1.14'"))
    elif dists or (facts.get("tensorrt_error") and "No module named" not in str(facts.get("tensorrt_error"))):
        out.append(Finding("error", "tensorrt", f"TensorRT is installed ({', '.join(f'{k} {v}' for k, v in dists.items()) or '?'}) "
                                                f"but does not import: {facts.get('tensorrt_error')}",
                           fix_jetson if jetson else f"pip uninstall -y {' '.join(dists) or 'tensorrt'} && {fix_for_driver}"))
    elif has_driver or jetson:
        out.append(Finding("warn", "tensorrt", "TensorRT python package not installed", fix_for_driver))
    else:
        out.append(Finding("info", "tensorrt", "TensorRT not installed (needs an NVIDIA GPU)"))
    if jetson and dists and facts.get("machine") == "aarch64" and any(d != "tensorrt" for d in dists):
        out.append(Finding("warn", "tensorrt", f"pip TensorRT wheels on a Jetson ({', '.join(dists)}): "
                                               "JetPack's own TensorRT is the one built for this board",
                           f"pip uninstall -y {' '.join(d for d in dists if d != 'tensorrt')}; {fix_jetson}"))
    if trt_cu and cuda_major and trt_cu > cuda_major:
        fix = fix_cu12 if cuda_major == 12 else "update the NVIDIA driver"
        out.append(Finding("error", "tensorrt", f"tensorrt-cu{trt_cu} needs a CUDA {trt_cu} driver "
                                                f"(>= {CUDA13_MIN_DRIVER if trt_cu >= 13 else CUDA12_MIN_DRIVER}); "
                                                f"this is {_driver_text(facts)}",
                           f"pip uninstall -y tensorrt-cu{trt_cu} tensorrt-cu{trt_cu}-bindings tensorrt-cu{trt_cu}-libs "
                           f"&& {fix}"))

    # CUDA layer: cuda-python / pycuda
    cp, pc = facts.get("cuda_python"), facts.get("pycuda")
    cp_major = _major(cp)
    if cp:
        rt = facts.get("cuda_runtime_version")
        out.append(Finding("ok", "cuda-python", f"cuda-python {cp}" + (f" (CUDA runtime {_cuda_text(rt)})" if rt else "")))
        if cp_major is not None and cp_major >= 13 and cuda_major is not None and cuda_major < 13:
            d = _driver_major(facts)
            out.append(Finding("error", "cuda-python",
                               f"cuda-python {cp_major} needs driver >= {CUDA13_MIN_DRIVER}; this driver is "
                               f"{d if d is not None else _driver_text(facts)}", fix_jetson if jetson else fix_cu12))
        elif cp_major == 12 and cuda_major is not None and cuda_major < 12:
            out.append(Finding("error", "cuda-python", f"cuda-python 12 needs driver >= {CUDA12_MIN_DRIVER}; this is "
                                                       f"{_driver_text(facts)}", "update the NVIDIA driver"))
        if cp_major and trt_cu and cp_major != trt_cu:
            out.append(Finding("warn", "cuda-python", f"cuda-python {cp_major} with tensorrt-cu{trt_cu}: two CUDA "
                                                      "majors in one process",
                               fix_cu12 if trt_cu == 12 else fix_cu13))
    if pc:
        out.append(Finding("ok", "pycuda", f"pycuda {pc}"))
    if (trt or dists) and not cp and not pc:
        out.append(Finding("error", "cuda", "TensorRT is here but neither cuda-python nor pycuda is installed "
                                            "(the backend needs one for buffers and streams)",
                           fix_for_driver))
    out.extend(_cuda_layer_findings(facts, jetson, fix_for_driver, has_driver or bool(trt or dists)))

    # ONNX Runtime / OpenVINO
    providers = facts.get("ort_providers")
    if providers:
        out.append(Finding("ok", "onnxruntime", f"onnxruntime {facts.get('onnxruntime') or '?'}: {', '.join(providers)}"))
        if gpu and "CUDAExecutionProvider" not in providers and not jetson:
            out.append(Finding("info", "onnxruntime", "ONNX Runtime runs on the CPU only here",
                               "optional: pip install onnxruntime-gpu (replaces onnxruntime)"))
    else:
        out.append(Finding("error", "onnxruntime", f"onnxruntime unusable: {facts.get('ort_error') or 'not installed'}",
                           "pip install 'onnxruntime>=1.17'"))
    if facts.get("openvino"):
        devs = facts.get("openvino_devices")
        out.append(Finding("ok" if devs else "warn", "openvino", f"OpenVINO {facts['openvino']}: "
                           + (", ".join(devs) if devs else f"no devices ({facts.get('openvino_error') or 'none found'})")))
    else:
        out.append(Finding("info", "openvino", "OpenVINO not installed (optional: pip install openvino)"))
    return out


def _cuda_layer_findings(facts: dict[str, Any], jetson: bool, fix: str, wanted: bool) -> list[Finding]:
    """The CUDA layer as loaded (its error when it does not), and its CUDA runtime against the driver's."""
    out: list[Finding] = []
    layer, err = facts.get("cuda_layer"), facts.get("cuda_layer_error")
    rt, drv = facts.get("cuda_runtime_version"), facts.get("driver_cuda_version")
    jp = str(facts.get("jetpack") or "")
    if jetson and jp.startswith("7"):
        out.append(Finding("warn", "jetpack",
                           f"JetPack 7 (L4T {facts.get('l4t')}: Jetson Thor, Ubuntu 24.04 / Python 3.12, CUDA "
                           f"{_cuda_text(facts.get('jetpack_cuda'))}): edgeseg was not checked on it, and the "
                           "'jetson' extra (cuda-python 12.2) has no Python 3.12 wheel and targets CUDA 12",
                           "unverified: JetPack's TensorRT in a --system-site-packages venv with a CUDA 13 "
                           "cuda-python (pip install 'cuda-python>=13,<14') instead of the jetson extra"))
    elif jetson and jp:
        out.append(Finding("ok" if jp.startswith("6") else "error", "jetpack",
                           f"JetPack {jp} (L4T {facts.get('l4t')}, CUDA {_cuda_text(facts.get('jetpack_cuda'))})",
                           "" if jp.startswith("6") else "edgeseg needs JetPack 6 (Python 3.10, numpy >= 1.24)"))
        drv = drv or facts.get("jetpack_cuda")
    if layer:
        out.append(Finding("ok", "cuda", f"CUDA layer {layer} loads" + (f" (CUDA runtime {_cuda_text(rt)})" if rt else "")))
    elif err and wanted:
        out.append(Finding("error", "cuda", f"the CUDA layer does not load: {err}", fix))
    elif err:
        out.append(Finding("info", "cuda", f"no CUDA layer loads here (no NVIDIA driver / GPU), so TensorRT cannot run: "
                                           f"{str(err).split('. Needs', 1)[0]}"))
    if rt and drv and int(rt) > int(drv):
        cross = int(rt) // 1000 > int(drv) // 1000
        if cross or jetson:
            what = "JetPack's CUDA" if jetson else "the driver's CUDA"
            out.append(Finding("error", "cuda", f"the CUDA layer's runtime {_cuda_text(rt)} is newer than {what} "
                                                f"{_cuda_text(drv)} (cudaErrorInsufficientDriver)", fix))
        else:
            out.append(Finding("info", "cuda", f"CUDA runtime {_cuda_text(rt)} on a CUDA {_cuda_text(drv)} driver: runs "
                                               "under minor version compatibility (no PTX JIT of newer code)"))
    return out


def report(facts: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    facts = gather_facts() if facts is None else facts
    findings = check(facts)
    return {"ok": not any(f.level == "error" for f in findings), "facts": facts,
            "findings": [asdict(f) for f in findings]}
