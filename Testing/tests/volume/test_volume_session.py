"""The 3D session's mechanics: clicks of every kind on any slice, exact and small undo, locked
labels, box starts, and the run loop; on a volume whose file direction is permuted and flipped,
so the display planes do not follow the array's axes."""

import math

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from session3d_doubles import BallTool, ellipsoid_volume
from volume_doubles import ScriptedPolicy, point, terminate

from ibisagent.clicks import Click
from ibisagent.session import ACCEPTED, EDITED, STOP_REPEATED, STOP_TERMINATED, USER_ONLY, run_until_stop
from ibisagent.segmenters.volume_base import BoxPrompt, VoxelClick
from ibisagent.volume_session import VolumeClick, VolumeSession
from ibisagent.volume_views import views_of_image

SHAPE = (14, 22, 26)


def _views(shape=SHAPE):
    image = sitk.GetImageFromArray(np.zeros(shape, np.uint8))
    image.SetDirection((0, 0, 1, -1, 0, 0, 0, 1, 0))
    return views_of_image(image)


@pytest.fixture
def volume():
    return ellipsoid_volume(SHAPE)


def _session(volume, policy=None, tool=None, **options):
    grey, truth = volume
    options.setdefault("initial_mask", truth)
    options.setdefault("confirm", False)  # the second view has a test of its own
    return VolumeSession(grey, _views(), tool or BallTool(), policy, "Segment the ball.", **options)


def _state(session):
    return session.mask.copy(), list(session.clicks), len(session.steps), session.box


def _same(state, session):
    mask, clicks, steps, box = state
    return np.array_equal(mask, session.mask) and clicks == session.clicks and steps == len(session.steps) \
        and box == session.box


operation = st.one_of(
    st.tuples(st.just("voxel"), st.integers(0, SHAPE[0] - 1), st.integers(0, SHAPE[1] - 1),
              st.integers(0, SHAPE[2] - 1), st.booleans()),
    st.tuples(st.just("pixel"), st.sampled_from(("axial", "coronal", "sagittal")), st.integers(0, 10 ** 6),
              st.integers(0, 10 ** 6), st.booleans()),
    st.tuples(st.just("hand"), st.integers(0, SHAPE[0] - 3), st.integers(0, SHAPE[1] - 5), st.booleans()),
    st.just(("undo",)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operation, min_size=1, max_size=12), st.booleans())
