"""The ``scene`` fixture: a fresh real MRML scene (PyPI slicer-core) for each test; see
`slicer_scene` for what it sets up and the helpers the tests share."""

from __future__ import annotations

import importlib.util

import pytest


def _has_slicer_core() -> bool:
    if importlib.util.find_spec("slicer") is None:
        return False
    import slicer

    return hasattr(slicer, "vtkMRMLScene")


if not _has_slicer_core():
    # Skip the whole folder, and say why in the summary.
    collect_ignore_glob = ["test_*.py"]

    def pytest_report_header(config):
        return "Slicer adapter tests skipped: PyPI slicer-core (real MRML) is not installed."
else:
    from slicer_scene import install_scene, uninstall_scene


@pytest.fixture
def scene():
    """A fresh MRML scene installed as slicer.mrmlScene, with logics and the three slice views."""
    mrml, previous = install_scene()
    yield mrml
    uninstall_scene(mrml, previous)


@pytest.fixture
def server():
    """A real agent server on 127.0.0.1 with the sitk tool; tests script its policy."""
    pytest.importorskip("uvicorn", reason="the agent server needs the 'server' extra (fastapi, uvicorn)")
    from slicer_server import Server

    from ibisagent.segmenters import build_segmenter

    running = Server(build_segmenter("graphcut")).start()
    yield running
    running.stop()
