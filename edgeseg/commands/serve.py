"""``edgeseg serve``: a model behind a real Triton Inference Server (PyTriton)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeseg.commands.common import console, fail, model_or_default


def serve_cmd(
    model: Optional[Path] = typer.Argument(None, help="Model (.onnx or .engine); default: the bundled model"),
    name: str = typer.Option("edgeseg", help="Tensor endpoint name (the image endpoint is NAME_image)"),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, help="HTTP port; gRPC is PORT+1 and metrics PORT+2 unless given"),
    grpc_port: Optional[int] = typer.Option(None, help="gRPC port (default PORT+1)"),
    metrics_port: Optional[int] = typer.Option(None, help="Prometheus metrics port (default PORT+2)"),
    max_batch: int = typer.Option(8, help="Largest batch Triton's dynamic batcher forms on NAME; most images per "
                                          "NAME_image request"),
    instances: int = typer.Option(1, help="Model instances (each with its own runtime session)"),
    preferred_batch: str = typer.Option("", help="Preferred dynamic batch sizes on NAME, e.g. 4,8"),
    queue_delay_us: int = typer.Option(2000, help="How long Triton waits for more requests to batch on NAME (µs)"),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime threads per instance (default: cores / instances)"),
    backend: str = typer.Option("auto", help="Local backend that runs the network: auto | onnxruntime | tensorrt"),
) -> None:
    """Serve a model through a real Triton Inference Server (PyTriton): tensor endpoint NAME for
    Segmenter('triton://HOST:GRPC_PORT/NAME'), image endpoint NAME_image (JPEG/PNG in, mask + regions out;
    one request per execution, an image that does not decode gets a one-line HTTP 400)."""
    import logging

    from edgeseg.core.errors import BackendUnavailable, ModelError
    from edgeseg.apps.serve import ServeOptions, parse_preferred, serve

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    path = model_or_default(model)
    try:
        opts = ServeOptions(name, host, port, grpc_port or port + 1, metrics_port or port + 2, max_batch, instances,
                            parse_preferred(preferred_batch), queue_delay_us, threads, backend)

        def ready(s: dict) -> None:
            console.print(f"serving {s['model']} ({s['backend']}, {s['instances']} instance(s), max batch "
                          f"{s['max_batch']}): gRPC {s['grpc']}, HTTP {s['http']}, metrics {s['metrics']}")
            console.print(f"SDK / gateway: --model {s['sdk_url']}; image endpoint: {s['image_model']}; Ctrl-C stops")

        serve(path, opts, on_ready=ready)
    except (ModelError, BackendUnavailable) as exc:
        fail(str(exc))
