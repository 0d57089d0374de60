"""The `growcut` peer: Slicer's Grow from seeds (FastGrowCut) seeded from clicks."""

from __future__ import annotations

import numpy as np
import pytest

from ibisagent.clicks import Click
from ibisagent.metrics import iou


try:
    import itk

    HAVE_GROWCUT = hasattr(itk, "FastGrowCut")
except ImportError:
    HAVE_GROWCUT = False

needs_growcut = pytest.mark.skipif(not HAVE_GROWCUT, reason="itk-growcut is not installed (pip install itk-growcut)")


@pytest.fixture
def tool(disk_scene):
    from ibisagent.segmenters.growcut import GrowCutSegmenter

    segmenter = GrowCutSegmenter()
    segmenter.set_image(disk_scene[0])
    return segmenter


@needs_growcut
def test_one_positive_click_grows_to_the_disk(disk_scene, tool):
    _, truth = disk_scene
    assert iou(tool.predict([Click(60, 70, True)]).mask, truth) >= 0.9


@needs_growcut
def test_registry_name_builds_it():
    from ibisagent.segmenters import build_segmenter

    assert build_segmenter("growcut").name == "growcut"


@needs_growcut
def test_negative_click_keeps_a_second_disk_out(disk, grey_rgb):
    from ibisagent.segmenters.growcut import GrowCutSegmenter

    target, other = disk((36, 64), 20), disk((96, 64), 16)
    tool = GrowCutSegmenter()
    tool.set_image(grey_rgb(np.where(target | other, 190.0, 50.0)))
    both = tool.predict([Click(36, 64, True), Click(96, 64, True)])
    one = tool.predict([Click(36, 64, True), Click(96, 64, False)], both.mask, both.state).mask
    assert both.mask[other].mean() > 0.9 and one[other].mean() < 0.05
    assert iou(one, target) >= 0.9


@needs_growcut
def test_user_mask_seeds_are_kept_as_state(disk_scene, tool, disk):
    _, truth = disk_scene
    user = disk((64, 64), 18)
    first = tool.predict([], user)
    assert iou(first.mask, truth) >= 0.9, "the eroded user mask alone should grow to the disk"
    assert first.state is not None and first.state.any()
    later = tool.predict([Click(64, 64, True)], first.mask, first.state)
    assert np.array_equal(later.state, first.state)


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
