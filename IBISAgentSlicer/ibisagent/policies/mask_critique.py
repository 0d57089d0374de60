"""Judge a mask from the image alone: where is it most likely wrong, and where should a click go?

Used by the weight-free `heuristic` policy. Nothing here sees ground truth; every judgement comes
from the image's colours and the mask's shape:

1. Appearance. The target's colours are learnt from the mask's core (its pixels at least two
   pixels from its edge) and the background's from a ring around the mask. Both are colour
   histograms, so a background made of several tissues is modelled as well as a uniform one. One
   refinement step re-weights each sample by how well it fits its own side, so a leak does not
   teach the target model background colours and a missed piece next to the mask does not teach
   the background model target colours. The result is P(target | colour) for every pixel,
   smoothed by one pixel so that candidates are regions, not speckle.
2. Candidates. *Missed target*: pixels outside the mask, inside its holes or within the ring,
   that look like target. *Wrongly included*: mask pixels that look like background. Each
   connected region is one candidate, scored by area x confidence (mean distance of its
   probability from 0.5, doubled). Regions too thin to hold a click well inside are dropped.
3. The click goes to the deepest point of the region (largest distance to its edge), the place a
   careful person would click, skipping pixels clicked before. A region that already holds a
   click of the same kind counts for less each time (the tool could not fix it); a region that
   holds a click of the other kind is left alone (someone already said otherwise).

Conventions: images are RGB uint8 (H, W, 3), masks bool (H, W), pixels (x=column, y=row).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from ..clicks import Click

#: Colour levels per channel of the appearance histograms (32**3 bins; grey images use 32).
LEVELS = 32
#: Regions thinner than this (largest distance to their edge, pixels) cannot take a safe click.
MIN_DEPTH = 2.0

HOLE = "hole"
MISSING = "missing"
LEAK = "leak"


@dataclass(frozen=True)
class Appearance:
    """What target and background look like: ``probability`` is P(target | colour), float (H, W)
    in [0, 1]; the means are luminances in [0, 1]; ``ring`` is the background band, bool (H, W)."""

    probability: np.ndarray
    target_mean: float
    background_mean: float
    ring: np.ndarray


@dataclass(frozen=True)
class Candidate:
    """One region where the mask is probably wrong, and the click that would fix it.

    ``positive``: True for missed target (add), False for wrongly included area (remove).
    ``kind``: "hole", "missing" or "leak". ``area`` in pixels; ``confidence`` in [0, 1];
    ``depth``: distance in pixels from the click to the region's edge; ``mean``: the region's
    mean luminance in [0, 1]; ``where``: its place relative to the mask, e.g. "below it";
    ``repeats``: how many earlier clicks of the same kind already lie in it; ``target_mean`` and
    ``background_mean``: the mean luminances the two colour models were learnt from.
    """

    positive: bool
    kind: str
    area: int
    confidence: float
    depth: float
    x: int
    y: int
    mean: float
    where: str
    repeats: int = 0
    target_mean: float = 0.0
    background_mean: float = 0.0

    @property
    def score(self) -> float:
        """Pixels expected to be corrected, discounted for clicks that did not fix it before."""
        return self.area * self.confidence / (1.0 + self.repeats)


def luminance(image: np.ndarray) -> np.ndarray:
    """Mean of the three channels, float (H, W) in [0, 1]."""
    return np.asarray(image, dtype=np.float64).mean(axis=2) / 255.0


def appearance(image: np.ndarray, mask: np.ndarray) -> Appearance:
    """Learn target and background colours from ``mask`` and a ring around it (see module doc)."""
    bins = _colour_bins(image)
    core = _core(mask)
    ring = _ring(mask)
    if not ring.any():  # the mask covers the whole image: the outside is all there is
        ring = ~mask
    table = _posterior(bins, core.astype(float), ring.astype(float))
    table = _posterior(bins, core * table[bins], ring * (1.0 - table[bins]))
    probability = ndimage.gaussian_filter(table[bins], 1.0)
    grey = luminance(image)
    return Appearance(probability, float(grey[core].mean()), float(grey[ring].mean()) if ring.any() else 0.0, ring)


def find_candidates(image: np.ndarray, mask: np.ndarray, clicks: Iterable[Click] = ()) -> list[Candidate]:
    """Every region worth considering, best (highest score) first."""
    mask = np.asarray(mask, dtype=bool)
    clicks = list(clicks)
    model = appearance(image, mask)
    grey = luminance(image)
    filled = ndimage.binary_fill_holes(mask)
    target_like = model.probability > 0.5
    missed = ~mask & target_like & (model.ring | filled)
    wrong = mask & ~target_like
    found = _regions(missed, True, filled & ~mask, model.probability, grey, mask, clicks)
    found += _regions(wrong, False, None, model.probability, grey, mask, clicks)
    means = {"target_mean": model.target_mean, "background_mean": model.background_mean}
    return sorted((replace(c, **means) for c in found), key=lambda c: c.score, reverse=True)


def initial_point(image: np.ndarray, avoid: Iterable[tuple[int, int]] = ()) -> tuple[int, int, int]:
    """(x, y, area) of a representative point of the dominant bright structure.

    Rule: split the luminance in two with Otsu's threshold, keep the largest connected bright
    region, click at its deepest point (for a head scan, the middle of the head). ``area`` is that
    region's size in pixels. On an image with no contrast it returns the image centre, area 0.
    """
    grey = luminance(image)
    rows, cols = grey.shape
    threshold = _otsu(grey)
    if threshold is None:
        return cols // 2, rows // 2, 0
    labels, count = ndimage.label(grey > threshold)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    region = labels == int(np.argmax(sizes))
    depth = _depth(region)
    for x, y in avoid:
        depth[y, x] = 0.0
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(x), int(y), int(region.sum())


# -- appearance helpers ----------------------------------------------------------------------
def _colour_bins(image: np.ndarray) -> np.ndarray:
    levels = np.asarray(image, dtype=np.int64) * LEVELS // 256
    return (levels[..., 0] * LEVELS + levels[..., 1]) * LEVELS + levels[..., 2]


def _core(mask: np.ndarray) -> np.ndarray:
    """Mask pixels away from its edge, where the target's colours are least mixed with others."""
    core = ndimage.binary_erosion(mask, iterations=2)
    return core if core.sum() >= 20 else mask


