"""What every benchmark prints about the machine it ran on (imported by the scripts here)."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def describe(dists: Sequence[str], extra: str = "") -> list[str]:
    """Two lines: CPU, cores, load (and ``extra``, e.g. the device); Python and versions."""
    versions = []
    for dist in ("taskloop", *dists):
        try:
            versions.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        f"machine: {cpu_name()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.machine()}; load average {load}" + (f"; {extra}" if extra else ""),
        f"python {platform.python_version()} ({platform.python_implementation()}); "
        + ", ".join(versions),
    ]
