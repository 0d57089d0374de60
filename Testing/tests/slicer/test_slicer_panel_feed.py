"""What the panel shows and keeps track of, moved out of the widget and checked on real MRML
(slicer-core) with a real in-process engine: the history rows and status lines of each event
(`history_text.Shown`), the words of the controls that follow the logic (`IBISAgentLogic.labels`),
what each action's error says first (`actions.FAILED`), which segment stays selected
(`segment_masks.kept_segment`), placing a point (`startPlacingPoint` / `stopPlacingPoint` and
Slicer's place mode), and the one confirmation before packages are installed (`ensurePackages`)."""

from __future__ import annotations

import pytest
import slicer

from slicer_agents import DiskSegmenter, ScriptedPolicy, point
from test_slicer_logic import local_logic, make_case

from IBISAgentLib import history_text, segment_masks
from IBISAgentLib.actions import ACTIONS, FAILED
from IBISAgentLib.logic import IBISAgentLogic
from IBISAgentLib.settings import LOCAL, AgentSettings
from ibisagent.actions import TERMINATE, Action, format_response


def labels(shown):
    return [row.label for row in shown.rows]


def test_every_action_the_panel_runs_says_first_what_failed():
    """Stop, Cancel and the two recording controls are not run through the error path."""
    assert set(FAILED) == set(ACTIONS) - {"stop", "cancel", "record", "recordFolder"}
    assert all(text.endswith(".") for text in FAILED.values())


def test_the_chosen_segment_is_kept_only_for_the_same_segmentation_that_still_has_it(scene):
    volume, segmentation, ids, _truth = make_case(scene, "lps", "Red")
    other, _other_ids = make_case(scene, "lps", "Red")[1:3]
    assert segment_masks.kept_segment(segmentation, segmentation, ids[1]) == ids[1]
    assert segment_masks.kept_segment(other, segmentation, ids[1]) == ""  # another segmentation: its first
    assert segment_masks.kept_segment(None, segmentation, ids[1]) == ""
    assert segment_masks.kept_segment(segmentation, segmentation, "") == ""
    segmentation.GetSegmentation().RemoveSegment(ids[1])
    assert segment_masks.kept_segment(segmentation, segmentation, ids[1]) == ""


def test_a_row_is_shown_as_one_line_with_its_text_in_full():
    row = history_text.Row("Step 2: positive click", "The boundary is further left.")
    assert row.label == "Step 2: positive click: The boundary is further left."
    assert row.tooltip == "The boundary is further left." and not row.bold
    assert row.details == "Step 2: positive click\n\nThe boundary is further left."
    assert history_text.Row("Undo").label == history_text.Row("Undo").tooltip == "Undo"


def test_an_episodes_events_give_its_rows_and_status_lines(scene):
    volume, segmentation, ids, _truth = make_case(scene, "lps", "Red")
    answer = format_response("the liver is done", Action(TERMINATE), answer="Liver, 12 pixels")
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5), answer]))
    started = history_text.on_start(logic.startEpisode(volume, segmentation, ids[0], view="Red"))
    assert labels(started) == [f"Start: Slice {logic.state()['slice_index']} of the Red view, 0 pixels in the segment."]
    assert started.status is None  # the proposal says what to do next

    proposal = logic.proposeNext()
    shown = history_text.on_proposal(proposal, logic.state()["stop_reason"])
    assert labels(shown) == [": ".join(history_text.proposal(proposal))]
    assert shown.status.startswith("Proposal on screen")
    assert history_text.on_flip(logic.flipProposal()).status.startswith("Proposed point 1 flipped")
    logic.acceptProposal()

    proposal = logic.proposeNext()  # the agent ends, with an answer
    shown = history_text.on_proposal(proposal, logic.state()["stop_reason"])
    assert [row.bold for row in shown.rows] == [False, True]
    assert shown.rows[1].label == "Answer: Liver, 12 pixels" and shown.status.startswith("The agent stopped")
    result = logic.finish()
    finished = history_text.on_finish(result)
    assert labels(finished) == ["Answer: Liver, 12 pixels", f"Finished: {history_text.finished(result)}"]
    assert finished.rows[0].bold and finished.status is None


def test_an_episode_ended_by_another_choice_says_why_in_the_history_and_the_status(scene):
    volume, segmentation, ids, _truth = make_case(scene, "lps", "Red")
    logic = local_logic(ScriptedPolicy([]))
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    reason = logic.finishIfElsewhere(segmentation, ids[1])
    shown = history_text.on_ended("Finished", reason, f"Finished: {reason}")
    assert labels(shown) == ["Finished: Another segment was chosen."]
    assert shown.status == "Finished: Another segment was chosen."
    assert history_text.on_ended("Ended", "The scene closed.").status == "The scene closed."


