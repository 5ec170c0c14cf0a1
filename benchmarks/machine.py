"""What a benchmark ran on: CPU model, cores, memory, load. Every RESULTS.md figure names its machine.

Imported by the scripts beside it (`python benchmarks/x.py` puts this folder on sys.path).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def describe() -> str:
    """One line for a table title or a RESULTS.md entry, e.g. 'AMD EPYC, 2 cores, 23 GB, load 1.2'."""
    return f"{cpu()}, {os.cpu_count()} cores, {memory_gb():.0f} GB, load {load_average():.1f}"


__all__ = ["cpu", "describe", "load_average", "memory_gb"]
