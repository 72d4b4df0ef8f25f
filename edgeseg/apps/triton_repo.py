"""Write a standard Triton model repository for an edgeseg model (``edgeseg export triton``).

    REPO/NAME/config.pbtxt
    REPO/NAME/1/model.onnx   (platform onnxruntime_onnx)   or   REPO/NAME/1/model.plan (tensorrt_plan)

``config.pbtxt`` is built as Triton's own ``ModelConfig`` protobuf (``tritonclient.grpc.model_config_pb2``)
and written in its text format, so what Triton parses is what the tests parse: inputs / outputs with
their dims (-1 where dynamic, the batch dimension left out when ``max_batch_size`` > 0),
``dynamic_batching``, ``instance_group``, and edgeseg's metadata (classes, mean / std, input size,
activation, ...) as ``parameters``, where :class:`~edgeseg.runtime.backends.triton_backend.TritonBackend`
reads it back. Run it with NVIDIA's container: ``tritonserver --model-repository=REPO``.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from edgeseg.core.errors import ModelError

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 6: "TYPE_INT32", 7: "TYPE_INT64", 10: "TYPE_FP16"}  # onnx TensorProto


@dataclass
class TensorSpec:
    name: str
    data_type: str  # TYPE_FP32 ...
    dims: list[int]  # with the batch dimension first (-1 where dynamic)


@dataclass
class RepoSpec:
    platform: str
    file_name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    metadata: dict[str, str]
    fixed_batch: int | None  # the model's own batch dimension when it is not dynamic
    batch_limit: int | None  # the largest batch the model file accepts (TensorRT profile max)
    batch_min: int = 1  # the smallest batch it accepts (TensorRT profile min)


def _onnx_spec(path: Path) -> RepoSpec:
    import onnx

    from edgeseg.core.model_meta import metadata_of

    proto = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in proto.graph.initializer}

    def spec(vi: Any) -> TensorSpec:
        t = vi.type.tensor_type
        dtype = _TYPES.get(t.elem_type)
        if dtype is None:
            raise ModelError(f"{path}: tensor {vi.name!r} has ONNX type {t.elem_type}, which this exporter does not map")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in t.shape.dim]
        return TensorSpec(vi.name, dtype, dims)

    inputs = [spec(v) for v in proto.graph.input if v.name not in init]
    outputs = [spec(v) for v in proto.graph.output]
    fixed = inputs[0].dims[0] if inputs and inputs[0].dims and inputs[0].dims[0] > 0 else None
    return RepoSpec("onnxruntime_onnx", "model.onnx", inputs, outputs, metadata_of(proto), fixed, None)


#: TensorRT DataType name -> Triton config type (triton-inference-server/tensorrt_backend src/tensorrt_utils.cc
#: ConvertTrtTypeToConfigDataType; the backend refuses an IO whose config type differs from the engine's)
TRT_TO_TRITON = {"FLOAT": "TYPE_FP32", "HALF": "TYPE_FP16", "INT8": "TYPE_INT8", "UINT8": "TYPE_UINT8",
                 "BF16": "TYPE_BF16", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64", "BOOL": "TYPE_BOOL"}


def _engine_spec(path: Path) -> RepoSpec:
    """From the IO the engine's sidecar recorded from the parsed network (no TensorRT needed here)."""
    from edgeseg.core.model_meta import EngineMismatch, read_sidecar

    try:
        side = read_sidecar(path)
    except EngineMismatch as exc:
        raise ModelError(str(exc)) from exc
    if not side.io:
        raise ModelError(f"{path}'s sidecar has no recorded IO (built before edgeseg recorded it); rebuild it with: "
                         f"edgeseg build {side.onnx_path or '<onnx>'} -o {path}")
    specs: dict[str, list[TensorSpec]] = {"input": [], "output": []}
    for t in side.io:
        dtype = TRT_TO_TRITON.get(str(t["dtype"]))
        if dtype is None:
            raise ModelError(f"{path}: tensor {t['name']!r} is TensorRT {t['dtype']}, which Triton's TensorRT backend "
                             "does not serve; rebuild with --labels none")
        specs[t["mode"]].append(TensorSpec(str(t["name"]), dtype, [int(d) for d in t["shape"]]))
    meta = dict(side.onnx_metadata)
    meta.update({"tensorrt_version": side.tensorrt_version, "gpu_name": side.gpu_name,
                 "compute_capability": side.compute_capability, "precision": side.precision})
    return RepoSpec("tensorrt_plan", "model.plan", specs["input"], specs["output"], meta, None,
                    int(side.batch_profile[2]), int(side.batch_profile[0]))


