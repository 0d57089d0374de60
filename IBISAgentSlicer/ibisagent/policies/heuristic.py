"""The weight-free default policy: proposes clicks from image statistics, with no model at all.

It exists so that the whole loop (Slicer panel, server, batch command, self-test) works on any
machine before a checkpoint is downloaded, and so the classical path has a sensible "next click".
It is NOT the IBISAgent model and never claims to be: its description says so, and its reasons
describe intensities and shapes, not anatomy.

Rules, in order:

- Empty mask (initialisation): split the luminance with Otsu's threshold and click at the
  deepest point of the largest region on the side that is not the image border's (bright for a
  head scan: the middle of the head; dark for a lesion on skin). A request that says "dark" or
  "bright" picks the side instead.
- Otherwise: find regions the mask probably gets wrong (see `mask_critique`), take the one with
  the highest score (area x confidence) and click at its deepest point, positive to add missed
  target, negative to remove a leak. No pixel is proposed twice.
- Terminate when the best score is below ``max(min_pixels, min_fraction * mask area)``: nothing
  left is worth a person's click, and an extra click on a good mask is more likely to hurt it.

Answers use the model's grammar with normalised pixel centres, (x + 0.5) / W and (y + 0.5) / H
rounded to four decimals, so the episode maps them back to exactly the intended pixel.
"""

from __future__ import annotations

import numpy as np

from ..actions import NEGATIVE, POSITIVE, TERMINATE, Action, format_response
from .base import Observation, Policy
from .mask_critique import HOLE, LEAK, Candidate, find_candidates, initial_point


class HeuristicPolicy(Policy):
    """Image-statistics click proposer; see the module docstring for its rules.

    ``min_pixels``: smallest score (pixels x confidence) worth a click, in pixels.
    ``min_fraction``: the same as a share of the current mask's area; the larger of the two wins.
    """

    name = "heuristic"
    description = (
        "weight-free heuristic (image intensity statistics and mask shape; "
        "not the IBISAgent model, no checkpoint used)"
    )

    def __init__(self, min_pixels: float = 30.0, min_fraction: float = 0.01) -> None:
        if min_pixels < 0 or not 0.0 <= min_fraction < 1.0:
            raise ValueError(
                f"min_pixels must be >= 0 and min_fraction in [0, 1); got {min_pixels} and {min_fraction}."
            )
        self.min_pixels = float(min_pixels)
        self.min_fraction = float(min_fraction)

    def respond(self, observation: Observation) -> str:
        image, mask = _check(observation)
        if not mask.any():
            return self._initialise(image, mask.shape, observation)
        candidates = find_candidates(image, mask, observation.clicks)
        threshold = max(self.min_pixels, self.min_fraction * float(mask.sum()))
        best = candidates[0] if candidates else None
        if best is None or best.score < threshold:
            return _terminate(best, threshold, int(mask.sum()))
        return format_response(_reason(best), _point(best.positive, best.x, best.y, mask.shape))

    def _initialise(self, image: np.ndarray, shape: tuple, observation: Observation) -> str:
        request = " ".join(observation.request.split())
        x, y, area, side = initial_point(image, [(c.x, c.y) for c in observation.clicks], _asked_side(request))
        asked = f"The request is {request!r}. " if request else ""
        if area == 0:
            why = "The image has no contrast to find a structure in, so I start at its centre."
        else:
            why = (
                f"I take the largest {side} structure ({area} pixels) as the target and click at its "
                "deepest point, well inside it."
            )
        return format_response(f"There is no mask yet. {asked}{why}", _point(True, x, y, shape))


def _asked_side(request: str):
    """"bright" or "dark" when the request names one (and not both), else None."""
    words = set(request.lower().replace(",", " ").replace(".", " ").split())
    dark = bool(words & {"dark", "darker", "black", "hypointense"})
    bright = bool(words & {"bright", "brighter", "white", "hyperintense"}) and "matter" not in words
    if dark != bright:
        return "dark" if dark else "bright"
    return None


def _check(observation: Observation):
    image = np.asarray(observation.image)
    mask = np.asarray(observation.mask, dtype=bool)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != mask.shape:
        raise ValueError(
            f"The heuristic policy needs an RGB (H, W, 3) image and an (H, W) mask; got {image.shape} and {mask.shape}."
        )
    return image, mask


def _point(positive: bool, x: int, y: int, shape: tuple) -> Action:
    rows, cols = shape
    return Action(POSITIVE if positive else NEGATIVE, round((x + 0.5) / cols, 4), round((y + 0.5) / rows, 4))


def _reason(candidate: Candidate) -> str:
    numbers = f"mean {candidate.mean:.2f} vs target {candidate.target_mean:.2f}, background {candidate.background_mean:.2f}"
    if candidate.kind == LEAK:
        text = (
            f"A {candidate.area}-pixel part of the mask {candidate.where} looks like background "
            f"({numbers}; {candidate.confidence:.0%} sure); removing it."
        )
    elif candidate.kind == HOLE:
        text = (
            f"The mask has a {candidate.area}-pixel hole {candidate.where} that matches the target's "
            f"intensity ({numbers}; {candidate.confidence:.0%} sure); filling it."
        )
    else:
        text = (
            f"The mask leaves out a {candidate.area}-pixel region {candidate.where} that matches the "
            f"target's intensity ({numbers}; {candidate.confidence:.0%} sure); adding it."
        )
    if candidate.repeats:
        text += " An earlier click there did not fix it, so I click its deepest unclicked point."
    return text


def _terminate(best: Candidate | None, threshold: float, area: int) -> str:
    if best is None:
        reason = "No part of the mask looks like background and nothing next to it looks like target."
    else:
        reason = (
            f"The largest doubtful region is worth {best.score:.0f} pixels, below the "
            f"{threshold:.0f}-pixel threshold for a click, so further clicks would risk more than they fix."
        )
    answer = f"Done: the mask covers {area} pixels and no region left clearly disagrees with the image."
    return format_response(reason, Action(TERMINATE), answer)


def build(**options) -> HeuristicPolicy:
    """The registry's builder; options are ``min_pixels`` and ``min_fraction``."""
    allowed = {"min_pixels", "min_fraction"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"Unknown heuristic policy option(s) {', '.join(unknown)}; use {', '.join(sorted(allowed))}.")
    return HeuristicPolicy(**options)
