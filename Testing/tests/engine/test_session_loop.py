"""The session interface shared by the engine and the client: the one run loop's rules, the
records' wire round trip, and undo across a hand edit in the one undo stack."""

import json
import math

import numpy as np

from engine_doubles import DiskTool, ScriptedPolicy
from ibisagent.clicks import USER, Click
from ibisagent.episode import Episode
from ibisagent.session import (
    STOP_REPEATED, STOP_STEP_LIMIT, STOP_TERMINATED, STOP_UNPARSEABLE, STOP_USER, Proposal, Step, run_until_stop,
)

TERMINATE = "<think>done</think><action>Terminate</action><answer>all good</answer>"


def point(x, y, kind="Positive"):
    return f"<think>\nlook at {x}\n</think>\n<action>\n{kind} Point ({x:.4f}, {y:.4f})\n</action>"


def moving(count):
    return [point(0.05 + 0.1 * k, 0.5) for k in range(count)]


def test_loop_stops_at_the_step_limit_counting_earlier_steps(image):
    episode = Episode(image, DiskTool(), ScriptedPolicy(moving(9)), max_steps=9)
    episode.apply([Click(1, 1, True, USER)])
    assert run_until_stop(episode, max_steps=3) == STOP_STEP_LIMIT
    assert len(episode.steps) == 3 and episode.stop_reason == STOP_STEP_LIMIT


def test_loop_ends_on_each_stop_rule_and_reports_every_proposal(image):
    for texts, reason, steps in (([point(0.5, 0.5), TERMINATE], STOP_TERMINATED, 1),
                                 (["no grammar"], STOP_UNPARSEABLE, 0),
                                 ([point(0.3, 0.3)], STOP_REPEATED, 2)):
        seen = []
        episode = Episode(image, DiskTool(), ScriptedPolicy(texts))
        assert run_until_stop(episode, on_proposal=seen.append) == reason
        assert len(episode.steps) == steps
        assert seen == episode.proposals and seen[-1] is episode.pending  # the stopping one too


def test_decide_none_stops_and_empty_skips_up_to_the_session_limit(image):
    episode = Episode(image, DiskTool(), ScriptedPolicy(moving(9)), max_steps=4)
    assert run_until_stop(episode, decide=lambda proposal: None) == STOP_USER
    assert episode.steps == [] and len(episode.proposals) == 1

    asked = []
    episode = Episode(image, DiskTool(), ScriptedPolicy(moving(9)), max_steps=4)
    assert run_until_stop(episode, decide=lambda proposal: asked.append(proposal) or []) == STOP_USER
    assert len(asked) == 4 and episode.steps == [] and episode.pending is None


def test_a_skip_then_an_override_counts_one_step(image):
    answers = iter([[], [Click(3, 4, False, USER)]])
    steps = []
    episode = Episode(image, DiskTool(), ScriptedPolicy(moving(9)), max_steps=9)
    run_until_stop(episode, max_steps=1, decide=lambda proposal: next(answers), on_step=steps.append)
    assert steps == episode.steps and len(steps) == 1
    assert steps[0].clicks == [Click(3, 4, False, USER)] and steps[0].decision == "edited"


def test_records_survive_the_wire_form(image):
    episode = Episode(image, DiskTool(), ScriptedPolicy([point(0.5, 0.25), point(1.02, 0.5, "Negative"), TERMINATE]))
    episode.run()
    for proposal in episode.proposals:
        assert Proposal.from_dict(json.loads(json.dumps(proposal.to_dict()))) == _rounded(proposal)
    for step in episode.steps:
        again = Step.from_dict(json.loads(json.dumps(step.to_dict())))
        assert again.clicks == step.clicks and again.proposal == _rounded(step.proposal)
        assert (again.index, again.decision, again.mask_pixels, again.score) == (
            step.index, step.decision, step.mask_pixels, step.score)
    wire = dict(episode.steps[0].to_dict(), score=None)  # JSON has no NaN: the server sends null
    assert math.isnan(Step.from_dict(wire).score)


def _rounded(proposal):
    copy = Proposal(**vars(proposal))
    copy.seconds = round(proposal.seconds, 6)
    return copy


def test_undo_walks_back_through_a_hand_edit_in_the_one_stack(image):
    episode = Episode(image, DiskTool(), ScriptedPolicy([point(0.5, 0.5), point(0.2, 0.2)]))
    states = [episode.mask.copy()]
    episode.apply([episode.propose().click])
    states.append(episode.mask.copy())
    edited = episode.mask.copy()
    edited[:5, :5] = True
    episode.replace_mask(edited)
    states.append(edited)
    episode.apply([episode.propose().click])
    assert len(episode.steps) == 2 and episode.can_undo
    for expected, steps_left in zip(reversed(states), (1, 1, 0)):
        assert episode.undo()
        assert np.array_equal(episode.mask, expected) and len(episode.steps) == steps_left
    assert not episode.can_undo and not episode.undo()
