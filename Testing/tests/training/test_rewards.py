"""The five rewards on hand-made cases: every term, both spellings of terminate, malformed text."""

from __future__ import annotations

import numpy as np
import pytest

from ibisagent.actions import Action
from ibisagent.training import rewards

POINT = "<think>\nThe mask misses the left part.\n</think>\n<action>\nPositive Point (0.2500, 0.5000)\n</action>"
NEGATIVE = "<think>\nSpill on the right.\n</think>\n<action>\nNegative Point (0.8750, 0.5000)\n</action>"
TERMINATE = "<think>\nDone.\n</think>\n<action>\nTerminate\n</action>\n<answer>\nThe liver.\n</answer>"


@pytest.mark.parametrize("text, expected", [
    (POINT, 1.0),
    (NEGATIVE, 1.0),
    (TERMINATE, 1.0),
    (TERMINATE.replace("Terminate", "Termination"), 1.0),
    ("<think>\nDone.\n</think>\n<action>\nTerminate\n</action>", 0.0),  # a terminate carries an answer
    ("<think>\nDone.\n</think>\n<action>\nTermination\n</action>", 0.0),
    (TERMINATE.replace("</answer>", ""), 0.0),  # answer never closed
    (POINT + "\n</answer> <answer>", 0.0),  # closed before it opens
    (POINT.replace("<think>\n", "<think>"), 0.0),  # the layout's line breaks are required
    (POINT.replace("0.2500", "1.2500"), 0.0),  # outside [0, 1]
    (POINT.replace("Positive", "positive"), 0.0),
    (POINT.replace("<think>\nThe mask misses the left part.\n</think>\n", ""), 0.0),
    ("Positive Point (0.25, 0.5)", 0.0),
    ("", 0.0),
])
def test_format(text, expected):
    assert rewards.format_reward(text) == expected


def test_read_action_accepts_both_spellings_and_refuses_garbage():
    assert rewards.read_action(TERMINATE).kind == "terminate"
    assert rewards.read_action(TERMINATE.replace("Terminate", "Termination")).kind == "terminate"
    assert rewards.read_action(POINT) == Action("positive", 0.25, 0.5)
    assert rewards.read_action(POINT.replace("(0.2500, 0.5000)", "(0.25 0.5)")) is None
    assert rewards.read_action(None) is None
    assert rewards.read_action("<action>\nPositive Point (0.1, 0.2)\n</action> trailing") == Action("positive", 0.1, 0.2)


@pytest.mark.parametrize("value, expected", [(0.95, 3.0), (0.81, 3.0), (0.8, 2.0), (0.71, 2.0), (0.7, 1.0),
                                             (0.51, 1.0), (0.5, 0.0), (0.0, 0.0)])
def test_answer_tiers(value, expected):
    assert rewards.answer_reward(value) == expected


def masks():
    """8 x 8: the target is the left half; the mask covers the right half of the target rows 2..5 and
    a wrong block on the far right."""
    truth = np.zeros((8, 8), bool)
    truth[:, :4] = True
    current = np.zeros((8, 8), bool)
    current[:, 2:4] = True
    current[2:6, 6:8] = True
    return current, truth


@pytest.mark.parametrize("action, expected", [
    (Action("positive", 0.05, 0.5), 1.0),   # pixel (0, 4): missed target
    (Action("positive", 0.30, 0.5), -1.0),  # pixel (2, 4): already masked
    (Action("positive", 0.60, 0.5), -1.0),  # pixel (4, 4): background
    (Action("negative", 0.90, 0.5), 1.0),   # pixel (7, 4): wrongly included
    (Action("negative", 0.30, 0.5), -1.0),  # pixel (2, 4): correctly masked target
    (Action("terminate"), 0.0),
    (None, 0.0),
])
def test_placement(action, expected):
    current, truth = masks()
    assert rewards.placement_reward(action, current, truth) == expected


def test_placement_uses_floor_and_clamps_to_the_image():
    current, truth = masks()
    assert rewards.placement_reward(Action("negative", 1.0, 1.0), current, truth) == -1.0  # pixel (7, 7)
    assert rewards.placement_reward(Action("positive", 0.0, 0.0), current, truth) == 1.0


def test_progress_and_length():
    point, stop = Action("positive", 0.1, 0.1), Action("terminate")
    assert rewards.progress_reward(point, 0.6, 0.5) == 1.0
    assert rewards.progress_reward(point, 0.5, 0.5) == 0.0
    assert rewards.progress_reward(stop, 0.9, 0.5) == 0.0
    assert rewards.progress_reward(None, 0.9, 0.5) == 0.0
    assert [rewards.length_reward(s) for s in (1, 5, 6, 8)] == [1.0, 1.0, pytest.approx(-0.2), pytest.approx(-0.6)]
    assert rewards.length_reward(None) == 0.0
    assert rewards.length_reward(4, optimal_step=3) == pytest.approx(-0.2)


def test_score_response_applies_the_point_and_averages_the_terms():
    current, truth = masks()
    seen = []

    def mask_after(action):
        seen.append(action)
        return current | truth  # the tool fills the missed target

    text = "<think>\nMissed.\n</think>\n<action>\nPositive Point (0.0500, 0.5000)\n</action>"
    terms = rewards.score_response(text, current, truth, mask_after, pre_iou=0.4, current_step=7)
    assert seen == [Action("positive", 0.05, 0.5)]
    assert terms.step_iou == pytest.approx(32 / 40)
    assert (terms.format, terms.answer, terms.placement, terms.progress) == (1.0, 2.0, 1.0, 1.0)
    assert terms.length == pytest.approx(-0.4)
    assert terms.score == pytest.approx((1 + 2 + 1 + 1 - 0.4) / 5)
    assert terms.to_dict()["score"] == pytest.approx(terms.score)


def test_terminate_is_scored_on_the_current_mask_without_calling_the_tool():
    current, truth = masks()

    def never(action):
        raise AssertionError("the tool must not run for Terminate")

    terms = rewards.score_response(TERMINATE.replace("Terminate", "Termination"), truth, truth, never, 0.5, 2)
    assert (terms.format, terms.answer, terms.placement, terms.progress, terms.length) == (1.0, 3.0, 0.0, 0.0, 1.0)


def test_unreadable_text_earns_only_the_length_term():
    current, truth = masks()
    terms = rewards.score_response("I think the liver is here.", current, truth, lambda a: truth, 0.1, 3)
    assert (terms.format, terms.answer, terms.placement, terms.progress, terms.length) == (0.0, 0.0, 0.0, 0.0, 1.0)
    assert terms.score == pytest.approx(0.2)
