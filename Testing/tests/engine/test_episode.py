import numpy as np
import pytest

from engine_doubles import DiskTool, ScriptedPolicy
from ibisagent.clicks import AGENT, USER, Click
from ibisagent.episode import (
    ACCEPTED, EDITED, STOP_REPEATED, STOP_STEP_LIMIT, STOP_TERMINATED, STOP_UNPARSEABLE, USER_ONLY, Episode,
)
from ibisagent.metrics import iou
from ibisagent.policies.simulated import SimulatedPolicy


def point(kind, x, y):
    return f"<think>\nlook\n</think>\n<action>\n{kind} Point ({x:.4f}, {y:.4f})\n</action>"


def test_embedding_is_computed_once_for_many_steps(image, truth):
    tool = DiskTool()
    episode = Episode(image, tool, SimulatedPolicy(truth), max_steps=6)
    episode.run()
    assert tool.embed_calls == 1
    assert len(tool.calls) == 6


def test_every_step_resends_all_clicks_and_the_previous_state(image, truth):
    tool = DiskTool()
    episode = Episode(image, tool, SimulatedPolicy(truth), max_steps=3)
    episode.run()
    (first, state0), (second, state1), (third, state2) = tool.calls
    assert len(first) == 1 and len(second) == 2 and len(third) == 3
    assert second[:1] == first and third[:2] == second
    assert state0 is None and state1[0] == 1 and state2[0] == 2


def test_proposal_maps_normalised_click_to_pixel(image):
    policy = ScriptedPolicy([point("Positive", 0.5, 0.25)])
    episode = Episode(image, DiskTool(), policy)
    proposal = episode.propose()
    assert proposal.click == Click(25, 10, True, AGENT)
    assert not proposal.clamped
    step = episode.apply([proposal.click])
    assert step.decision == ACCEPTED and episode.mask[10, 25]


def test_clamped_click_is_reported(image):
    episode = Episode(image, DiskTool(), ScriptedPolicy([point("Negative", 1.02, 0.5)]))
    proposal = episode.propose()
    assert proposal.clamped and proposal.click.x == image.shape[1] - 1


def test_edited_and_user_decisions(image):
    episode = Episode(image, DiskTool(), ScriptedPolicy([point("Positive", 0.5, 0.5)]))
    proposal = episode.propose()
    moved = Click(proposal.click.x + 3, proposal.click.y, True, "user-moved")
    extra = Click(5, 5, False, USER)
    assert episode.apply([moved, extra]).decision == EDITED
    assert episode.clicks == [moved, extra]
    assert episode.apply([Click(1, 1, True, USER)]).decision == USER_ONLY


def test_undo_restores_the_exact_previous_state(image, truth):
    episode = Episode(image, DiskTool(), SimulatedPolicy(truth), max_steps=4)
    episode.run(max_steps=2)
    before = (episode.mask.copy(), episode.prior_state.copy(), list(episode.clicks), list(episode.steps))
    episode.run(max_steps=4)
    assert episode.undo() and episode.undo()
    assert np.array_equal(episode.mask, before[0])
    assert np.array_equal(episode.prior_state, before[1])
    assert episode.clicks == before[2] and episode.steps == before[3]
    assert episode.undo() and episode.undo()
    assert not episode.mask.any() and episode.clicks == [] and not episode.undo()


def test_continue_from_a_user_mask_and_replace_mask(image, truth):
    start = truth.copy()
    start[:, :20] = False
    episode = Episode(image, DiskTool(), SimulatedPolicy(truth), initial_mask=start, max_steps=5)
    assert np.array_equal(episode.observation().mask, start)
    episode.run()
    assert iou(episode.mask, truth) > iou(start, truth)
    edited = np.zeros_like(truth)
    edited[12:20, 20:30] = True
    episode.replace_mask(edited)
    assert np.array_equal(episode.mask, edited) and episode.clicks == [] and episode.prior_state is None
    episode.undo()
    assert len(episode.clicks) == 5


