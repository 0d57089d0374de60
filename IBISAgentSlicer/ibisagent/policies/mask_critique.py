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
3. The click goes to the deepest point of the region (largest distance to its edge; on a flat
   ridge its middle), the place a careful person would click, skipping pixels clicked before.
   A region that already holds a click of the same kind counts for less each time (the tool
   could not fix it); a region that holds a click of the other kind is left alone (someone
   already said otherwise).

Conventions: images are RGB uint8 (H, W, 3), masks bool (H, W), pixels (x=column, y=row).
"""

from __future__ import annotations

from collections.abc import Iterable
import hashlib
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from ..clicks import Click
from ..imaging import interior_depth

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


def find_candidates(image: np.ndarray, mask: np.ndarray, clicks: Iterable[Click] = ()) -> list[Candidate]:
    """Every region worth considering, best (highest score) first.

    Only a window around the mask is examined: every pixel that can become a candidate lies in
    the mask or its ring, so the window is the mask's bounding box grown by the ring's width plus
    the reach of the probability smoothing. Inside it every number is the same as on the whole
    image (the ring's distances only see the mask, the smoothing only its reach, the outside of
    the box is background connected to the image edge), so cropping changes speed, not answers.
    """
    mask = np.asarray(mask, dtype=bool)
    clicks = list(clicks)
    grey, bins = _image_features(image)
    width = _ring_width(mask)
    box = _window(mask, width + _SMOOTHING_REACH + 1)
    ring = _ring(mask[box], width)
    if not ring.any():  # no ring anywhere: the background is all of the image the mask leaves
        box = (slice(None), slice(None))
        ring = ~mask
    model = _appearance(grey[box], bins[box], mask[box], ring)
    grey, mask = grey[box], mask[box]
    origin = (box[0].start or 0, box[1].start or 0)
    local = [replace(c, x=c.x - origin[1], y=c.y - origin[0]) for c in clicks]
    local = [c for c in local if 0 <= c.y < mask.shape[0] and 0 <= c.x < mask.shape[1]]
    filled = _fill_holes(mask)
    missed, wrong = _errors(model, mask, filled)
    rows, cols = np.nonzero(mask)
    centre = np.array([rows.sum() / rows.size + origin[0], cols.sum() / cols.size + origin[1]])
    shared = (model.probability, grey, centre, max(1.0, np.sqrt(rows.size)), local, origin)
    found = _regions(missed, True, filled & ~mask, *shared) + _regions(wrong, False, None, *shared)
    means = {"target_mean": model.target_mean, "background_mean": model.background_mean}
    return sorted((replace(c, **means) for c in found), key=lambda c: c.score, reverse=True)


def initial_point(
    image: np.ndarray, avoid: Iterable[tuple[int, int]] = (), prefer: str | None = None
) -> tuple[int, int, int, str]:
    """(x, y, area, side) of a representative point of the dominant structure.

    Rule: split the luminance in two with Otsu's threshold. The target is the side that covers
    less of the image border, because the border is usually background (air around a head, skin
    around a lesion, glass around a tissue section); ``prefer`` ("bright" or "dark", e.g. from
    the request) overrides that. Keep the largest connected region of that side and click at its
    deepest point (for a head scan, the middle of the head). ``side`` is "bright" or "dark";
    ``area`` is the region's size in pixels. With no contrast: the image centre, area 0.
    """
    grey, _ = _image_features(image)
    rows, cols = grey.shape
    threshold = _otsu(grey)
    if threshold is None:
        return cols // 2, rows // 2, 0, "bright"
    bright = grey > threshold
    if prefer in ("bright", "dark"):
        side = prefer
    else:
        border = np.concatenate([bright[0], bright[-1], bright[1:-1, 0], bright[1:-1, -1]])
        side = "dark" if border.mean() > 0.5 else "bright"
    labels, count = ndimage.label(bright if side == "bright" else ~bright)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    region = labels == int(np.argmax(sizes))
    depth = interior_depth(region)
    for x, y in avoid:
        depth[y, x] = 0.0
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(x), int(y), int(region.sum()), side


def appearance_of(image: np.ndarray, mask: np.ndarray) -> Appearance:
    """The target and background models of ``mask`` (see the module docstring) over the whole
    image: what the look-ahead compares a previewed change with."""
    mask = np.asarray(mask, dtype=bool)
    grey, bins = _image_features(image)
    ring = _ring(mask, _ring_width(mask))
    if not ring.any():
        ring = ~mask
    return _appearance(grey, bins, mask, ring)


def region_of(model: Appearance, mask: np.ndarray, candidate: Candidate) -> np.ndarray:
    """The pixels of ``candidate``'s region, bool (H, W): the connected region of missed target
    (positive) or wrongly included area (negative) that holds its click, as `find_candidates`
    found it; ``model`` is `appearance_of` the image and ``mask``. Empty when the click is not in
    such a region."""
    mask = np.asarray(mask, dtype=bool)
    missed, wrong = _errors(model, mask, _fill_holes(mask))
    labels, _ = ndimage.label(missed if candidate.positive else wrong)
    label = labels[candidate.y, candidate.x]
    return labels == label if label else np.zeros_like(mask)


def _errors(model: Appearance, mask: np.ndarray, filled: np.ndarray):
    """(missed, wrong), bool like ``mask``: target-like pixels outside the mask, in its ring or
    its holes (``filled`` is the mask with its holes filled), and background-like pixels inside
    it. Candidates are their connected regions."""
    target_like = model.probability > 0.5
    return ~mask & target_like & (model.ring | filled), mask & ~target_like


# -- per-image features, cached ----------------------------------------------------------------
#: Pixels beyond a pixel that the one-pixel Gaussian smoothing of the probability reads
#: (scipy's default truncation at four standard deviations).
_SMOOTHING_REACH = 4
#: The last image's (digest, luminance, colour bins). A policy sees the same image at every
#: step of an episode, often as a fresh array, so the key is a digest of its bytes, not its id.
_last_image: tuple = (None, None, None)


def _image_features(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(luminance, colour bin) of every pixel; recomputed only when the image's bytes change."""
    global _last_image
    pixels = np.ascontiguousarray(image)
    key = (pixels.shape, pixels.dtype.str, hashlib.sha1(memoryview(pixels).cast("B")).digest())
    cached = _last_image  # one read, so a concurrent update cannot pair one key with other data
    if cached[0] == key:
        return cached[1], cached[2]
    grey, bins = luminance(pixels), _colour_bins(pixels)
    grey.flags.writeable = bins.flags.writeable = False
    _last_image = (key, grey, bins)
    return grey, bins


