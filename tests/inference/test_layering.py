"""The inference core is a lower layer: it never imports train/, evaluate/ or the commands."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import mfrn.inference

FORBIDDEN = ("mfrn.train", "mfrn.evaluate", "mfrn.cli", "mfrn.detect", "mfrn.demo", "mfrn.serve", "mfrn.config")
# the low-level modules the core stands on must not reach up either
FOUNDATIONS = ("mfrn.checkpoint", "mfrn.weights", "mfrn.io_utils", "mfrn.config_schema")


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """Every module an ``import`` / ``from ... import`` names in a file, lazy imports included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _core_files() -> list[tuple[Path, str]]:
    root = Path(mfrn.inference.__file__).parent
    files = [(root / "__init__.py", "mfrn.inference")]
    for info in pkgutil.walk_packages([str(root)], prefix="mfrn.inference."):
        module_path = root / (info.name.split(".", 2)[2].replace(".", "/") + ".py")
        files.append((module_path, info.name.rsplit(".", 1)[0]))
    src = root.parent
    files += [(src / (name.split(".", 1)[1] + ".py"), "mfrn") for name in FOUNDATIONS]
    return files


def test_the_inference_core_imports_nothing_from_higher_layers():
    files = _core_files()
    assert len(files) >= 12, [str(f) for f, _ in files]  # the package's modules and its foundations were found
    offences = [f"{path.relative_to(path.parents[2])}:{line}: imports {name}"
                for path, package in files for line, name in _imports(path, package) if _forbidden(name)]
    assert not offences, "\n".join(offences)


def test_running_a_detector_loads_no_higher_layer(tiny_checkpoint, astronaut, tmp_path):
    """At run time too: load a checkpoint, score an image and a video, write the results: no module of
    train/, evaluate/ or the commands ends up in ``sys.modules``."""
    import numpy as np

    image = tmp_path / "face.npy"
    np.save(image, astronaut)
    script = f"""
import sys, warnings
import numpy as np
from mfrn.inference import Detector
from mfrn.inference.batching import score_media
from mfrn.inference.overlays import write_overlay
from mfrn.inference.writers import run_header, write_results
warnings.simplefilter("ignore")
detector = Detector.from_checkpoint({str(tiny_checkpoint)!r}, device="cpu")
result = detector(np.load({str(image)!r}))
assert result.ok and not result.no_face, result
write_results({str(tmp_path)!r}, run_header(detector, {str(tiny_checkpoint)!r}), [result.to_json()])
loaded = sorted(m for m in sys.modules if m.split(".")[:2] in
                [["mfrn", "train"], ["mfrn", "evaluate"], ["mfrn", "cli"], ["mfrn", "detect"], ["mfrn", "demo"],
                 ["mfrn", "config"]])
print("LOADED", loaded)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "LOADED []" in done.stdout, done.stdout
