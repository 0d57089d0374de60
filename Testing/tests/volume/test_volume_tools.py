"""The 3D click tools (`VOLUME_SEGMENTERS`) on a synthetic volume with a known target: what a
click may change (locality), that the same clicks give the same mask (exact undo), the box start,
anisotropic voxels, and the seeds of the Grow from seeds peer."""

import numpy as np
import pytest

from volume_doubles import blob_volume

from ibisagent import cvpr25
from ibisagent.metrics import dice
from ibisagent.segmenters import DEFAULT_VOLUME_SEGMENTER, build_volume_segmenter
from ibisagent.segmenters.slicer_seeds import BACKGROUND, TARGET, UNKNOWN
from ibisagent.segmenters.volume_base import BoxPrompt, VoxelClick


@pytest.fixture(scope="module")
def blob():
    return blob_volume(slices=21, rows=64, cols=72)


def _cut(truth):
    """The target with its upper half (along i) missing: the user's rough start."""
    start = truth.copy()
    start[:, :, truth.shape[2] // 2:] = False
    return start


def _chain(tool, volume, spacing, truth, start=None, box=None, clicks=5):
    """The protocol's clicks, returning every prediction (mask, state) in order."""
    tool.set_volume(volume, spacing)
    prediction = tool.predict([], prior_mask=start, box=box)
    made, placed = [prediction], []
    for _ in range(clicks):
        click = cvpr25.next_click(prediction.mask, truth)
        if click is None:
            break
        placed.append(click)
        prediction = tool.predict(placed, prior_mask=prediction.mask, prior_state=prediction.state, box=box)
        made.append(prediction)
    return made, placed


def test_the_default_is_the_classical_tool_and_names_are_checked():
    assert DEFAULT_VOLUME_SEGMENTER == "graphcut3d"
    with pytest.raises(ValueError, match="Unknown 3D segmentation tool"):
        build_volume_segmenter("nnunet")
    with pytest.raises(ValueError, match="does not take that option"):
        build_volume_segmenter("graphcut3d", colour=3)
    tool = build_volume_segmenter("graphcut3d")
    with pytest.raises(RuntimeError, match="set_volume"):
        tool.predict([VoxelClick(0, 0, 0, True)])


def test_the_engine_builds_3d_tools_from_names_and_options_or_around_a_built_2d_tool():
    from ibisagent.cli import build_parser
    from ibisagent.engine import build_volume_tool, volume_tool_from_args
    from ibisagent.segmenters import build_segmenter

    assert build_volume_tool().name == DEFAULT_VOLUME_SEGMENTER
    assert build_volume_tool("graphcut3d", {"smoothness": 4.0}).smoothness == 4.0
    two_d = build_segmenter("graphcut")
    for name in ("slice2d", "propagation3d"):
        assert build_volume_tool(name, slice_tool=two_d).tool is two_d  # the built one, used as it is
        built = build_volume_tool(name, {"smoothness": 5.0}, "graphcut").tool  # options go to the named 2D tool
        assert built is not two_d and built.smoothness == 5.0
        with pytest.raises(ValueError, match="already built"):
            build_volume_tool(name, {"smoothness": 5.0}, two_d)
    base = ["continue", "--image", "v.nii.gz", "--request", "x", "--out", "o.nii.gz"]
    args = build_parser().parse_args(base + ["--segmenter3d", "slice2d", "--segmenter", "watershed"])
    assert volume_tool_from_args(args).tool.name == "watershed"
    args = build_parser().parse_args(base + ["--tool-option", "smoothness=2"])
    assert volume_tool_from_args(args).smoothness == 2.0


def test_a_click_changes_only_what_it_reaches_and_the_same_clicks_give_the_same_mask(blob):
    grey, truth = blob
    start = _cut(truth)
    tool = build_volume_segmenter("graphcut3d")
    made, placed = _chain(tool, grey, (1.0, 1.0, 1.0), truth, start=start, clicks=3)
    assert np.array_equal(made[0].mask, start)  # no click: the user's mask as it is
    for before, after in zip(made, made[1:]):
        (k0, k1), (j0, j1), (i0, i1) = after.changed
        outside = np.ones(truth.shape, bool)
        outside[k0:k1, j0:j1, i0:i1] = False
        assert np.array_equal(after.mask[outside], start[outside])  # beyond its window, the start is kept
    assert dice(made[-1].mask, truth) > dice(start, truth) + 0.1
    # Undo: going back to the state after the first click and clicking again gives the same masks.
    again = tool.predict(placed[:2], prior_mask=made[1].mask, prior_state=made[1].state)
    assert np.array_equal(again.mask, made[2].mask)
    assert np.array_equal(tool.predict(placed[:2], prior_mask=made[1].mask, prior_state=made[1].state).mask, again.mask)


def test_the_box_start_finds_the_target_and_clicks_improve_it(blob):
    grey, truth = blob
    box = cvpr25.box_of(truth)
    tool = build_volume_segmenter("graphcut3d")
    made, _ = _chain(tool, grey, (1.0, 1.0, 1.0), truth, box=box, clicks=3)
    assert dice(made[0].mask, truth) > 0.85
    assert not made[0].mask[: box.k0].any() and not made[0].mask[box.k1 + 1:].any()
    assert dice(made[-1].mask, truth) >= dice(made[0].mask, truth) - 0.01
    with pytest.raises(ValueError, match="does not fit"):
        tool.predict([], box=BoxPrompt(0, 99, 5, 1, 2, 1, 2))


def test_anisotropic_voxels_keep_distances_in_millimetres(blob):
    grey, truth = blob
    thick = grey[::3], truth[::3]  # 3 mm slices of 1 mm pixels
    tool = build_volume_segmenter("graphcut3d")
    made, placed = _chain(tool, thick[0], (3.0, 1.0, 1.0), thick[1], start=_cut(thick[1]), clicks=2)
    assert dice(made[-1].mask, thick[1]) > dice(made[0].mask, thick[1])
    first = placed[0]
    (k0, k1), _, _ = made[1].changed
    assert k1 - k0 < thick[1].shape[0] + 1 and k0 <= first.k < k1


def test_grow_from_seeds_paints_as_a_slicer_user(blob):
    pytest.importorskip("itk", reason="growcut3d needs the 'growcut' extra")
    from ibisagent.segmenters.volume_growcut import seed_volume

    grey, truth = blob
    box = cvpr25.box_of(truth)
    seeds = seed_volume(truth.shape, [], (1, 1, 1), box=box)
    assert (seeds[: box.k0] == BACKGROUND).all() and (seeds[box.k1 + 1:] == BACKGROUND).all()
    assert (seeds[box.k_mid, box.j0: box.j1 + 1, box.i0: box.i1 + 1] == UNKNOWN).all()
    assert seeds[box.k_mid, 0, 0] == BACKGROUND and not (seeds == TARGET).any()
    seeds = seed_volume(truth.shape, [VoxelClick(10, 30, 30, False)], (1, 1, 1), user_mask=truth)
    assert seeds[10, 30, 30] == BACKGROUND and (seeds[10, 28:33, 30] == BACKGROUND).all()  # a 2-voxel ball
    from scipy import ndimage

    core = ndimage.distance_transform_edt(truth) > 2
    assert (seeds[core & (seeds != BACKGROUND)] == TARGET).all()
    tool = build_volume_segmenter("growcut3d")
    made, _ = _chain(tool, grey, (1.0, 1.0, 1.0), truth, box=box, clicks=2)
    assert not made[0].mask.any()  # the box alone paints no target seed
    assert dice(made[-1].mask, truth) > 0.8


def test_propagation_edits_the_clicked_slice_and_carries_it(blob):
    grey, truth = blob
    start = _cut(truth)
    tool = build_volume_segmenter("propagation3d")
    made, placed = _chain(tool, grey, (1.0, 1.0, 1.0), truth, start=start, clicks=2)
    edited = {c.k for c in placed}
    assert any(not np.array_equal(made[-1].mask[k], start[k]) for k in edited)
    assert dice(made[-1].mask, truth) > dice(start, truth)
    assert np.array_equal(tool.predict(placed, prior_mask=start).mask, made[-1].mask)  # from the start alone


def test_a_first_click_from_nothing_finds_the_object_without_flooding(blob):
    grey, truth = blob
    tool = build_volume_segmenter("graphcut3d")
    tool.set_volume(grey, (1.0, 1.0, 1.0))
    first = cvpr25.next_click(np.zeros_like(truth), truth)
    made = tool.predict([first])
    assert dice(made.mask, truth) > 0.7 and made.mask.sum() < 2 * truth.sum()
    again = tool.predict([first])
    assert np.array_equal(again.mask, made.mask)



def _ribbon():
    """(grey uint8, bool truth) [24, 48, 48]: a curved ribbon 5 voxels thick (a shell, as the
    cortex is) brighter than the core it wraps and the background around it."""
    kk, jj, ii = np.indices((24, 48, 48))
    radius = np.sqrt(4 * (kk - 12) ** 2 + (jj - 24) ** 2 + (ii - 24) ** 2)
    truth = (radius >= 14) & (radius < 19)
    noise = np.random.default_rng(0).normal(60, 12, truth.shape)
    return np.clip(noise + 90 * truth + 40 * (radius < 14), 0, 255).astype(np.uint8), truth


@pytest.mark.parametrize("grow", [-2, 2])
def test_from_a_mask_a_click_changes_it_only_on_its_own_side(grow):
    """From an eroded start the clicks are positive and nothing the user marked is removed;
    from a dilated one they are negative and nothing the user left out is added: a click of one
    sign is no evidence against the user's other voxels (on this thin ribbon the first positive
    click used to shave the start elsewhere)."""
    from scipy import ndimage

    grey, truth = _ribbon()
    start = ndimage.binary_erosion(truth, iterations=2) if grow < 0 else ndimage.binary_dilation(truth, iterations=2)
    made, placed = _chain(build_volume_segmenter("graphcut3d"), grey, (1.0, 1.0, 1.0), truth, start=start, clicks=3)
    assert placed and all(click.positive == (grow < 0) for click in placed)
    for prediction in made:
        assert not (start & ~prediction.mask).any() if grow < 0 else not (prediction.mask & ~start).any()
    assert dice(made[-1].mask, truth) > dice(start, truth)