def _window(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The mask's bounding box grown by ``margin`` pixels, clipped to the image."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (
        slice(max(0, int(rows[0]) - margin), int(rows[-1]) + margin + 1),
        slice(max(0, int(cols[0]) - margin), int(cols[-1]) + margin + 1),
    )


# -- appearance helpers ----------------------------------------------------------------------
def _appearance(grey: np.ndarray, bins: np.ndarray, mask: np.ndarray, ring: np.ndarray) -> Appearance:
    """Learn target colours from ``mask`` and background colours from ``ring`` (see module doc)."""
    core = _core(mask)
    table = _posterior(bins, core.astype(float), ring.astype(float))
    table = _posterior(bins, core * table[bins], ring * (1.0 - table[bins]))
    probability = ndimage.gaussian_filter(table[bins], 1.0)
    return Appearance(probability, float(grey[core].mean()), float(grey[ring].mean()) if ring.any() else 0.0, ring)


def _colour_bins(image: np.ndarray) -> np.ndarray:
    levels = np.asarray(image, dtype=np.int64) * LEVELS // 256
    return (levels[..., 0] * LEVELS + levels[..., 1]) * LEVELS + levels[..., 2]


def _core(mask: np.ndarray) -> np.ndarray:
    """Mask pixels away from its edge, where the target's colours are least mixed with others."""
    core = ndimage.binary_erosion(mask, iterations=2)
    return core if core.sum() >= 20 else mask


def _ring_width(mask: np.ndarray) -> int:
    """About a third of the mask's radius (at least 5 pixels): wide enough to sample the
    background, narrow enough to stay near the mask."""
    radius = np.sqrt(mask.sum() / np.pi)
    return int(max(5, round(radius / 3)))


