"""`sitk`: the classical click tool, no weights, the CPU default (SimpleITK, scipy, numpy).

How a click acts: each click *claims* the connected pixels that look like the clicked spot.

- Looks like: a click's value is the mean smoothed value (grey level, or RGB colour) in its
  disk of `seed_radius` pixels. A pixel's *unlikeness* to a value is their distance in units of
  the tolerance (``tolerance`` times the image's intensity range, at least `NOISE_FACTOR` noise
  deviations). A click may claim a pixel at most ``likeness`` tolerances unlike it, and not more
  than ``margin`` tolerances less like it than like some click of the other polarity. Until the
  first negative click, the median value of the image border stands in as the background
  example, as the painted background seed does in Slicer's Grow from seeds.
- Connected: reaching a pixel costs a geodesic arrival time from SimpleITK's fast marching,
  started at the click with speed ``1 / (1 + unlikeness^2)``: one per pixel inside a region like
  the click, far more across unlike pixels. A click reaches at most ``reach`` times the image's
  larger side (in pixels of a homogeneous region).
- Competition: where several clicks may claim a pixel, the one that reaches it first wins (the
  newer one on a tie), and the pixel takes its polarity.

How the prior mask is used: pixels no click claims keep their prior value. On the first step of
"continue my mask" the prior is the user's own mask, so it changes only where the clicks' claims
reach: connected regions that look like a clicked spot; on later steps the prior is the previous
result. Every click is re-sent at each step and its claim recomputed, so earlier clicks keep
their effect (a positive click's pixel always stays inside, a negative one's outside) and the
result depends only on (image, clicks, prior mask). No prediction state is kept: ``state`` is
always None; ``score`` is the fraction of the image the clicks claim.

Per image (`set_image`) it computes the smoothed values, the tolerance and the border value
once. A click's value, arrival-time map and unlikeness map depend only on the image and the
click's pixel, so the last `MEMO_SIZE` are memoised with the image: each step marches once in the
usual case where one click is added (about 45 ms at 512 x 512 on one core), and re-checking the
earlier clicks' claims costs under 1 ms each.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..clicks import Click
from .base import Prediction, Segmenter

#: Clicks whose maps are kept per image (two H x W float32 maps each: 2 MB at 512 x 512); more
#: than a 20-click episode needs.
MEMO_SIZE = 32
#: The tolerance is never below this many noise standard deviations (robust estimate).
NOISE_FACTOR = 3.0


def seed_radius(shape: Tuple[int, int]) -> int:
    """Radius in pixels of the disk a click stands for: 1 px per 128 px of the larger side, at
    least 1 (2 px on a 233-pixel slice, 4 px at 512). Shared with `growcut` for fairness."""
    return max(1, int(round(max(shape) / 128.0)))


def disk_offsets(radius: int) -> Tuple[np.ndarray, np.ndarray]:
    """(row offsets, column offsets) of the pixels within ``radius`` of a centre pixel."""
    dy, dx = np.mgrid[-radius: radius + 1, -radius: radius + 1]
    inside = dy * dy + dx * dx <= radius * radius
    return dy[inside], dx[inside]


@dataclass
class _ImageData:
    """What `set_image` computes: ``values`` float32 (H, W, C) smoothed pixel values (C = 1 for
    grey, 3 for colour), ``tolerance`` in grey levels, ``border`` float32 (C,) the median value
    of the image's outermost pixels, and the memo of (click value, arrival-time map, unlikeness
    map) keyed by the click's pixel (x, y)."""

    values: np.ndarray
    tolerance: float
    border: np.ndarray
    memo: "OrderedDict[Tuple[int, int], Tuple[np.ndarray, np.ndarray, np.ndarray]]" = field(
        default_factory=OrderedDict)