def _ring(mask: np.ndarray) -> np.ndarray:
    """A band around the mask, about a third of the mask's radius wide (at least 5 pixels)."""
    radius = np.sqrt(mask.sum() / np.pi)
    width = int(max(5, round(radius / 3)))
    outside = ndimage.distance_transform_edt(~mask)
    return (outside > 1) & (outside <= width)


def _histogram(bins: np.ndarray, weights: np.ndarray) -> np.ndarray:
    counts = np.bincount(bins.ravel(), weights=weights.ravel(), minlength=LEVELS ** 3)
    counts = ndimage.gaussian_filter(counts.reshape(LEVELS, LEVELS, LEVELS), 1.0).ravel()
    total = counts.sum()
    return counts / total if total > 0 else counts


def _posterior(bins: np.ndarray, target_weights: np.ndarray, background_weights: np.ndarray) -> np.ndarray:
    """P(target | colour bin) with equal priors, from weighted colour histograms of both sides."""
    target = _histogram(bins, target_weights)
    background = _histogram(bins, background_weights)
    return (target + 1e-9) / (target + background + 2e-9)


# -- candidate helpers -----------------------------------------------------------------------
def _depth(region: np.ndarray) -> np.ndarray:
    """Distance of each region pixel to the nearest pixel outside it (the image edge counts)."""
    padded = np.pad(region, 1, mode="constant", constant_values=False)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1]


def _regions(
    error: np.ndarray,
    positive: bool,
    holes: np.ndarray | None,
    probability: np.ndarray,
    grey: np.ndarray,
    mask: np.ndarray,
    clicks: list[Click],
) -> list[Candidate]:
    labels, count = ndimage.label(error)
    if count == 0:
        return []
    depth = _depth(error)
    for click in clicks:
        depth[click.y, click.x] = 0.0
    index = np.arange(1, count + 1)
    areas = ndimage.sum_labels(np.ones_like(grey), labels, index)
    certainty = np.abs(probability - 0.5) * 2.0
    confidences = ndimage.mean(certainty, labels, index)
    means = ndimage.mean(grey, labels, index)
    deepest = ndimage.maximum_position(depth, labels, index)
    depths = ndimage.maximum(depth, labels, index)
    hole_share = ndimage.mean(holes.astype(float), labels, index) if holes is not None else np.zeros(count)
    centre = np.array(ndimage.center_of_mass(mask)) if mask.any() else np.array(grey.shape) / 2.0
    span = max(1.0, np.sqrt(mask.sum()))
    found = []
    for k in range(count):
        if depths[k] < MIN_DEPTH:
            continue
        inside = [c for c in clicks if labels[c.y, c.x] == k + 1]
        if any(c.positive != positive for c in inside):
            continue
        y, x = deepest[k]
        kind = LEAK if not positive else (HOLE if hole_share[k] > 0.9 else MISSING)
        found.append(
            Candidate(
                positive, kind, int(areas[k]), float(confidences[k]), float(depths[k]), int(x), int(y),
                float(means[k]), _where(np.array([y, x]) - centre, span, kind), len(inside),
            )
        )
    return found


def _where(offset: np.ndarray, span: float, kind: str) -> str:
    """Words for where a region lies, from the offset (rows, cols) of its click from the mask's
    centre, as seen on screen. The click, not the region's centroid, is used: a leak that rings
    the whole mask has its centroid in the mask's middle."""
    if kind == HOLE:
        return "inside it"
    dy, dx = offset
    if np.hypot(dy, dx) < 0.15 * span:
        return "in its middle"
    vertical = "upper" if dy < 0 else "lower"
    horizontal = "left" if dx < 0 else "right"
    if abs(dy) > 2.0 * abs(dx):
        side = "above" if dy < 0 else "below"
        return f"{side} it" if kind == MISSING else f"at its {vertical} edge"
    if abs(dx) > 2.0 * abs(dy):
        return f"to its {horizontal}" if kind == MISSING else f"at its {horizontal} edge"
    return f"at its {vertical} {horizontal}"


def _otsu(values: np.ndarray) -> float | None:
    """Otsu's threshold of values in [0, 1]; None when all values are equal."""
    if values.min() == values.max():
        return None
    counts, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2.0
    weight = np.cumsum(counts)
    mass = np.cumsum(counts * centres)
    total, total_mass = weight[-1], mass[-1]
    below = weight[:-1]
    above = total - below
    valid = (below > 0) & (above > 0)
    mean_below = np.where(valid, mass[:-1] / np.maximum(below, 1), 0.0)
    mean_above = np.where(valid, (total_mass - mass[:-1]) / np.maximum(above, 1), 0.0)
    between = np.where(valid, below * above * (mean_below - mean_above) ** 2, -1.0)
    return float(edges[int(np.argmax(between)) + 1])
