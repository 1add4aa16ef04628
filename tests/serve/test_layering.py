"""The server sits on top: FastAPI/uvicorn stay out of the core and the commands, the page ships with the
package, and mfrn.serve reaches the model only through the inference core."""

from __future__ import annotations

import ast
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import mfrn
import pytest

PACKAGE = Path(mfrn.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_core_and_the_commands_do_not_import_the_web_stack():
    code = ("import sys, mfrn.inference, mfrn.detect, mfrn.cli, mfrn.serve.service, mfrn.serve.analysis; "
            "mfrn.cli.build_parser(); "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'python_multipart', 'mfrn.serve.app') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_only_the_command_line_imports_the_server():
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "serve":
            continue
        leaked = {name for name in _imports(path) if name.startswith("mfrn.serve")}
        assert not leaked or relative.as_posix() == "cli.py", f"{relative} imports {leaked}"


def test_the_server_uses_the_inference_core_not_training_or_evaluation():
    for path in (PACKAGE / "serve").rglob("*.py"):
        used = {name for name in _imports(path) if name.startswith("mfrn.")}
        wrong = {name for name in used if name.startswith(("mfrn.train", "mfrn.evaluate", "mfrn.detect", "mfrn.demo"))}
        assert not wrong, f"{path.name} imports {wrong}"


def test_the_page_ships_as_package_data(request):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    settings = tomllib.loads((request.config.rootpath / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = settings["tool"]["setuptools"]["package-data"]["mfrn.serve"]
    static = PACKAGE / "serve" / "static"
    files = sorted(p.relative_to(static.parent).as_posix() for p in static.rglob("*") if p.is_file())
    assert {"static/index.html", "static/app.js", "static/app.css", "static/docs.html"} <= set(files)
    unshipped = [f for f in files if not any(fnmatch(f, pattern) for pattern in patterns)]
    assert unshipped == [], f"not in [tool.setuptools.package-data]: {unshipped}"
    assert "serve" in settings["project"]["optional-dependencies"]