def check_against_engine(cfg: Any, io: Sequence[dict[str, Any]]) -> list[str]:
    """What Triton's TensorRT backend would refuse in ``cfg`` for an engine with IO ``io`` (a sidecar's).

    Ported from triton-inference-server/tensorrt_backend src/instance_state.cc (ValidateIO: the config
    names only engine inputs / outputs; InitializeExecuteInputBinding / ...OutputBinding: "unexpected
    datatype" unless the types are equal) and src/tensorrt_utils.cc CompareDimsSupported (with
    max_batch_size > 0 the full shape is [-1] + dims; a dim is compared where neither side is -1).
    """
    from tritonclient.grpc import model_config_pb2 as mc

    problems = []
    batching = cfg.max_batch_size > 0
    for mode, items in (("input", cfg.input), ("output", cfg.output)):
        engine = {t["name"]: t for t in io if t["mode"] == mode}
        for item in items:
            t = engine.get(item.name)
            if t is None:
                problems.append(f"{mode} {item.name!r} is not an engine {mode} ({sorted(engine)})")
                continue
            want = TRT_TO_TRITON.get(str(t["dtype"]), "TYPE_INVALID")
            if mc.DataType.Name(item.data_type) != want:
                problems.append(f"unexpected datatype {want} for {mode} {item.name!r}, config says "
                                f"{mc.DataType.Name(item.data_type)}")
            full = ([-1] if batching else []) + list(item.dims)
            model = [int(d) for d in t["shape"]]
            if len(full) != len(model) or any(m != -1 and c != -1 and m != c for m, c in zip(model, full)):
                problems.append(f"{mode} {item.name!r}: the model expects shape {model}, the config {full}")
    return problems


def build_config(spec: RepoSpec, name: str, max_batch: int = 8, instances: int = 1,
                 preferred: Sequence[int] = (), queue_delay_us: int = 500, kind: str = "auto") -> Any:
    """The ``ModelConfig`` protobuf for ``spec`` (see the module docstring)."""
    from tritonclient.grpc import model_config_pb2 as mc

    if spec.batch_min > 1:
        # Triton's TensorRT backend checks each request's shape against the profile's [min, max]
        # (tensorrt_backend src/tensorrt_utils.cc ValidateDimension, as cited in issue #36; not re-read
        # here) and the dynamic batcher sends whatever batch it has formed, one request of 1 image included
        raise ModelError(f"the engine's profile starts at batch {spec.batch_min}: Triton would refuse every request "
                         f"(or formed batch) smaller than that; rebuild it with --min-batch 1")
    if spec.fixed_batch is not None:  # a fixed-batch ONNX: Triton cannot batch it, dims keep the batch
        max_batch = 0
    if spec.batch_limit is not None and max_batch > spec.batch_limit:
        raise ModelError(f"--max-batch {max_batch} is larger than the engine's profile ({spec.batch_limit}); "
                         f"rebuild it with a larger batch or pass --max-batch {spec.batch_limit}")
    bad = [p for p in preferred if p < 1 or (max_batch and p > max_batch)]
    if bad:
        raise ModelError(f"--preferred-batch {','.join(map(str, bad))}: each must be between 1 and --max-batch {max_batch}")
    cfg = mc.ModelConfig(name=name, platform=spec.platform, max_batch_size=max_batch)
    for tensors, field in ((spec.inputs, cfg.input), (spec.outputs, cfg.output)):
        for t in tensors:
            item = field.add()
            item.name = t.name
            item.data_type = mc.DataType.Value(t.data_type)
            item.dims.extend(t.dims[1:] if max_batch > 0 else t.dims)
    if max_batch > 0:
        cfg.dynamic_batching.max_queue_delay_microseconds = int(queue_delay_us)
        cfg.dynamic_batching.preferred_batch_size.extend(int(p) for p in preferred)
    if spec.platform == "tensorrt_plan":
        kind = "gpu"  # a plan runs on the GPU it was built for
    group = cfg.instance_group.add()
    group.count = int(instances)
    group.kind = mc.ModelInstanceGroup.Kind.Value(f"KIND_{kind.upper()}")
    for key, value in spec.metadata.items():
        cfg.parameters[key].string_value = str(value)
    return cfg