def test_stop_rules(image):
    terminate = "<think>done</think><action>Terminate</action><answer>ok</answer>"
    episode = Episode(image, DiskTool(), ScriptedPolicy([point("Positive", 0.5, 0.5), terminate]))
    result = episode.run()
    assert result.stop_reason == STOP_TERMINATED and result.answer == "ok" and len(result.steps) == 1

    result = Episode(image, DiskTool(), ScriptedPolicy(["gibberish"])).run()
    assert result.stop_reason == STOP_UNPARSEABLE and result.steps == []
    assert "no <action>" in result.proposals[0].error

    result = Episode(image, DiskTool(), ScriptedPolicy([point("Positive", 0.3, 0.3)])).run()
    assert result.stop_reason == STOP_REPEATED and len(result.steps) == 2

    moving = [point("Positive", 0.1 * k, 0.5) for k in range(1, 10)]
    result = Episode(image, DiskTool(), ScriptedPolicy(moving), max_steps=4).run()
    assert result.stop_reason == STOP_STEP_LIMIT and len(result.steps) == 4


def test_decide_callback_overrides_and_skips(image, truth):
    calls = []

    def decide(proposal):
        calls.append(proposal)
        if len(calls) == 1:
            return []  # skip the first proposal
        return [Click(proposal.click.x, proposal.click.y, not proposal.click.positive, "user-moved")]

    episode = Episode(image, DiskTool(), ScriptedPolicy([point("Positive", 0.5, 0.5), point("Positive", 0.4, 0.5)]))
    result = episode.run(max_steps=1, decide=decide)
    assert len(calls) == 2 and len(result.steps) == 1
    assert result.steps[0].decision == EDITED and not result.steps[0].clicks[0].positive


def test_errors_leave_the_episode_unchanged(image):
    episode = Episode(image, DiskTool(), ScriptedPolicy([point("Positive", 0.5, 0.5)]))
    episode.apply([Click(3, 3, True, USER)])
    before = (episode.mask.copy(), list(episode.clicks), len(episode.steps))
    with pytest.raises(ValueError, match="outside"):
        episode.apply([Click(999, 3, True, USER)])
    with pytest.raises(ValueError, match="No clicks"):
        episode.apply([])
    with pytest.raises(ValueError, match="shape"):
        episode.replace_mask(np.zeros((3, 3), bool))
    assert np.array_equal(episode.mask, before[0]) and episode.clicks == before[1] and len(episode.steps) == before[2]


def test_bad_inputs_are_refused_with_clear_messages(image):
    with pytest.raises(ValueError, match="RGB uint8"):
        Episode(image.astype(np.float32), DiskTool())
    with pytest.raises(ValueError, match="starting mask has shape"):
        Episode(image, DiskTool(), initial_mask=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        Episode(image, DiskTool(), initial_mask=np.full(image.shape[:2], np.nan))
    with pytest.raises(RuntimeError, match="no policy"):
        Episode(image, DiskTool()).propose()
    with pytest.raises(RuntimeError, match="set_image"):
        DiskTool().predict([Click(1, 1, True)])


def test_registries_name_the_choices_for_unknown_names_and_options():
    from ibisagent.policies import build_policy
    from ibisagent.segmenters import build_segmenter

    with pytest.raises(ValueError, match="choose one of: graphcut"):
        build_segmenter("snake")
    with pytest.raises(ValueError, match="has no option colour; its options are: checkpoint"):
        build_policy("qwen", colour="red")
    with pytest.raises(ValueError, match="does not take that option"):
        build_segmenter("graphcut", nonsense=1)


def test_applying_the_click_just_previewed_reuses_the_preview(image, truth):
    """The look-ahead already ran the tool on the proposed click: accepting it costs no second
    tool call, and the step is what running the tool would give. Any other click, or an undo
    in between, runs the tool again."""
    tool = DiskTool()
    episode = Episode(image, tool, SimulatedPolicy(truth))
    click = Click(25, 10, True, USER)
    previewed = episode.preview([Click(25, 10, True, AGENT)])
    previewed[:] = False  # what the policy does with its copy cannot reach the episode
    calls = len(tool.calls)
    step = episode.apply([click])
    assert len(tool.calls) == calls and episode.mask[10, 25] and step.mask_pixels == int(episode.mask.sum())
    fresh = Episode(image, DiskTool(), SimulatedPolicy(truth))
    fresh.apply([click])
    assert np.array_equal(fresh.mask, episode.mask) and fresh.prior_state == episode.prior_state
    episode.preview([Click(5, 5, True)])
    episode.apply([Click(6, 5, True)])  # not the previewed click: the tool runs
    assert len(tool.calls) == calls + 2 and episode.mask[5, 6]
    episode.preview([Click(30, 20, False)])
    assert episode.undo()
    episode.apply([Click(30, 20, False)])  # the preview was made before the undo: the tool runs
    assert len(tool.calls) == calls + 4
