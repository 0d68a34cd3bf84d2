"""The machine a benchmark ran on: its CPU, cores and package versions, and the results file's name for it."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> dict:
    """CPU model, cores and package versions."""
    from faceattr.runs import package_versions

    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform(), "versions": package_versions()}


def machine_slug(info: dict) -> str:
    """A results file's name for this machine: its CPU model and core count, e.g. amd-epyc-2cores."""
    return "".join(c if c.isalnum() else "-" for c in info["cpu"].lower()).strip("-")[:40] + f"-{info['cores']}cores"
