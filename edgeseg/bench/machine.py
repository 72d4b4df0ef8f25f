"""One line about the machine a benchmark ran on, for report headers (the facts are :mod:`edgeseg.core.host`)."""
from __future__ import annotations

from typing import Any

from edgeseg.core.host import describe_cpu_features


def describe_short(info: dict[str, Any]) -> str:
    """One line for report headers: CPU, cores, RAM, GPU."""
    gpu = ", ".join(f"{g['name']} (driver {g['driver']})" for g in info.get("gpus", [])) or "no NVIDIA GPU"
    feats = info.get("cpu_features")
    flags = f" [{describe_cpu_features(feats)}]" if feats else ""
    return (f"{info['cpu']}{flags} ({info['usable_cores'] or info['logical_cores']} usable cores), "
            f"{info['ram_gb']} GB RAM, {gpu}; {info['os']}; Python {info['python']}")
