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


def test_ties_go_positive_and_to_the_first_pixel_in_row_major_order():
    truth = np.zeros((9, 20), bool)
    truth[2:7, 2:7] = True  # a missed 5 x 5 square, depth 3 at (4, 4)
    prediction = np.zeros_like(truth)
    prediction[2:7, 12:17] = True  # an equally deep 5 x 5 leak at (14, 4)
    assert next_click(truth, prediction) == (4, 4, True)  # equal depths: positive wins
    wide = np.zeros((7, 12), bool)
    wide[1:6, 1:11] = True  # a 5 x 10 missed band: depth 3 along row 3, columns 3..8
    assert next_click(wide, np.zeros_like(wide)) == (3, 3, True)  # the first of the deepest


def test_the_image_border_counts_as_outside_the_error():
    truth = np.ones((5, 5), bool)  # the whole image is missed; padding makes the border shallow
    assert next_click(truth, np.zeros_like(truth)) == (2, 2, True)  # so the click lands in the centre
