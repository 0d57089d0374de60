"""Overlap metrics and the number-of-clicks summary used to compare interactive tools."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two bool masks; 1.0 when both are empty."""
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    union = np.logical_or(prediction, truth).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(prediction, truth).sum() / union)


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice similarity coefficient of two bool masks; 1.0 when both are empty."""
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    total = prediction.sum() + truth.sum()
    if total == 0:
        return 1.0
    return float(2.0 * np.logical_and(prediction, truth).sum() / total)


def clicks_to_reach(ious: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """NoC: the first click count whose IoU reaches ``threshold`` (``ious[k]`` is the IoU after
    k + 1 clicks); ``max_clicks`` when it is never reached."""
    for count, value in enumerate(ious[:max_clicks], start=1):
        if value >= threshold:
            return count
    return max_clicks
