"""Imports run one way: ``model`` <- ``export`` <- ``device`` <- ``calibration`` (docs/ARCHITECTURE.md, "Layers").

Every ``import`` statement of every module is read (also those inside functions, which run later), and
every module of ``model`` is imported in a fresh interpreter in which ``export``, ``device`` and
``calibration`` cannot be imported.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("model", "export", "device", "calibration")
ALLOWED = {
    "model": {"model"},
    "export": {"model", "export"},
    "device": {"model", "export", "device"},
    "calibration": {"model", "export", "device", "calibration"},
}


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts)


def _imported_packages(path: Path) -> list[tuple[int, str]]:
    """``(line, top-level package)`` of every absolute import of one of :data:`PACKAGES` in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        out += [(node.lineno, n.split(".")[0]) for n in names if n.split(".")[0] in PACKAGES]
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_run_one_way(package: str) -> None:
    bad = [f"{path.relative_to(REPO)}:{line} imports {target}"
           for path in _modules(package) for line, target in _imported_packages(path)
           if target not in ALLOWED[package]]
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])}:\n" + "\n".join(bad)


def test_the_scan_sees_imports_inside_functions(tmp_path) -> None:
    src = tmp_path / "m.py"
    src.write_text("import numpy\n\ndef f():\n    from export.runtime import OnnxRunner\n    import device.align as a\n")
    assert _imported_packages(src) == [(4, "export"), (5, "device")]


def test_every_model_module_imports_without_the_higher_layers() -> None:
    names = [".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__") for p in _modules("model")]
    names = [n for n in names if not n.endswith("__main__")]
    code = ("import sys, importlib\n"
            "for blocked in ('export', 'device', 'calibration'):\n"
            "    sys.modules[blocked] = None  # importing it raises ImportError\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print('ok', len(sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stdout + result.stderr
