"""The client side imports on Python 3.9 (Slicer's Python) with only the standard library and
numpy, and never pulls in the server, FastAPI or torch."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import pytest

SOURCE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "IBISAgentSlicer")
CLIENT_MODULES = ["ibisagent.protocol", "ibisagent.errors", "ibisagent.mask_codec", "ibisagent.image_codec",
                  "ibisagent.client", "ibisagent.engine"]
PROBE = (
    "import sys, importlib\n"
    f"for name in {CLIENT_MODULES!r}: importlib.import_module(name)\n"
    "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
    "('fastapi', 'starlette', 'pydantic', 'uvicorn', 'torch', 'PIL', 'scipy', 'SimpleITK'))\n"
    "assert not heavy and 'ibisagent.server' not in sys.modules, heavy\n"
    "print('ok', sys.version_info[:2])\n"
)


def _python39():
    """A working Python 3.9: pyenv's copy or one on PATH (a pyenv shim may exist yet not run)."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python")))
    candidates += [p for p in [shutil.which("python3.9")] if p]
    for candidate in candidates:
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


def test_client_imports_without_heavy_packages():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=SOURCE))
    assert done.returncode == 0, done.stderr


def test_client_imports_on_python_3_9(tmp_path):
    python = _python39()
    if python is None:
        pytest.skip("no Python 3.9 interpreter on this machine")
    has_numpy = subprocess.run([python, "-c", "import numpy"], capture_output=True).returncode == 0
    path = [SOURCE]
    if not has_numpy:  # a stub is enough to prove the modules' own syntax and imports are 3.9-clean
        (tmp_path / "numpy.py").write_text("ndarray = object\n")
        path.insert(0, str(tmp_path))
    done = subprocess.run([python, "-c", PROBE], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(path)))
    assert done.returncode == 0, done.stderr
    assert "ok (3, 9)" in done.stdout
