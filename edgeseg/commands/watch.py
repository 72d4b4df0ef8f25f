"""``edgeseg watch``: the camera gateway."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeseg.commands.common import console, fail


def watch_cmd(
    config: Optional[Path] = typer.Argument(None, help="Gateway config (.yaml / .yml / .toml); settings: `edgeseg docs gateway`"),
    check: bool = typer.Option(False, "--check", help="Validate the config and exit (0: ok; 2: invalid; "
                               "1: valid, but a clips disk is already below clips.min_free_gb)"),
    schema: bool = typer.Option(False, "--schema", help="Print the config's JSON Schema (for editors and CI) and exit"),
    log_level: str = typer.Option("info", "--log-level", help="debug / info / warning / error"),
) -> None:
    """Camera gateway: many cameras, one model, batched inference, events to JSONL / webhook / MQTT,
    /metrics and /healthz. SIGTERM / Ctrl-C stop cleanly (open alarms ended, sinks flushed, exit 0);
    SIGHUP reloads the config (cameras added / removed / changed)."""
    import logging

    from edgeseg.apps.gateway.config import ConfigError, load_config

    if schema:
        import json

        from edgeseg.config.settings import json_schema

        typer.echo(json.dumps(json_schema(), indent=2))
        return
    if config is None:
        fail("give a config file (edgeseg watch gateway.yaml), or --schema")

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(message)s")
    from edgeseg.apps.gateway.preflight import preflight

    try:
        cfg = load_config(config)
        warnings = preflight(cfg)
    except ConfigError as exc:
        fail(f"config: {exc}")
    if check:
        if warnings:  # valid, and it would start, but evidence is at risk from the first sweep (#37)
            for w in warnings:
                console.print(f"{config}: not ok: {w}", markup=False, highlight=False)
            raise typer.Exit(1)
        console.print(f"{config}: ok ({len(cfg.cameras)} camera(s))", markup=False, highlight=False)
        return
    for w in warnings:
        logging.getLogger("edgeseg").warning("%s", w)
    from edgeseg.core.errors import BackendUnavailable, ModelError, OutputError
    from edgeseg.apps.gateway.service import Gateway
    from edgeseg.config.settings import DEFAULT_PAGE_PORT
    from edgeseg.core.native_memory import tune

    tune()  # frames in their own mappings: a service's RSS stays flat for months (#37 point 11)
    try:
        code = Gateway(cfg, default_port=DEFAULT_PAGE_PORT).run()  # the page on by default, on loopback (#35)
    except (ModelError, OutputError, BackendUnavailable, ConfigError) as exc:
        fail(str(exc))
    _exit_now_if_reads_hang(code)
    raise typer.Exit(code)


def _exit_now_if_reads_hang(code: int) -> None:
    """A camera read blocked inside FFmpeg cannot be interrupted; such a daemon thread can abort the
    interpreter's shutdown (SIGABRT). Everything is flushed and closed by now: leave at once."""
    import os
    import sys
    import threading

    if any(t.is_alive() and t.name.startswith("edgeseg-cam-") for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
