"""The evaluation protocol: the simulated annotator clicks its whole budget; cases are grouped by
name; the worker-process map keeps the order and runs single-threaded."""

import os

import numpy as np
import pytest

from ibisagent.actions import TERMINATE, parse_response
from ibisagent.clicks import AGENT, Click
from ibisagent.evaluate import case_group, run_case
from ibisagent.parallel import THREAD_VARIABLES, map_in_workers, usable_cores
from ibisagent.policies.base import Observation
from ibisagent.policies.simulated import SimulatedPolicy
from ibisagent.segmenters.base import Prediction, Segmenter


class DeafTool(Segmenter):
    """A tool that ignores every click (the prior mask comes back unchanged): the case where the
    annotator runs out of unclicked errors long before its budget."""

    name = "deaf"

    def _embed(self, image):
        return None

    def _predict(self, state, clicks, prior_mask, prior_state):
        mask = np.zeros(self.image_shape, bool) if prior_mask is None else prior_mask.copy()
        return Prediction(mask, None, 0.0)


@pytest.fixture
def small_target():
    image = np.full((12, 12, 3), 40, np.uint8)
    truth = np.zeros((12, 12), bool)
    truth[5:7, 5:7] = True  # four pixels: four distinct clicks exhaust them
    image[truth] = 200
    return image, truth


def test_annotator_clicks_again_where_every_error_left_was_clicked(small_target):
    _, truth = small_target
    clicked = tuple(Click(x, y, True, AGENT) for y, x in np.argwhere(truth))
    observation = Observation(small_target[0], np.zeros_like(truth), "", len(clicked), clicked)
    action = parse_response(SimulatedPolicy(truth).respond(observation)).action
    assert action.is_point and action.kind == "positive"
    done = Observation(small_target[0], truth.copy(), "", 1, clicked[:1])
    assert parse_response(SimulatedPolicy(truth).respond(done)).action.kind == TERMINATE


def test_eval_clicks_the_whole_budget_even_when_the_tool_ignores_the_clicks(small_target):
    image, truth = small_target
    result = run_case("deaf_1", image, truth, DeafTool(), clicks=9)
    assert len(result.seconds) == 9 and len(result.ious) == 9  # nine clicks applied, not four
    assert result.stop_reason == "step-limit" and result.ious == [0.0] * 9


def test_case_groups_are_the_name_before_the_first_underscore():
    assert case_group("ct_0003") == "ct"
    assert case_group("derm_isic_12") == "derm"
    assert case_group("phantom") == "phantom"
    assert case_group("_odd") == "_odd"


def test_worker_map_keeps_the_order_runs_single_threaded_and_restores_this_environment(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert map_in_workers(abs, [-3, -1, -2, -5], 2, os.getpid) == [3, 1, 2, 5]
    seen = map_in_workers(os.getenv, list(THREAD_VARIABLES), 2, os.getpid)
    assert seen == ["1"] * len(THREAD_VARIABLES)
    assert os.environ["OMP_NUM_THREADS"] == "7" and "MKL_NUM_THREADS" not in os.environ
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


def test_worker_map_raises_a_setup_error_here_instead_of_restarting_workers():
    with pytest.raises(ValueError, match="invalid literal"):
        map_in_workers(abs, [1, 2], 2, int, ("not a number",))