def export_repository(model: str | Path, repo: str | Path, name: str = "edgeseg", max_batch: int | None = None,
                      instances: int = 1, preferred: Sequence[int] = (), queue_delay_us: int = 500,
                      kind: str = "auto", overwrite: bool = False) -> Path:
    """Write ``repo/name`` for ``model`` (.onnx or .engine/.plan) and return the ``config.pbtxt`` path.

    ``max_batch`` None: an engine's profile maximum (so ``edgeseg build --max-batch 4`` then ``export triton``
    fits), 8 for an ONNX."""
    from google.protobuf import text_format

    model, repo = Path(model), Path(repo)
    if not NAME_RE.match(name):
        raise ModelError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (Triton's model names)")
    if (max_batch is not None and max_batch < 0) or instances < 1:
        raise ModelError(f"--max-batch must be >= 0 and --instances >= 1 (got {max_batch}, {instances})")
    if kind not in ("auto", "cpu", "gpu"):
        raise ModelError(f"--kind {kind!r}: use auto, cpu or gpu")
    if not model.is_file():
        raise ModelError(f"model not found: {model} (pass an .onnx or a TensorRT .engine)")
    if model.suffix == ".onnx":
        spec = _onnx_spec(model)
    elif model.suffix in (".engine", ".plan"):
        spec = _engine_spec(model)
    else:
        raise ModelError(f"{model}: export triton takes an .onnx or a TensorRT .engine/.plan")
    names = ({t.name for t in spec.inputs}, {t.name for t in spec.outputs})
    if "image" not in names[0] or "probs" not in names[1]:
        raise ModelError(f"{model}: expected input 'image' and output 'probs', found {sorted(names[0])} / "
                         f"{sorted(names[1])}; export with 'edgeseg export onnx'")
    if max_batch is None:
        max_batch = spec.batch_limit if spec.batch_limit is not None else 8
    cfg = build_config(spec, name, max_batch, instances, preferred, queue_delay_us, kind)
    if spec.platform == "tensorrt_plan":
        from edgeseg.core.model_meta import read_sidecar

        bad = check_against_engine(cfg, read_sidecar(model).io)
        if bad:  # never write a repository Triton refuses at load
            raise ModelError(f"{model}: Triton's TensorRT backend would refuse this config ({'; '.join(bad)}); "
                             f"rebuild the engine with edgeseg build")
    target = repo / name
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise ModelError(f"{target} already exists; pass --force to replace it or choose another --name / -o")
    if target.exists():
        shutil.rmtree(target)
    (target / "1").mkdir(parents=True)
    shutil.copyfile(model, target / "1" / spec.file_name)
    config_path = target / "config.pbtxt"
    config_path.write_text(text_format.MessageToString(cfg))
    return config_path


def read_config(path: str | Path) -> Any:
    """Parse a ``config.pbtxt`` with Triton's ``ModelConfig`` protobuf (what the server does)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())
