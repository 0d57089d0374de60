"""The `growcut` peer: Slicer's Grow from seeds (FastGrowCut) seeded from clicks (its behaviour with
clicks and a user's mask: test_slicer_seeds.py, shared with the `watershed` peer)."""

from __future__ import annotations

import pytest

try:
    import itk

    HAVE_GROWCUT = hasattr(itk, "FastGrowCut")
except ImportError:
    HAVE_GROWCUT = False

needs_growcut = pytest.mark.skipif(not HAVE_GROWCUT, reason="itk-growcut is not installed (pip install itk-growcut)")


@needs_growcut
def test_registry_name_builds_it():
    from ibisagent.segmenters import build_segmenter

    assert build_segmenter("growcut").name == "growcut"


def test_missing_package_names_the_install_command(monkeypatch):
    import builtins

    from ibisagent.segmenters import growcut

    real_import = builtins.__import__

    def no_itk(name, *args, **kwargs):
        if name == "itk":
            raise ImportError("No module named 'itk'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_itk)
    with pytest.raises(ImportError, match="pip install itk-growcut"):
        growcut.GrowCutSegmenter()