def _ring(mask: np.ndarray, width: int) -> np.ndarray:
    """The band from 1 to ``width`` pixels outside the mask."""
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
def _regions(
    error: np.ndarray,
    positive: bool,
    holes: np.ndarray | None,
    probability: np.ndarray,
    grey: np.ndarray,
    centre: np.ndarray,
    span: float,
    clicks: list[Click],
    origin: tuple[int, int],
) -> list[Candidate]:
    """One candidate per connected region of ``error`` that can take a click. Arrays are the
    window's; ``clicks`` are in window coordinates, ``origin`` is the window's top-left pixel and
    ``centre`` and the candidates' pixels are in image coordinates."""
    labels, count = ndimage.label(error)
    if count == 0:
        return []
    # Per-region statistics from the labelled pixels alone, one bincount each, in raster order.
    where = np.flatnonzero(labels)
    owner = labels.ravel()[where]
    areas = np.bincount(owner, minlength=count + 1)
    certainty = np.abs(probability.ravel()[where] - 0.5) * 2.0
    confidences = np.bincount(owner, certainty, count + 1) / np.maximum(areas, 1)
    means = np.bincount(owner, grey.ravel()[where], count + 1) / np.maximum(areas, 1)
    hole_share = (
        np.bincount(owner, holes.ravel()[where], count + 1) / np.maximum(areas, 1)
        if holes is not None else np.zeros(count + 1)
    )
    # A region is deep enough where an unclicked pixel has no outside pixel nearer than
    # MIN_DEPTH: an erosion answers that for all regions at once, and only those regions then
    # pay for a distance transform, each in its own bounding box.
    roomy = ndimage.binary_erosion(error, _disc(MIN_DEPTH))
    for click in clicks:
        roomy[click.y, click.x] = False
    has_room = np.bincount(labels[roomy], minlength=count + 1) > 0
    boxes = ndimage.find_objects(labels)
    found = []
    for k in range(1, count + 1):
        if not has_room[k]:
            continue
        inside = [c for c in clicks if labels[c.y, c.x] == k]
        if any(c.positive != positive for c in inside):
            continue
        depth, (y, x) = _deepest(labels, k, boxes[k - 1], clicks)
        y, x = y + origin[0], x + origin[1]
        kind = LEAK if not positive else (HOLE if hole_share[k] > 0.9 else MISSING)
        found.append(
            Candidate(
                positive, kind, int(areas[k]), float(confidences[k]), depth, x, y,
                float(means[k]), _where(np.array([y, x]) - centre, span, kind), len(inside),
            )
        )
    return found


def _disc(radius: float) -> np.ndarray:
    """The pixels nearer than ``radius`` to the centre one, as an erosion structure."""
    reach = int(np.ceil(radius)) - 1
    yy, xx = np.mgrid[-reach: reach + 1, -reach: reach + 1]
    return yy ** 2 + xx ** 2 < radius ** 2


def _deepest(
    labels: np.ndarray, k: int, box: tuple[slice, slice], clicks: list[Click]
) -> tuple[float, tuple[int, int]]:
    """(depth, (row, col)) of region ``k``'s deepest unclicked pixel.

    The distance transform runs on the region's bounding box only, which gives the same depths
    as one over the whole error mask: along a straight staircase from a region pixel towards
    any pixel outside the region, the first step out of the region is a non-error pixel (regions
    are 4-connected, so an error pixel next to the region would belong to it) and no farther.
    Among equally deep pixels the one nearest their mean is taken, the middle of a flat ridge.
    """
    region = labels[box] == k
    depth = interior_depth(region)
    top, left = box[0].start, box[1].start
    for click in clicks:
        if 0 <= click.y - top < depth.shape[0] and 0 <= click.x - left < depth.shape[1]:
            depth[click.y - top, click.x - left] = 0.0
    deepest = depth.max()
    rows, cols = np.nonzero(depth == deepest)
    spread = (rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2
    pick = int(np.argmin(spread))
    return float(deepest), (int(rows[pick]) + top, int(cols[pick]) + left)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with its holes filled: outside pixels not 4-connected to the image's edge. One
    labelling instead of ``binary_fill_holes``'s repeated dilation, with the same answer."""
    outside, count = ndimage.label(~mask)
    edge = np.zeros(count + 1, dtype=bool)
    for side in (outside[0], outside[-1], outside[:, 0], outside[:, -1]):
        edge[side] = True
    edge[0] = False
    return ~edge[outside]


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
