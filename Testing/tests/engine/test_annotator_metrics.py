import numpy as np

from ibisagent.annotator import next_click
from ibisagent.metrics import clicks_to_reach, dice, iou


def test_iou_and_dice():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True
    b[1:3] = True
    assert iou(a, b) == 4 / 12 and dice(a, b) == 0.5
    assert iou(a & False, b & False) == 1.0


def test_noc_counts_clicks_and_caps_at_the_budget():
    assert clicks_to_reach([0.5, 0.86, 0.95], 0.85) == 2
    assert clicks_to_reach([0.5, 0.6], 0.9, max_clicks=20) == 20


def test_first_click_is_the_deepest_missed_point():
    truth = np.zeros((21, 31), bool)
    truth[5:16, 10:21] = True  # an 11 x 11 square centred at (x=15, y=10)
    assert next_click(truth, np.zeros_like(truth)) == (15, 10, True)


def test_negative_click_when_the_leak_is_deeper_and_clicked_pixels_are_avoided():
    truth = np.zeros((30, 30), bool)
    truth[2:8, 2:8] = True
    prediction = truth.copy()
    prediction[10:29, 10:29] = True  # a large leak centred at (19, 19)
    x, y, positive = next_click(truth, prediction)
    assert not positive and (x, y) == (19, 19)
    second = next_click(truth, prediction, clicked=[(19, 19)])
    assert second[:2] != (19, 19) and not second[2]


def test_no_click_when_perfect():
    truth = np.eye(5, dtype=bool)
    assert next_click(truth, truth.copy()) is None
