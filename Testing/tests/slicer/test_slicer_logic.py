"""IBISAgentLogic with the in-process engine: episodes, markups edits, undo, failures, batch."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

from slicer_agents import DiskSegmenter, ScriptedPolicy, SimulatedPolicy, point
from slicer_scene import (
    add_bright_volume,
    add_segmentation,
    free_port,
    place_view_on_voxel,
    write_box_case,
)

from IBISAgentLib import AgentStepError, SliceGeometryError, proposal_markups, segment_masks
from IBISAgentLib.logic import IBISAgentLogic
from IBISAgentLib.slice_geometry import slice_geometry
from IBISAgentLib.slice_labelmap import SliceLabelmap
from ibisagent.clicks import AGENT, USER, USER_MOVED, Click

SHAPE_KJI = (12, 20, 24)


def make_case(scene, orientation="flipped-permuted", view="Red", at=(12, 10, 6)):
    """A volume with a bright box, a segmentation with the target and a second segment, and the
    view placed through the box. Returns (volume, segmentation, ids, truth_kji)."""
    truth = np.zeros(SHAPE_KJI, dtype=np.uint8)
    truth[3:9, 5:15, 6:18] = 1
    rng = np.random.default_rng(7)
    volume = add_bright_volume(scene, truth, orientation, rng, (-4.0, 7.0, 2.0), noise=5.0, contrast=300.0,
                               window=(0, 500))
    segmentation, ids = add_segmentation(scene, volume, ("target", "other"))
    other = (rng.random(SHAPE_KJI) > 0.7).astype(np.uint8)
    slicer.util.updateSegmentBinaryLabelmapFromArray(other, segmentation, ids[1], volume)
    place_view_on_voxel(scene, view, volume, at)
    return volume, segmentation, ids, truth


def snapshot(segmentation, ids, volume):
    return [segment_masks.read_volume_mask(segmentation, i, volume) for i in ids]


def local_logic(policy, segmenter=None):
    logic = IBISAgentLogic(log=lambda message: None)
    logic.useLocalEngine(policy, segmenter or DiskSegmenter())
    return logic


@pytest.mark.parametrize("view", ["Red", "Yellow", "Green"])
@pytest.mark.parametrize("orientation", ["lps", "flipped-permuted"])
def test_continue_mask_touches_only_the_slice_and_segment(scene, view, orientation):
    volume, segmentation, ids, truth = make_case(scene, orientation, view)
    before = snapshot(segmentation, ids, volume)
    geometry = slice_geometry(volume, view)
    policy = SimulatedPolicy(geometry.extract(truth).astype(bool), stop_iou=0.99)
    logic = IBISAgentLogic()
    logic.useLocalEngine(policy, "graphcut")
    result = logic.continueMask(volume, segmentation, ids[0], "segment the box", view=view, maxSteps=8)
    assert result["steps"] and result["statistics"]["pixels"] > 0
    after = snapshot(segmentation, ids, volume)
    assert np.array_equal(after[1], before[1])
    outside = np.ones(SHAPE_KJI, bool)
    outside[geometry.kji_index()] = False
    assert np.array_equal(after[0][outside], before[0][outside])
    final = geometry.extract(after[0]).astype(bool)
    target = geometry.extract(truth).astype(bool)
    assert (final & target).sum() / (final | target).sum() > 0.8  # the classical tool finds the box
    history = proposal_markups.read_history(segmentation, ids[0])
    assert len(history) == len(result["steps"])
    assert all(c["ijk"][geometry.normal_axis] == geometry.slice_index for h in history for c in h["clicks"])


@pytest.mark.parametrize("view", ["Red", "Yellow", "Green"])
def test_normalised_click_shown_on_expected_voxel(scene, view):
    volume, segmentation, ids, _ = make_case(scene, "permuted", view)
    logic = local_logic(ScriptedPolicy([point(0.3125, 0.8)]))
    logic.startEpisode(volume, segmentation, ids[0], view=view)
    proposal = logic.proposeNext()
    geometry = logic.workedSlice.geometry
    rows, cols = geometry.shape
    assert (proposal.click.x, proposal.click.y) == (int(0.3125 * cols), int(0.8 * rows))
    node = logic.workedSlice.markups.proposals
    assert node.GetNumberOfControlPoints() == 1
    shown = np.array(node.GetNthControlPointPosition(0))
    expected_ijk = geometry.pixel_to_ijk(int(0.3125 * cols), int(0.8 * rows))
    assert np.allclose(shown, geometry.ijk_to_ras_point(expected_ijk))
    logic.finish()


def test_markups_edits_reach_the_agent_exactly(scene):
    volume, segmentation, ids, _ = make_case(scene, "flipped-permuted", "Yellow")
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5), point(0.25, 0.25, False)]))
    logic.startEpisode(volume, segmentation, ids[0], view="Yellow")
    geometry = logic.workedSlice.geometry
    markups = logic.workedSlice.markups
    logic.proposeNext()
    # Move the proposal two pixels right, flip it, add a user point of each polarity.
    proposed = logic.workedSlice.session.pending.click
    markups.proposals.SetNthControlPointPosition(0, *[float(v) for v in geometry.pixel_to_ras(proposed.x + 2, proposed.y)])
    markups.flip(0)
    markups.add_user_point(1, 1, True)
    markups.add_user_point(3, 2, False)
    step = logic.acceptProposal()
    expected = [Click(proposed.x + 2, proposed.y, False, USER_MOVED), Click(1, 1, True, USER), Click(3, 2, False, USER)]
    assert logic.workedSlice.session.clicks == expected
    assert step.decision == "edited"
    # Accepted points are now locked and shown; the proposal list is empty.
    assert markups.proposals.GetNumberOfControlPoints() == 0
    assert markups.accepted.GetNumberOfControlPoints() == 3 and markups.accepted.GetLocked()
    # Second proposal: delete it and place one instead; then an unchanged accept.
    logic.proposeNext()
    markups.proposals.RemoveNthControlPoint(0)
    markups.add_user_point(4, 4, True)
    logic.acceptProposal()
    assert logic.workedSlice.session.clicks[-1] == Click(4, 4, True, USER)
    logic.workedSlice.session.policy.texts.append(point(0.1, 0.1))
    proposal = logic.proposeNext()
    logic.acceptProposal()
    assert logic.workedSlice.session.clicks[-1] == Click(proposal.click.x, proposal.click.y, True, AGENT)
    # The history on the segment holds every click with its origin.
    history = proposal_markups.read_history(segmentation, ids[0])
    assert [Click.from_dict(c) for h in history for c in h["clicks"]] == logic.workedSlice.session.clicks
    logic.finish()


def test_undo_is_bit_exact(scene):
    volume, segmentation, ids, _ = make_case(scene, "lps", "Green")
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5), point(0.2, 0.3), point(0.52, 0.5, False)]))
    logic.startEpisode(volume, segmentation, ids[0], view="Green")
    states = [(snapshot(segmentation, ids, volume), proposal_markups.read_history(segmentation, ids[0]))]
    for _ in range(3):
        logic.proposeNext()
        logic.acceptProposal()
        states.append((snapshot(segmentation, ids, volume), proposal_markups.read_history(segmentation, ids[0])))
    assert not np.array_equal(states[-1][0][0], states[0][0][0])
    for masks, history in reversed(states[:-1]):
        assert logic.undo()
        now = snapshot(segmentation, ids, volume)
        assert all(np.array_equal(a, b) for a, b in zip(now, masks))
        assert proposal_markups.read_history(segmentation, ids[0]) == history
        assert np.array_equal(logic.workedSlice.session.mask, logic.workedSlice.geometry.extract(masks[0]).astype(bool))
    assert not logic.undo() and not logic.state()["can_undo"]
    logic.finish()


def test_slicer_scene_undo_reverts_an_agent_step_when_enabled(scene):
    volume, segmentation, ids, _ = make_case(scene, "lps", "Red")
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5)]))
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    logic.proposeNext()
    logic.acceptProposal()  # scene undo off (Slicer's default): nothing recorded
    assert scene.GetNumberOfUndoLevels() == 0
    scene.SetUndoOn()
    before = snapshot(segmentation, ids, volume)
    logic.proposeNext()
    logic.acceptProposal(clicks=[Click(2, 2, True, USER)])
    assert not np.array_equal(snapshot(segmentation, ids, volume)[0], before[0])
    scene.Undo()
    after = snapshot(scene.GetNodeByID(segmentation.GetID()), ids, volume)
    assert all(np.array_equal(a, b) for a, b in zip(after, before))


def test_failure_leaves_segment_untouched(scene):
    volume, segmentation, ids, _ = make_case(scene, "ras", "Red")
    tool = DiskSegmenter()
    before = snapshot(segmentation, ids, volume)
    history_before = proposal_markups.read_history(segmentation, ids[0])
    # Step-wise: the tool crashes while applying -> nothing written.
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5)] * 3), tool)
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    logic.proposeNext()
    tool.fail_on_call = 1
    with pytest.raises(AgentStepError) as error:
        logic.acceptProposal()
    assert error.value.kind == "engine" and "segment was not changed" in str(error.value)
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(segmentation, ids, volume), before))
    logic.finish()
    # In one go: two good steps, then a crash -> the whole run is rolled back.
    tool2 = DiskSegmenter()
    tool2.fail_on_call = 3
    logic2 = local_logic(ScriptedPolicy([point(0.5, 0.5), point(0.3, 0.3), point(0.7, 0.7)]), tool2)
    with pytest.raises(AgentStepError):
        logic2.continueMask(volume, segmentation, ids[0], view="Red", maxSteps=5)
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(segmentation, ids, volume), before))
    assert proposal_markups.read_history(segmentation, ids[0]) == history_before
    assert logic2.workedSlice is None
    # Invalid model output: step-wise it raises, in one go it ends the run keeping good steps.
    logic3 = local_logic(ScriptedPolicy(["no grammar at all"]))
    logic3.startEpisode(volume, segmentation, ids[0], view="Red")
    with pytest.raises(AgentStepError) as bad:
        logic3.proposeNext()
    assert bad.value.kind == "invalid-output"
    logic3.finish()
    logic4 = local_logic(ScriptedPolicy([point(0.5, 0.5), "garbage"]))
    result = logic4.continueMask(volume, segmentation, ids[0], view="Red")
    assert result["stop_reason"] == "unparseable" and len(result["steps"]) == 1
    # Server down: a typed error, nothing changed.
    logic5 = IBISAgentLogic()
    logic5.connect(f"http://127.0.0.1:{free_port()}", "token", timeout=2)
    current = snapshot(segmentation, ids, volume)
    with pytest.raises(AgentStepError) as down:
        logic5.continueMask(volume, segmentation, ids[0], view="Red")
    assert down.value.kind == "unavailable"
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(segmentation, ids, volume), current))


def test_oblique_view_is_refused_by_the_logic(scene):
    volume, segmentation, ids, _ = make_case(scene, "ras", "Red")
    node = scene.GetNodeByID("vtkMRMLSliceNodeRed")
    node.GetSliceToRAS().SetElement(0, 0, 0.9)
    node.GetSliceToRAS().SetElement(1, 0, 0.4359)
    node.UpdateMatrices()
    before = snapshot(segmentation, ids, volume)
    with pytest.raises(SliceGeometryError, match="oblique"):
        local_logic(ScriptedPolicy([])).continueMask(volume, segmentation, ids[0], view="Red")
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(segmentation, ids, volume), before))


def test_hand_edits_between_steps_are_continued_from(scene):
    volume, segmentation, ids, _ = make_case(scene, "ras", "Red")
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5), point(0.1, 0.1)]))
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    logic.proposeNext()
    logic.acceptProposal()
    geometry = logic.workedSlice.geometry
    hand = SliceLabelmap(segmentation, ids[0], volume, geometry)  # what the Segment Editor would do
    edited = hand.read()
    edited[0:3, 0:3] = True
    hand.write(edited)
    logic.proposeNext()
    assert np.array_equal(logic.workedSlice.session.mask, edited)
    logic.finish()


def test_run_batch_writes_masks_with_geometry(scene, tmp_path):
    image_file, mask_file = write_box_case(tmp_path)  # a rough start on array slice 4 only
    image = sitk.ReadImage(image_file)
    rough = sitk.GetArrayFromImage(sitk.ReadImage(mask_file))
    logic = IBISAgentLogic()
    logic.useLocalEngine("heuristic", "graphcut")
    out = tmp_path / "out"
    results = logic.runBatch([image_file, str(tmp_path / "missing.nii.gz")], [mask_file, None], str(out),
                             "segment the bright box", maxSteps=4)
    assert "error" not in results[0] and "error" in results[1]
    written = sitk.ReadImage(str(out / "case1.nii.gz"))
    assert written.GetSize() == image.GetSize()
    assert np.allclose(written.GetSpacing(), image.GetSpacing())
    assert np.allclose(written.GetOrigin(), image.GetOrigin(), atol=1e-4)
    assert np.allclose(written.GetDirection(), image.GetDirection(), atol=1e-6)
    result_mask = sitk.GetArrayFromImage(written)
    others = [k for k in range(rough.shape[0]) if k != 4]
    assert np.array_equal(result_mask[others], rough[others])  # only the worked slice changed
    assert result_mask[4].sum() > 0
    assert (out / "case1.seg.nrrd").exists()
    # Nothing left behind in the scene.
    assert scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 0
