"""benchmarks/bn_precision.py runs, and its per-layer table shows the precise batch norm at the plain layout's level."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bn_precision.py"
LINE = re.compile(r"^\s+(batch norm \(train\), [^ ].*?)\s{2,}(plain|channels_last, precise bn|channels_last)\s+out (\S+)\s+dx (\S+)")


def test_ops_table_has_every_layout_and_the_precise_layer_is_as_precise_as_plain():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    errors: dict[str, dict[str, tuple[float, float]]] = {}
    for line in run.stdout.splitlines():
        match = LINE.match(line)
        if match:
            errors.setdefault(match[1], {})[match[2]] = (float(match[3]), float(match[4]))
    assert len(errors) == 3, run.stdout  # unit variance, mean / std 30, mean / std 300
    for op, by_layout in errors.items():
        assert set(by_layout) == {"plain", "channels_last", "channels_last, precise bn"}, (op, by_layout)
        for plain, precise in zip(by_layout["plain"], by_layout["channels_last, precise bn"]):
            assert precise <= max(4 * plain, 1e-6), (op, by_layout)
