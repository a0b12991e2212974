"""What every benchmark reports: the machine it ran on, medians, and a JSON file."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np


def machine(threads: int) -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    try:
        import subprocess

        r = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                           text=True, timeout=10)
        gpu = r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(), "threads": threads,
            "gpu": gpu, "python": platform.python_version()}


def time_ms(fn: Callable[[], object], runs: int, warmup: int = 3) -> list[float]:
    """Wall-clock ms of `runs` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def write_json(path: Path | None, result: dict) -> None:
    if path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
        print(f"wrote {path}")


def summary(samples: list[float]) -> dict:
    return {"median_ms": float(np.median(samples)), "p10_ms": float(np.percentile(samples, 10)),
            "p90_ms": float(np.percentile(samples, 90)), "runs": len(samples)}


def print_targets(checks: dict[str, tuple[float, bool]], unit: str = "", width: int = 52) -> None:
    """One line per target: what was measured against it, and whether it is met."""
    for label, (value, ok) in checks.items():
        print(f"{label:<{width}}{value:>8.2f}{unit}  {'met' if ok else 'NOT met'}")
