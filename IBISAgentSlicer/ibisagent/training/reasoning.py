"""Reasoning text for training targets, written from what the mask and the image show.

The reference distilled its cold-start reasoning from a teacher model; with no teacher at hand
we template it from measurements a person would make looking at the overlay: which region is
wrong (missed target for a positive point, wrongly included area for a negative one), where it
lies in the image, how large it is against the target, whether it touches the current mask, and
whether it is brighter or darker than the target. Every sentence states something true of the
image, so a model fine-tuned on it learns to look at the error it is fixing.

``truth`` is the mask the step is aiming at: an expert's mask (cold start) or the mask the
person finally kept (recorded sessions).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from scipy import ndimage

#: Intensity differences (0..255 grey levels) below this are described as "similar".
SIMILAR_GREY = 12.0


def place(x: float, y: float, width: int, height: int) -> str:
    """Where pixel (x, y) lies in the image, in thirds: "the upper left part", "the centre"..."""
    rows = ("upper", "middle", "lower")[min(2, int(3 * y / max(height, 1)))]
    cols = ("left", "centre", "right")[min(2, int(3 * x / max(width, 1)))]
    if rows == "middle" and cols == "centre":
        return "the centre of the image"
    if rows == "middle":
        return f"the {cols} part of the image"
    if cols == "centre":
        return f"the {rows} middle part of the image"
    return f"the {rows} {cols} part of the image"


def _component_at(region: np.ndarray, x: int, y: int) -> np.ndarray:
    """The connected part of ``region`` holding (x, y), or its largest part when (x, y) is outside."""
    labels, count = ndimage.label(region)
    if count == 0:
        return region.copy()
    label = labels[y, x]
    if label == 0:
        sizes = ndimage.sum(region, labels, index=np.arange(1, count + 1))
        label = int(np.argmax(sizes)) + 1
    return labels == label


def _relation(component: np.ndarray, mask: np.ndarray) -> str:
    """How a region sits against the current mask: which edge of the mask it touches, or apart."""
    if not mask.any():
        return "with no mask near it"
    touching = np.logical_and(ndimage.binary_dilation(component), mask).any()
    if not touching:
        return "separate from the current mask"
    my, mx = np.argwhere(mask).mean(axis=0)
    cy, cx = np.argwhere(component).mean(axis=0)
    dy, dx = cy - my, cx - mx
    if abs(dy) >= abs(dx):
        side = "lower" if dy > 0 else "upper"
    else:
        side = "right" if dx > 0 else "left"
    return f"along the {side} edge of the current mask"


def _brightness(image_rgb: np.ndarray, region: np.ndarray, reference: np.ndarray, what: str) -> str:
    """'brighter than', 'darker than' or 'similar in intensity to' ``what``."""
    if not region.any() or not reference.any():
        return ""
    grey = image_rgb.astype(np.float64).mean(axis=2)
    difference = grey[region].mean() - grey[reference].mean()
    if abs(difference) < SIMILAR_GREY:
        return f"It is similar in intensity to {what}."
    return f"It looks {'brighter' if difference > 0 else 'darker'} than {what}."


def _percent(pixels: int, total: int) -> str:
    share = 100.0 * pixels / max(total, 1)
    return f"{share:.1f}%" if share < 10 else f"{share:.0f}%"


def describe_click(image_rgb: np.ndarray, mask: np.ndarray, truth: np.ndarray, x: int, y: int,
                   positive: bool, request: str = "") -> str:
    """Reasoning for a click at pixel (x, y) on ``image_rgb`` shown with ``mask``."""
    mask, truth = np.asarray(mask, bool), np.asarray(truth, bool)
    rows, cols = mask.shape
    target = f'the target of the request "{request.strip()}"' if request.strip() else "the target"
    if not mask.any():
        seed = _component_at(truth, x, y) if truth.any() else truth
        size = _percent(int(seed.sum()), rows * cols)
        surround = ndimage.binary_dilation(seed, iterations=5) & ~seed
        text = (f"No mask is visible yet, so this is the initialisation step. I look for {target}: it lies in "
                f"{place(x, y, cols, rows)} and covers about {size} of the image. "
                + _brightness(image_rgb, seed, surround, "its surroundings")
                + " A positive point on a representative interior part of it gives the tool a seed.")
        return " ".join(text.split())
    if positive:
        region = _component_at(truth & ~mask, x, y)
        text = (f"The semi-transparent green mask misses part of {target}: an uncovered region of about "
                f"{_percent(int(region.sum()), rows * cols)} of the image ({_percent(int(region.sum()), int(truth.sum()))} "
                f"of the target's size) in {place(x, y, cols, rows)}, {_relation(region, mask)}. "
                + _brightness(image_rgb, region, mask & truth, "the masked part")
                + " A positive point in the middle of that region adds it to the mask.")
    else:
        region = _component_at(mask & ~truth, x, y)
        text = (f"The green mask covers an area that does not belong to {target}: about "
                f"{_percent(int(region.sum()), rows * cols)} of the image in {place(x, y, cols, rows)}, "
                f"{_relation(region, mask & truth)}. "
                + _brightness(image_rgb, region, mask & truth, "the correctly masked tissue")
                + " A negative point in the middle of it removes it from the mask.")
    return " ".join(text.split())


def describe_done(mask: np.ndarray, truth: np.ndarray) -> Tuple[str, str]:
    """(reasoning, answer) for terminating on ``mask``. The answer is a plain summary: nothing in
    the masks says how to answer a question the request may hold."""
    mask, truth = np.asarray(mask, bool), np.asarray(truth, bool)
    wrong = int(np.logical_xor(mask, truth).sum())
    if wrong == 0:
        reasoning = "The semi-transparent green mask covers the target exactly. The segmentation is complete."
    else:
        share = _percent(wrong, int(truth.sum()) or 1)
        reasoning = ("The semi-transparent green mask follows the boundary of the target closely; what still differs "
                     f"is a thin rim of about {share} of the target's size along its edge, too small for another "
                     "point to improve. The segmentation is complete.")
    return reasoning, "Segmentation complete: the green mask covers the target."
