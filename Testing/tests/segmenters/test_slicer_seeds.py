"""The seeds a Slicer user paints (`slicer_seeds`), and what they make the two seeded peers
(`growcut`: Grow from seeds, `watershed`: a marker watershed) do with clicks and a user's mask."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ibisagent.clicks import Click
from ibisagent.metrics import iou
from ibisagent.segmenters import build_segmenter
from ibisagent.segmenters.click_reach import seed_radius
from ibisagent.segmenters.slicer_seeds import BACKGROUND, TARGET, UNKNOWN, band_and_clearance, seed_image

try:
    import itk

    HAVE_GROWCUT = hasattr(itk, "FastGrowCut")
except ImportError:
    HAVE_GROWCUT = False

SEEDED_TOOLS = [
    pytest.param("growcut", marks=pytest.mark.skipif(not HAVE_GROWCUT, reason="itk-growcut is not installed")),
    "watershed",
]


# -- the seed image ----------------------------------------------------------------------------

def test_from_scratch_the_border_is_background_and_clicks_are_disks():
    seeds = seed_image((64, 80), [Click(20, 30, True), Click(60, 30, False)])
    border = np.ones((64, 80), dtype=bool)
    border[1:-1, 1:-1] = False
    assert (seeds[border] == BACKGROUND).all()
    radius = seed_radius((64, 80))
    assert (seeds[30, 20 - radius: 20 + radius + 1] == TARGET).all()
    assert (seeds[30, 60 - radius: 60 + radius + 1] == BACKGROUND).all()
    assert seeds[30, 20 + radius + 1] == UNKNOWN and seeds[10, 40] == UNKNOWN


def test_an_empty_user_mask_is_seeded_as_from_scratch():
    clicks = [Click(20, 30, True)]
    assert np.array_equal(seed_image((64, 64), clicks, np.zeros((64, 64), bool)), seed_image((64, 64), clicks))


def test_continue_seeds_the_core_and_the_far_outside_and_leaves_the_band(disk):
    user = disk((128, 128), 60, size=256)
    band, clearance = band_and_clearance(user)
    assert band == 6 and clearance == pytest.approx(60, abs=0.5)  # a tenth / all of the radius
    seeds = seed_image(user.shape, [], user)
    assert seeds[128, 128 + 52] == TARGET  # 8 px inside the boundary
    assert seeds[128, 128 + 56] == UNKNOWN and seeds[128, 128 + 64] == UNKNOWN  # within the band
    assert seeds[128, 128 + 68] == BACKGROUND and seeds[0, 0] == BACKGROUND
    inside, outside = ndimage.distance_transform_edt(user), ndimage.distance_transform_edt(~user)
    assert (seeds[inside > band] == TARGET).all() and (seeds[outside > band] == BACKGROUND).all()
    assert (seeds[(inside > 0) & (inside <= band) | (outside > 0) & (outside <= band)] == UNKNOWN).all()


def test_the_band_is_at_least_two_seed_radii(disk):
    user = disk((64, 64), 10)  # a tenth of the radius is one pixel
    assert band_and_clearance(user) == (2 * seed_radius(user.shape), pytest.approx(10, abs=0.5))


def test_a_contradicting_click_clears_the_mask_seeds_around_it_only(disk):
    user = disk((128, 128), 60, size=256)
    _, clearance = band_and_clearance(user)
    negative = Click(128, 100, False)
    seeds = seed_image(user.shape, [negative], user)
    assert seeds[100, 128] == BACKGROUND  # the click's own disk
    rows, cols = np.mgrid[:256, :256]
    distance = np.hypot(rows - 100, cols - 128)
    core = ndimage.distance_transform_edt(user) > 6
    assert (seeds[core & (distance > 2) & (distance <= clearance)] == UNKNOWN).all()
    assert (seeds[core & (distance > clearance + 1)] == TARGET).all()

    positive = Click(128, 20, True)  # outside the mask: the background seeds around it go
    seeds = seed_image(user.shape, [positive], user)
    around = np.hypot(rows - 20, cols - 128)
    far_outside = ndimage.distance_transform_edt(~user) > 6
    assert (seeds[far_outside & (around > 2) & (around <= clearance)] == UNKNOWN).all()
    assert (seeds[far_outside & (around > clearance + 1)] == BACKGROUND).all()
    assert (seeds[core] == TARGET).all()  # agreeing seeds are kept


def test_a_later_click_paints_over_an_earlier_one():
    seeds = seed_image((64, 64), [Click(30, 30, True), Click(31, 30, False)])
    assert seeds[30, 31] == BACKGROUND and seeds[30, 29] == TARGET


# -- what the seeds make the peers do ------------------------------------------------------------

def tool_for(name, image):
    tool = build_segmenter(name)
    tool.set_image(image)
    return tool


@pytest.mark.parametrize("name", SEEDED_TOOLS)
def test_one_positive_click_finds_the_disk(name, disk_scene):
    image, truth = disk_scene
    assert iou(tool_for(name, image).predict([Click(60, 70, True)]).mask, truth) >= 0.95


@pytest.mark.parametrize("name", SEEDED_TOOLS)
def test_a_negative_click_keeps_a_second_disk_out(name, disk, grey_rgb):
    target, other = disk((36, 64), 20), disk((96, 64), 16)
    tool = tool_for(name, grey_rgb(np.where(target | other, 190.0, 50.0)))
    both = tool.predict([Click(36, 64, True), Click(96, 64, True)])
    one = tool.predict([Click(36, 64, True), Click(96, 64, False)], both.mask, both.state).mask
    assert both.mask[other].mean() > 0.9 and one[other].mean() < 0.05
    assert iou(one, target) >= 0.95


@pytest.mark.parametrize("name", SEEDED_TOOLS)
def test_continue_keeps_the_core_and_redecides_only_the_band(name, disk_scene, disk):
    image, truth = disk_scene  # the true disk has radius 30
    tool = tool_for(name, image)
    for radius in (27, 18):  # a mask slightly small, and one far too small
        user = disk((64, 64), radius)
        band, _ = band_and_clearance(user)
        mask = tool.predict([], user).mask
        assert mask[ndimage.distance_transform_edt(user) > band].all()
        assert not mask[ndimage.distance_transform_edt(~user) > band].any()
    near = tool.predict([], disk((64, 64), 28)).mask
    assert iou(near, truth) >= 0.95 > iou(disk((64, 64), 28), truth)  # the band found the edge


@pytest.mark.parametrize("name", SEEDED_TOOLS)
def test_a_contradicting_click_changes_the_mask_only_around_it(name, disk, grey_rgb):
    # The user's mask holds the target and a wrong second disk; a negative click on the wrong one
    # removes it and keeps the target; a positive click on a third disk adds it.
    target, wrong, missed = disk((36, 40), 20), disk((96, 40), 12), disk((64, 100), 12)
    tool = tool_for(name, grey_rgb(np.where(target | wrong | missed, 190.0, 50.0)))
    fixed = tool.predict([Click(96, 40, False)], target | wrong)
    assert iou(fixed.mask, target) >= 0.95 and fixed.mask[wrong].mean() < 0.05
    added = tool.predict([Click(96, 40, False), Click(64, 100, True)], fixed.mask, fixed.state).mask
    assert added[missed].mean() > 0.9 and iou(added & ~missed, target) >= 0.95


@pytest.mark.parametrize("name", SEEDED_TOOLS)
def test_every_step_reseeds_from_the_user_mask(name, disk_scene, disk):
    image, _ = disk_scene
    tool = tool_for(name, image)
    user = disk((64, 64), 27)
    first = tool.predict([Click(64, 64, True)], user)
    assert np.array_equal(first.state, user)
    later = tool.predict([Click(64, 64, True), Click(64, 60, True)], first.mask, first.state)
    assert np.array_equal(later.state, user)
    scratch = tool.predict([Click(64, 64, True)])
    assert scratch.state is not None and not scratch.state.any()


@pytest.mark.parametrize("name", SEEDED_TOOLS)
def test_only_negative_clicks_give_an_empty_mask(name, disk_scene):
    prediction = tool_for(name, disk_scene[0]).predict([Click(10, 10, False)])
    assert not prediction.mask.any() and prediction.score == 0.0


@pytest.mark.parametrize("name", SEEDED_TOOLS)
def test_same_clicks_same_mask(name, disk, grey_rgb):
    image = grey_rgb(np.where(disk((50, 60), 25) | disk((95, 90), 15), 170.0, 60.0), noise=20.0, seed=3)
    clicks = [Click(50, 60, True), Click(95, 90, False), Click(70, 75, True)]
    user = disk((55, 60), 22)
    runs = [tool_for(name, image).predict(clicks, user).mask for _ in range(2)]
    assert runs[0].any() and np.array_equal(runs[0], runs[1])
