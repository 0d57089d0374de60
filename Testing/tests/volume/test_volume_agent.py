"""Where the agent looks in a volume, and what the weight-free agent then does there: synthetic
volumes with one known defect (a leak on one slice, a notch, a missing slice), the real 3D tools
(`graphcut3d`, the default, and `slice2d`: the 2D graphcut on the clicked slice) and the real
`heuristic` policy; plus the views and the tools."""

import itertools

import numpy as np
import pytest
import SimpleITK as sitk
from session3d_doubles import ellipsoid_volume

from ibisagent import image_io
from ibisagent.metrics import dice
from ibisagent.policies import build_policy
from ibisagent.segmenters import build_volume_segmenter
from ibisagent.segmenters.volume_base import BoxPrompt, VoxelClick
from ibisagent.volume_focus import GAP, HINT, JUMP, LARGEST, START, jumps, rank_looks
from ibisagent.volume_session import VolumeSession
from ibisagent.volume_views import views_of_image

SHAPE = (24, 64, 72)
SPACING = (3.0, 1.0, 1.0)  # [k, j, i]: thick slices across k, as in an axial series


@pytest.fixture(scope="module")
def volume():
    grey, truth = ellipsoid_volume(SHAPE)
    image = sitk.GetImageFromArray(grey)
    image.SetSpacing(tuple(reversed(SPACING)))
    return grey, truth, views_of_image(image)


def test_views_agree_with_the_display_slices_of_every_orientation():
    array = np.random.default_rng(1).integers(0, 1000, (5, 6, 7)).astype(np.int16)
    for permutation in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            direction = np.zeros((3, 3))
            for column, (row, sign) in enumerate(zip(permutation, signs)):
                direction[row, column] = sign
            image = sitk.GetImageFromArray(array)
            image.SetDirection(tuple(direction.ravel()))
            views = views_of_image(image)
            for plane in image_io.PLANES:
                stack = image_io.volume_stack(image, plane).slices
                assert np.array_equal(views.stack(plane, array), stack)
                index, x, y = stack.shape[0] - 1, 1, stack.shape[1] - 2
                voxel = views.to_voxel(plane, index, x, y)
                assert array[voxel] == stack[index, y, x]
                assert views.to_slice(plane, voxel) == (index, x, y)


def test_a_slice_that_disagrees_with_both_neighbours_is_looked_at_first(volume):
    _, truth, views = volume
    leak = truth.copy()
    leak[12, 30:40, 55:66] = True
    notch = truth.copy()
    notch[9, 25:40, 20:36] = False
    for mask, index in ((leak, 12), (notch, 9)):
        plane = next(p for p in views.planes if views.normal_axis(p) == 0)
        looks = rank_looks(mask, views, planes=[plane])
        assert (looks[0].plane, looks[0].reason) == (plane, JUMP)
        assert views.index_of(plane, 12 if mask is leak else 9) == looks[0].index
    assert jumps(leak, 0)[12] == 110 - int(truth[12, 30:40, 55:66].sum())


def test_a_missing_slice_shows_as_a_jump_in_the_planes_across_it(volume):
    _, truth, views = volume
    gap = truth.copy()
    gap[12] = False
    looks = rank_looks(gap, views)
    across = [p for p in views.planes if views.normal_axis(p) != 0]
    assert looks[0].plane in across and looks[0].reason == GAP
    assert {look.plane for look in looks[:2]} == set(across)
    axial = next(p for p in views.planes if views.normal_axis(p) == 0)
    assert (axial, views.index_of(axial, 12)) not in {look.key for look in looks}  # empty: never shown


def test_the_users_slice_comes_first_and_reviewed_slices_never(volume):
    _, truth, views = volume
    looks = rank_looks(truth, views, hint=("coronal", 30))
    assert (looks[0].plane, looks[0].index, looks[0].reason) == ("coronal", 30, HINT)
    assert looks[1].reason == LARGEST
    again = rank_looks(truth, views, reviewed={("coronal", 30), looks[1].key}, hint=("coronal", 30))
    assert {("coronal", 30), looks[1].key}.isdisjoint({look.key for look in again})
    empty = rank_looks(np.zeros(SHAPE, bool), views)
    assert [(look.plane, look.reason) for look in empty] == [(views.planes[0], START)]


@pytest.mark.parametrize("tool", ["graphcut3d", "slice2d"])
@pytest.mark.parametrize("defect", ["leak", "notch"])
def test_the_weight_free_agent_finds_and_fixes_a_defect_on_one_slice(volume, defect, tool):
    grey, truth, views = volume
    mask = truth.copy()
    if defect == "leak":
        mask[12, 30:40, 55:66] = True
    else:
        mask[12, 25:40, 20:36] = False
    session = VolumeSession(grey, views, build_volume_segmenter(tool), build_policy("heuristic"), "",
                            mask, spacing=SPACING, max_steps=5)
    proposal = session.propose()
    axial = views.normal_axis(proposal.plane) == 0
    assert axial and proposal.index == views.index_of(proposal.plane, 12)
    assert proposal.voxel.k == 12 and proposal.voxel.positive == (defect == "notch")
    result = session.run()
    assert dice(result.mask, truth) > max(dice(mask, truth), 0.995)
    changed = result.mask != mask
    off_slice = changed.sum() - changed[12].sum()
    if tool == "slice2d":
        assert off_slice == 0  # that slice only
    else:  # the 3D cut changes the slice judged, and nearly nothing the policy did not see
        assert off_slice <= 0.25 * changed.sum()


@pytest.mark.parametrize("tool", ["graphcut3d", "slice2d"])
def test_the_weight_free_agent_leaves_a_correct_mask_alone(volume, tool):
    grey, truth, views = volume
    session = VolumeSession(grey, views, build_volume_segmenter(tool), build_policy("heuristic"), "",
                            truth, spacing=SPACING, max_steps=5, looks=10)
    result = session.run()
    assert result.stop_reason == "terminated" and not result.steps and np.array_equal(result.mask, truth)
    assert len(result.proposals[0].looked) == session.looks


def test_slice2d_edits_only_the_clicked_slice_and_undoes_exactly(volume):
    grey, truth, views = volume
    tool = build_volume_segmenter("slice2d")
    tool.set_volume(grey, SPACING)
    assert tool.slice_axis == 0  # the coarsest spacing
    start = truth.copy()
    start[12, 25:40, 20:36] = False
    first = tool.predict([VoxelClick(12, 32, 28, True)], start)
    assert first.changed == ((12, 13), (0, SHAPE[1]), (0, SHAPE[2]))
    assert np.array_equal(first.mask[:12], start[:12]) and np.array_equal(first.mask[13:], start[13:])
    assert first.mask[12, 25:40, 20:36].mean() > 0.95
    clicks = [VoxelClick(12, 32, 28, True), VoxelClick(5, 32, 36, False)]
    second = tool.predict(clicks, first.mask, first.state)
    again = tool.predict(clicks[:1], start)  # the same first step, recomputed
    assert np.array_equal(again.mask, first.mask)
    assert np.array_equal(second.mask[12], first.mask[12])  # slice 12 is not redone by a click elsewhere
    with pytest.raises(ValueError, match="box"):
        tool.predict([], None, None, BoxPrompt(2, 20, 12, 10, 50, 10, 60))
