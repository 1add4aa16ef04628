"""How a number was measured: the machine and the commit, printed beside every benchmark and report."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def commit(where: Path | None = None) -> str:
    """Short git commit of the checkout holding ``where`` (default: this package), or "unknown"."""
    folder = Path(where) if where is not None else Path(__file__).resolve().parent
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True,
                                text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = result.stdout.strip()
    return (f"{sha}+uncommitted changes" if dirty else sha) if sha else "unknown"


def machine() -> str:
    """CPU model, logical CPUs, OS, and the GPU when torch sees one."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text