def test_a_reviewed_propagation_shows_each_slice_and_its_end(scene):
    volume, segmentation, ids, truth = make_case(scene, "lps", "Red")
    slicer.util.updateSegmentBinaryLabelmapFromArray(truth, segmentation, ids[0], volume)
    logic = local_logic(ScriptedPolicy([]), DiskSegmenter())
    inputs = (volume, segmentation, ids[0])
    opened = logic.startPropagation(*inputs, view="Red", direction="up", maxSlices=2, stepsPerSlice=0)
    shown = history_text.on_slice_opened(opened, asking=False)
    assert labels(shown) == [f"Slice {opened['slice']}: {history_text.start(opened['state'])}"]
    assert shown.status == history_text.carried_slice(opened)
    assert history_text.on_slice_opened(opened, asking=True).status is None  # the proposal's status follows

    following = logic.nextPropagatedSlice()
    shown = history_text.on_slice_opened(following, asking=False)
    assert labels(shown)[0].startswith(f"Slice {opened['slice']}: ") and len(shown.rows) == 2  # the slice left

    stop = history_text.on_stop_here(logic.propagationState())
    assert labels(stop) == [f"Slice {following['slice']}: The target ends here; the slice is back as it was."]
    assert logic.stopPropagationHere() is None
    assert history_text.on_stop_here(logic.propagationState()) == history_text.Shown()  # nothing under review
    summary = logic.lastPropagationSummary()
    end = history_text.on_propagation_end(summary)
    title, text = history_text.propagation_end(summary)
    assert labels(end) == [f"{title}: {text}"] and end.rows[0].bold
    assert end.status == f"{title}: {text} Undo propagation takes it back."


def test_a_run_through_counts_the_slices_it_wrote(scene):
    volume, segmentation, ids, truth = make_case(scene, "lps", "Red")
    slicer.util.updateSegmentBinaryLabelmapFromArray(truth, segmentation, ids[0], volume)
    logic = local_logic(ScriptedPolicy([]), DiskSegmenter())
    progress, statuses = history_text.RunThrough(), []
    summary = logic.propagate(volume, segmentation, ids[0], view="Red", direction="both", stepsPerSlice=0,
                              onSlice=lambda record: statuses.append(progress.on_slice(record).status))
    assert progress.written == len(summary["written"]) > 0
    assert statuses[-1].startswith(f"Propagating: {progress.written} slice(s) written, slice ")


def test_the_controls_words_follow_the_logic(tmp_path):
    logic = IBISAgentLogic()
    assert logic.labels() == {"startServerButton": "Start local server", "recordFolderButton": "Choose a folder...",
                              "recordedStepsLabel": "Not recording."}
    logic.configure(AgentSettings(mode=LOCAL, record=True, recordFolder=str(tmp_path)))
    words = logic.labels()
    assert words["recordFolderButton"] == str(tmp_path)
    assert words["recordedStepsLabel"] == "Recording: 0 step(s) recorded, 0 in the folder."


def test_placing_a_point_enters_and_leaves_place_mode_and_gives_the_users_list_back(scene):
    volume, segmentation, ids, _truth = make_case(scene, "lps", "Red")
    logic = local_logic(ScriptedPolicy([]))
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    interaction = scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    selection = scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    mine = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "my points")
    selection.SetReferenceActivePlaceNodeID(mine.GetID())

    first = logic.startPlacingPoint(True)
    assert logic.placement is first and selection.GetActivePlaceNodeID() == first.node.GetID()
    second = logic.startPlacingPoint(False)  # a second press ends the first placement
    assert logic.placement is second
    interaction.SetCurrentInteractionMode(interaction.Place)  # what the panel's StartPlaceMode does
    second.node.AddControlPoint(1.0, 2.0, 3.0)
    assert not second.node.GetNthControlPointSelected(0)  # negative: the second placement's polarity
    logic.stopPlacingPoint()
    assert logic.placement is None and interaction.GetCurrentInteractionMode() == interaction.ViewTransform
    assert selection.GetActivePlaceNodeID() == mine.GetID()
    logic.stopPlacingPoint()  # twice is fine

    logic.startPlacingPoint(True)
    interaction.SetCurrentInteractionMode(interaction.Place)
    logic.stopPlacingPoint(leavePlaceMode=False)  # the point was placed: Slicer leaves place mode itself
    assert interaction.GetCurrentInteractionMode() == interaction.Place and logic.placement is None


def test_packages_are_installed_only_after_one_question_with_the_full_list():
    logic = IBISAgentLogic()
    questions = []
    logic.ensurePackages([], "The in-process agent", lambda question: questions.append(question) or True)
    assert questions == []  # nothing missing: nothing asked
    with pytest.raises(RuntimeError, match="Packages not installed: no-such-a, no-such-b"):
        logic.ensurePackages(["no-such-a", "no-such-b"], "The in-process agent",
                             lambda question: questions.append(question) or False)
    assert len(questions) == 1 and questions[0].startswith("The in-process agent needs these Python packages")
    assert "no-such-a\nno-such-b" in questions[0]


def test_finishing_quietly_keeps_the_mask_and_never_raises(scene):
    volume, segmentation, ids, _truth = make_case(scene, "lps", "Red")
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5)]))
    assert not logic.finishQuietly()  # nothing running
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    logic.proposeNext()
    logic.acceptProposal()
    labelmap = logic.workedSlice.labelmap
    kept = labelmap.read().copy()
    assert logic.finishQuietly() and logic.activeEpisode is None
    assert (labelmap.read() == kept).all() and kept.any()
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    scene.RemoveNode(volume)  # the episode ends by itself; ending it again is quiet
    assert not logic.finishQuietly() and logic.activeEpisode is None
