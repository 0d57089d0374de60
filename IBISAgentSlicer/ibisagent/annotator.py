"""The simulated annotator of interactive-segmentation evaluation (RITM, SimpleClick, SAM2).

Given the ground truth and the current prediction it places the click a careful person would:
in the middle of the largest error. False negatives (target missed) and false positives (wrongly
included) are each padded by one pixel of zeros and measured with a Euclidean distance
transform; pixels already clicked are ignored. If the deepest missed point is at least as deep as
the deepest wrong point, the click is positive there, else negative at the deepest wrong point.
Deterministic: ties go to the first pixel in row-major order.
"""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

import numpy as np

from .imaging import interior_depth


def next_click(
    truth: np.ndarray, prediction: np.ndarray, clicked: Iterable[Tuple[int, int]] = ()
) -> Optional[Tuple[int, int, bool]]:
    """(x, y, positive) of the next click, or None when prediction equals the truth.

    ``truth`` and ``prediction`` are bool (H, W); ``clicked`` holds (x, y) pixels to avoid.
    """
    truth = np.asarray(truth, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    missed = interior_depth(truth & ~prediction)
    wrong = interior_depth(~truth & prediction)
    for x, y in clicked:
        missed[y, x] = 0.0
        wrong[y, x] = 0.0
    best_missed, best_wrong = missed.max(), wrong.max()
    if best_missed == 0.0 and best_wrong == 0.0:
        return None
    positive = best_missed >= best_wrong
    depth = missed if positive else wrong
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(x), int(y), bool(positive)
