"""The ``edgeseg`` command line: convert checkpoints, inspect models, detect, benchmark.

One module per command group; each command parses options, calls a library function and prints.
Heavy imports (torch for export, onnx for inspect) happen inside each command so ``edgeseg
--help`` is instant and the runtime never needs torch. Commands are registered here, in one place,
because their order is the order ``--help`` lists them in.
"""
from __future__ import annotations

import typer

from edgeseg.commands import about, bench, build, detect, doctor, export, inspect, serve, users, verify, watch

app = typer.Typer(
    help="edgeseg: gas-leak / smoke segmentation on edge devices.",
    no_args_is_help=True,
    add_completion=False,
)
export_app = typer.Typer(help="Convert trained checkpoints (needs the \\[export] extra: torch).", no_args_is_help=True)
app.add_typer(export_app, name="export")
bench_app = typer.Typer(
    help="Benchmarks: latency per stage, accuracy (IoU/F1), and every variant side by side (suite).",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")


@app.callback()
def _top(version: bool = typer.Option(False, "--version", callback=about.version_callback, is_eager=True,
                                      help="Print edgeseg's version and the bundled models, then exit")) -> None:
    """edgeseg: gas-leak / smoke segmentation on edge devices. `edgeseg docs` lists the manual."""


app.command("doctor")(doctor.doctor_cmd)
export_app.command("int8")(export.export_int8_cmd)
bench_app.command("cpu")(bench.bench_cpu_cmd)
app.command("watch")(watch.watch_cmd)
app.command("inspect")(inspect.inspect_cmd)
app.command("build")(build.build_cmd)
app.command("verify")(verify.verify_cmd)
app.command("detect")(detect.detect_cmd)
bench_app.command("latency")(bench.bench_latency_cmd)
bench_app.command("accuracy")(bench.bench_accuracy_cmd)
bench_app.command("suite")(bench.bench_suite_cmd)
bench_app.command("int8-configs")(bench.bench_int8_configs_cmd)
export_app.command("triton")(export.export_triton_cmd)
app.command("serve")(serve.serve_cmd)
app.command("docs")(about.docs_cmd)
app.add_typer(users.users_app, name="users")


def _register_plugins() -> None:
    """Commands of other installed packages (the torch-side ``export onnx`` lives in
    ``edgeseg_export``): found by entry point, so this package never imports them by name."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="edgeseg.export_commands"):
        try:
            export_app.command(ep.name)(ep.load())
        except ImportError:  # a broken plugin must not take the whole CLI down
            continue


_register_plugins()


def main() -> None:  # pragma: no cover - console_scripts entry point
    app()