def test_undo_is_exact_after_any_mix(volume, operations, report_box):
    session = _session(volume, tool=BallTool(report_box=report_box))
    states = [_state(session)]
    for op in operations:
        if op[0] == "voxel":
            session.apply([VoxelClick(op[1], op[2], op[3], op[4], "user")])
        elif op[0] == "pixel":
            plane = op[1]
            index = op[2] % session.views.count(plane)
            rows, cols = session.views.slice_shape(plane)
            session.look_at(plane, index)
            session.apply([Click(op[3] % cols, (op[3] // cols) % rows, op[4], "user")])
        elif op[0] == "hand":
            edited = session.mask.copy()
            edited[op[1]:op[1] + 3, op[2]:op[2] + 5, 4:9] = op[3]
            session.replace_mask(edited)
        else:
            undone = session.undo()
            assert undone == (len(states) > 1)
            if undone:
                states.pop()
            assert _same(states[-1], session)
            continue
        states.append(_state(session))
    while session.undo():
        states.pop()
        assert _same(states[-1], session)
    assert len(states) == 1 and np.array_equal(session.mask, volume[1])


def test_history_keeps_only_the_changed_boxes():
    grey, truth = ellipsoid_volume((40, 80, 96))
    image = sitk.GetImageFromArray(grey)
    session = VolumeSession(grey, views_of_image(image), BallTool(radius=3), initial_mask=truth)
    for n in range(5):
        session.apply([VoxelClick(5 + 6 * n, 10 + 10 * n, 20, True, "user")])
    assert 0 < session.history_bytes <= 5 * 7 ** 3  # one 7x7x7 box per click, not a volume copy each
    assert session.history_bytes < grey.size // 100
    assert session.steps[0].changed == ((2, 9), (7, 14), (17, 24))
    assert sum(s.added - s.removed for s in session.steps) == int(session.mask.sum()) - int(truth.sum())


def test_the_mask_is_never_changed_in_place(volume):
    session = _session(volume)
    with pytest.raises(ValueError):
        session.mask[0, 0, 0] = True
    before = session.mask
    session.apply([VoxelClick(7, 11, 13, False, "user")])
    assert np.array_equal(before, volume[1]) and before is not session.mask


def test_locked_voxels_keep_their_labels(volume):
    grey, _ = volume
    labels = np.zeros(SHAPE, np.uint8)
    labels[3:11, 5:17, 6:13] = 2  # the worked label
    labels[3:11, 5:17, 13:20] = 1  # a neighbour it touches
    labels[6:8, 8:12, 9:11] = 3  # an island inside it
    session = VolumeSession(grey, _views(), BallTool(radius=4), initial_mask=labels == 2,
                            locked=(labels != 0) & (labels != 2))
    session.apply([VoxelClick(7, 10, 13, True, "user")])  # a ball over the border with label 1
    session.apply([VoxelClick(7, 10, 10, False, "user")])  # erase around the island
    locked = (labels == 1) | (labels == 3)
    assert not (session.mask & locked).any()
    assert (session.mask & ~(labels == 2)).any() and ((labels == 2) & ~session.mask).any()


def test_a_box_start_is_the_tools_answer_to_the_box(volume):
    grey, truth = volume
    box = BoxPrompt(3, 10, 7, 5, 16, 6, 19)
    tool = BallTool()
    session = VolumeSession(grey, _views(), tool, box=box)
    expected = np.zeros(SHAPE, bool)
    expected[3:11, 5:17, 6:20] = True
    assert np.array_equal(session.initial_mask, expected) and np.array_equal(session.mask, expected)
    session.apply([VoxelClick(12, 10, 10, True, "user")])
    assert tool.calls[-1][2] == box  # every step gets the box
    assert session.undo() and np.array_equal(session.mask, expected)
    assert not session.undo()
    with pytest.raises(ValueError, match="not both"):
        VolumeSession(grey, _views(), BallTool(), initial_mask=truth, box=box)


def test_a_hand_edit_drops_the_box_and_undo_brings_it_back(volume):
    grey, _ = volume
    box = BoxPrompt(3, 10, 7, 5, 16, 6, 19)
    session = VolumeSession(grey, _views(), BallTool(), box=box)
    session.replace_mask(np.zeros(SHAPE, bool))
    assert session.box is None and not session.mask.any()
    session.undo()
    assert session.box == box


def test_a_proposal_is_a_voxel_on_the_slice_shown(volume):
    policy = ScriptedPolicy([point(0.5121, 0.2503)])
    session = _session(volume, policy, hint=("coronal", 9))
    proposal = session.propose()
    assert (proposal.plane, proposal.index) == ("coronal", 9)
    seen = policy.seen[0]
    assert np.array_equal(seen.image, session.slice_image("coronal", 9))
    assert np.array_equal(seen.mask, session.views.stack("coronal", volume[1])[9])
    rows, cols = session.views.slice_shape("coronal")
    x, y = math.floor(0.5121 * cols), math.floor(0.2503 * rows)
    assert (proposal.click.x, proposal.click.y) == (x, y)
    assert proposal.voxel.voxel == session.views.to_voxel("coronal", 9, x, y)
    assert session.apply([proposal.click]).decision == ACCEPTED
    session.undo()
    session.propose()
    assert session.apply([proposal.click.flipped()]).decision == EDITED
    step = session.apply([VoxelClick(1, 1, 1, True, "user")])
    assert step.decision == USER_ONLY and step.clicks[0].plane == "coronal"
    assert step.to_dict()["clicks"][0]["k"] == 1


def test_the_preview_shows_the_slice_and_is_reused(volume):
    policy = ScriptedPolicy([point(0.5, 0.5)])
    tool = BallTool()
    session = _session(volume, policy, tool=tool, hint=("axial", 5))
    mask_before = session.mask
    session.propose()
    slice_preview = policy.seen[0].preview([Click(3, 3, True)])
    assert slice_preview.shape == session.views.slice_shape("axial") and session.mask is mask_before
    calls = len(tool.calls)
    session.apply([Click(3, 3, True, "user")])  # the clicks just previewed: no second tool call
    assert len(tool.calls) == calls


def test_terminate_on_every_slice_looked_at_ends_the_volume(volume):
    policy = ScriptedPolicy([terminate("fine")])
    session = _session(volume, policy, looks=2)
    first = session.propose()
    assert session.stop_reason == STOP_TERMINATED and first.click is None and len(first.looked) == 2
    second = session.propose()
    seen = {(e["plane"], e["index"]) for e in first.looked}
    assert not seen & {(e["plane"], e["index"]) for e in second.looked}  # reviewed slices are not looked at again


def test_a_skipped_proposal_moves_the_agent_elsewhere(volume):
    session = _session(volume, ScriptedPolicy([point(0.5, 0.5)]))
    first = session.propose()
    session.skip()
    second = session.propose()
    assert (second.plane, second.index) != (first.plane, first.index)


def test_the_run_loop_drives_a_3d_session(volume):
    policy = ScriptedPolicy([point(0.5, 0.5), point(0.4, 0.6, False), terminate()])
    session = _session(volume, policy)
    assert run_until_stop(session) == STOP_TERMINATED
    assert [s.decision for s in session.steps] == [ACCEPTED, ACCEPTED]
    result = session.result()
    assert np.array_equal(result.mask, session.mask) and len(result.proposals) == 3


def test_the_same_action_on_the_same_slice_three_times_stops(volume):
    session = _session(volume, ScriptedPolicy([point(0.5, 0.5)]), hint=("axial", 6))
    for _ in range(3):
        session.propose()
        session.skip()
        session.look_at("axial", 6)  # the user asks again on that slice
    assert session.stop_reason == STOP_REPEATED


def test_a_2d_click_needs_a_slice(volume):
    session = _session(volume)
    with pytest.raises(ValueError, match="needs a slice"):
        session.apply([Click(1, 1, True, "user")])
    with pytest.raises(ValueError, match="outside"):
        session.apply([VoxelClick(99, 0, 0, True, "user")])
    with pytest.raises(ValueError, match="names voxel"):
        session.apply([VolumeClick("axial", 0, 0, 0, 5, 5, 5, True, "user")])
    assert not session.steps and not session.can_undo


def test_a_tool_that_edits_one_axis_is_looked_at_across_it(volume):
    grey, truth = volume
    tool = BallTool()
    tool.slice_axis = 2
    session = VolumeSession(grey, _views(), tool, initial_mask=truth)
    assert [session.views.normal_axis(p) for p in session.planes] == [2]


def test_a_proposal_can_be_required_to_hold_in_a_second_view():
    shape = (15, 21, 25)  # odd sides: the centre pixel of every slice through the centre is the centre voxel
    grey, truth = ellipsoid_volume(shape)
    views = _views(shape)
    centre = tuple(s // 2 for s in shape)
    plane = views.planes[0]
    hint = (plane, views.to_slice(plane, centre)[0])

    def session(texts, radius=2):
        policy = ScriptedPolicy(texts)
        return VolumeSession(grey, views, BallTool(radius), policy, "", truth, hint=hint, confirm=True), policy

    agreed, policy = session([point(0.5, 0.5, False), point(0.5, 0.5, False)])
    proposal = agreed.propose()
    assert proposal.voxel.voxel == centre and len(proposal.looked) == 1
    # A ball of radius 2 changes 13 voxels on its slice and 20 off it; most of those (9) lie on a
    # neighbouring slice of the same plane, so that is the second view.
    neighbours = [agreed.slice_image(plane, hint[1] + step) for step in (-1, 1)]
    assert any(np.array_equal(policy.seen[1].image, image) for image in neighbours)
    doubted, _ = session([point(0.5, 0.5, False), terminate("looks fine from here")])
    proposal = doubted.propose()
    assert proposal.voxel is None and doubted.stop_reason == STOP_TERMINATED
    assert "20 of the 33 voxels it changes lie off its slice" in proposal.looked[0]["said"]
    assert "not confirmed" in proposal.looked[0]["said"] and hint in doubted.reviewed
    # A change on the click's own slice was judged whole: no second view is asked for.
    alone, policy = session([point(0.5, 0.5, False), terminate("looks fine from here")], radius=0)
    proposal = alone.propose()
    assert proposal.voxel.voxel == centre and len(policy.seen) == 1