class SitkSegmenter(Segmenter):
    name = "sitk"
    description = "classical geodesic click tool (SimpleITK fast marching); CPU, no weights"

    def __init__(
        self,
        tolerance: float = 0.04,
        likeness: float = 10.0,
        margin: float = 0.5,
        reach: float = 3.0,
        smoothing: float = 0.6,
    ) -> None:
        """``tolerance``: value difference, as a fraction of the image's intensity range, that
        doubles the cost of a step (never below `NOISE_FACTOR` noise deviations).
        ``likeness``: a click claims no pixel more than this many tolerances from its value.
        ``margin``: nor a pixel more than this many tolerances closer to a click of the other
        polarity (or, before any negative click, to the image border) than to it.
        ``reach``: how far a click reaches through a homogeneous region, as a fraction of the
        image's larger side. ``smoothing``: Gaussian sigma in pixels applied before all else."""
        super().__init__()
        if min(tolerance, likeness, reach) <= 0 or margin < 0 or smoothing < 0:
            raise ValueError("tolerance, likeness and reach must be positive; margin and smoothing not negative.")
        self.tolerance = float(tolerance)
        self.likeness = float(likeness)
        self.margin = float(margin)
        self.reach = float(reach)
        self.smoothing = float(smoothing)

    # -- per image -----------------------------------------------------------------------------
    def _embed(self, image: np.ndarray) -> object:
        grey = bool(np.all(image[..., 0] == image[..., 1]) and np.all(image[..., 1] == image[..., 2]))
        channels = [image[..., 0]] if grey else [image[..., c] for c in range(3)]
        values = []
        for channel in channels:
            itk_image = sitk.GetImageFromArray(channel.astype(np.float32))
            if self.smoothing > 0:
                itk_image = sitk.SmoothingRecursiveGaussian(itk_image, self.smoothing)
            values.append(sitk.GetArrayFromImage(itk_image))
        stacked = np.stack(values, axis=-1)
        low, high = np.percentile(stacked.reshape(-1, stacked.shape[-1]), [1.0, 99.0], axis=0)
        scale = max(float((high - low).max()), 1.0)
        luminance = stacked.mean(axis=-1)
        noise = 1.4826 * float(np.median(np.abs(luminance - ndimage.median_filter(luminance, size=3))))
        tolerance = max(self.tolerance * scale, NOISE_FACTOR * noise)
        ring = np.concatenate([stacked[0], stacked[-1], stacked[1:-1, 0], stacked[1:-1, -1]])
        return _ImageData(stacked, tolerance, np.median(ring, axis=0))

    # -- per step ------------------------------------------------------------------------------
    def _predict(self, image_state, clicks, prior_mask, prior_state) -> Prediction:
        data: _ImageData = image_state
        shape = self.image_shape
        marched = [self._arrival(data, click) for click in clicks]
        closest = {True: np.full(shape, np.inf, np.float32), False: np.full(shape, np.inf, np.float32)}
        for click, (_, _, distance) in zip(clicks, marched):
            np.minimum(closest[click.positive], distance, out=closest[click.positive])
        if not any(not click.positive for click in clicks):
            closest[False] = self._unlikeness(data, data.border)
        best = np.full(shape, np.inf, dtype=np.float32)
        positive = np.zeros(shape, dtype=bool)
        for click, (_, arrival, distance) in zip(clicks, marched):
            allowed = (distance <= self.likeness) & (distance <= closest[not click.positive] + self.margin)
            wins = allowed & (arrival <= best)
            best[wins] = arrival[wins]
            positive[wins] = click.positive
        claimed = np.isfinite(best)
        mask = np.zeros(shape, dtype=bool) if prior_mask is None else prior_mask.copy()
        mask[claimed] = positive[claimed]
        for click in clicks:
            mask[click.y, click.x] = click.positive
        score = float(claimed.mean()) if clicks else 0.0
        return Prediction(mask, None, score)

    def _unlikeness(self, data: _ImageData, value: np.ndarray) -> np.ndarray:
        """float32 (H, W): each pixel's distance from ``value`` (C,), in tolerances."""
        difference = data.values - value.astype(np.float32)
        if difference.shape[-1] == 1:
            return np.abs(difference[..., 0]) / np.float32(data.tolerance)
        return np.sqrt((difference * difference).sum(axis=-1)) / np.float32(data.tolerance)

    def _arrival(self, data: _ImageData, click: Click) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(click value (C,), float32 (H, W) geodesic arrival time from it (inf beyond reach),
        float32 (H, W) unlikeness of every pixel to the value). Memoised per click pixel."""
        key = (click.x, click.y)
        if key in data.memo:
            data.memo.move_to_end(key)
            return data.memo[key]
        shape = data.values.shape[:2]
        dy, dx = disk_offsets(seed_radius(shape))
        y, x = dy + click.y, dx + click.x
        inside = (y >= 0) & (y < shape[0]) & (x >= 0) & (x < shape[1])
        value = data.values[y[inside], x[inside]].mean(axis=0)
        distance = self._unlikeness(data, value)
        speed = sitk.GetImageFromArray(1.0 / (1.0 + distance * distance))
        limit = self.reach * max(shape)
        march = sitk.FastMarchingImageFilter()
        march.SetTrialPoints([(int(click.x), int(click.y))])
        march.SetStoppingValue(limit)
        arrival = sitk.GetArrayFromImage(march.Execute(speed))  # a copy: a view would outlive the image
        entry = (value, np.where(arrival > limit, np.inf, arrival).astype(np.float32), distance)
        data.memo[key] = entry
        while len(data.memo) > MEMO_SIZE:
            data.memo.popitem(last=False)
        return entry


def build(**options) -> SitkSegmenter:
    return SitkSegmenter(**options)
