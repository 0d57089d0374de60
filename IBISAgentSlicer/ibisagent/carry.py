"""Carrying a finished slice's mask onto the next slice, for tools that cannot propagate.

A *carrier* turns the neighbour's final mask into the starting mask of the next slice; the
agent then refines that start with the 2D tool ("continue my mask"). Two carriers:

- `PriorCarrier` ("prior"): the neighbour's mask is the 2D tool's prior on the new slice, with
  no click, which is exactly what "continue my mask" sends on its first call. SAM-family tools
  re-segment from it (box, deepest point and mask prompt); a tool that keeps its prior where no
  click reaches returns it unchanged, which is copying.
- `WatershedCarrier` ("watershed", the CPU default): marker-controlled watershed (SimpleITK's
  morphological watershed from markers) on the new slice's Gaussian gradient magnitude. Markers
  come from the neighbour's mask: its core is target (each connected part keeps the pixels at
  least `CORE_DEPTH` of its own deepest interior depth, so every part survives), and everything
  farther outside it than `BAND` times its half-thickness (its deepest interior depth) is
  background. The boundary settles on the strongest edge in the band between, so the mask
  follows a target that grows, shrinks or drifts. All of it is computed in a window around the
  neighbour's mask. Measured on the dev volumes it beats copying (benchmarks/README.md); the 2D
  tools tried as carriers did not.

When the target ends the watershed still returns a region around the core markers. So the
carrier also checks that the region stands out from its surroundings as the target did on the
start slices: its *contrast* (median inside minus median of a ring outside, over their pooled
robust spread, in grey levels of the shown image) must keep `KEEP_CONTRAST` of the start
slices' contrast, in the same direction. A region that does not is still returned (it is the
best start for whoever checks the slice), but the carry is marked *faded* (`Carrier.faded`):
the volume episode ends the target there unless the slice is edited (its "faded" rule).
Returning an empty start instead would leave an annotator who sees the target's faint tail
only a click from scratch, which on a small tail claims a region many times its size. Targets
whose start contrast is below `MIN_CONTRAST` (they do not stand out in grey level) skip that
check and end by the other rules. The constants were chosen on the dev volumes (BraTS FLAIR tumour, DeepLesion CT
lesions, MNI152 brain).

Images are RGB uint8 (H, W, 3), masks bool (H, W), both in display orientation.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .imaging import interior_depth
from .segmenters.base import Segmenter

#: Core markers: pixels at least this fraction of their part's deepest interior depth.
CORE_DEPTH = 0.5
#: Background markers: farther outside the mask than this many half-thicknesses (at least 2 px).
BAND = 0.3
#: Gaussian sigma (pixels) of the gradient the watershed runs on.
GRADIENT_SIGMA = 1.0
#: The carried region must keep this fraction of the start slices' contrast.
KEEP_CONTRAST = 0.5
#: Start contrast below which the contrast check is skipped.
MIN_CONTRAST = 1.0
#: Width of the ring the contrast is measured against, in half-thicknesses (at least 2 px).
RING = 0.3


def _grey(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _window(mask: np.ndarray, margin: float) -> Tuple[slice, slice]:
    """The mask's bounding box grown by ``margin`` pixels, clipped to the image: everything the
    carrier computes lies inside it (the work is proportional to the target, not the slice)."""
    rows, cols = np.nonzero(mask)
    grow = int(np.ceil(margin)) + 2
    return (slice(max(0, rows.min() - grow), rows.max() + grow + 1),
            slice(max(0, cols.min() - grow), cols.max() + grow + 1))


def core(mask: np.ndarray, depth: Optional[np.ndarray] = None) -> np.ndarray:
    """The pixels of each connected part of ``mask`` at least `CORE_DEPTH` of that part's
    deepest interior depth (never empty for a non-empty mask). ``depth``: its
    `interior_depth`, when already computed."""
    depth = interior_depth(mask) if depth is None else depth
    labels, count = ndimage.label(mask)
    threshold = np.full(count + 1, np.inf)
    for number, box in enumerate(ndimage.find_objects(labels), start=1):
        threshold[number] = CORE_DEPTH * depth[box][labels[box] == number].max()
    return mask & (depth >= threshold[labels])


def contrast(image: np.ndarray, mask: np.ndarray, ring: Optional[np.ndarray] = None) -> float:
    """(median inside ``mask`` - median of a ring outside it) / (pooled robust standard
    deviation + 1 grey level), on the grey image; 0 when either side is empty. The ring is the
    pixels outside the mask within `RING` half-thicknesses of it, unless ``ring`` is given."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return 0.0
    if ring is None:
        width = max(2.0, RING * float(interior_depth(mask).max()))
        ring = ~mask & (ndimage.distance_transform_edt(~mask) <= width)
    if not ring.any():
        return 0.0
    grey = _grey(image)
    inside, outside = grey[mask].astype(np.float64), grey[ring].astype(np.float64)
    centre_in, centre_out = np.median(inside), np.median(outside)
    spread = np.sqrt((_robust_var(inside, centre_in) + _robust_var(outside, centre_out)) / 2.0) + 1.0
    return float((centre_in - centre_out) / spread)


def _robust_var(values: np.ndarray, centre: float) -> float:
    """Variance estimated from the median absolute deviation (a few stray pixels at the edge of
    a carried region must not hide its contrast)."""
    return float((1.4826 * np.median(np.abs(values - centre))) ** 2)


def watershed_carry(image: np.ndarray, neighbour: np.ndarray) -> Tuple[np.ndarray, Tuple[slice, slice], float]:
    """(the watershed region grown from ``neighbour``'s markers, the window it lies in, the
    neighbour's half-thickness) on ``image``; see the module docstring. The region is a bool
    array of the window's shape. ``neighbour`` must not be empty."""
    depth = interior_depth(neighbour)
    half = max(1.0, float(depth.max()))
    band = max(2.0, BAND * half)
    box = _window(neighbour, band + max(2.0, RING * half) + 3.0 * GRADIENT_SIGMA)
    near = neighbour[box]
    markers = np.zeros(near.shape, dtype=np.uint8)
    markers[ndimage.distance_transform_edt(~near) > band] = 2
    markers[core(near, depth[box])] = 1
    gradient = ndimage.gaussian_gradient_magnitude(_grey(image[box]), GRADIENT_SIGMA)
    labels = sitk.MorphologicalWatershedFromMarkers(sitk.GetImageFromArray(gradient), sitk.GetImageFromArray(markers),
                                                    markWatershedLine=False, fullyConnected=False)
    return sitk.GetArrayFromImage(labels) == 1, box, half


class Carrier:
    """Base class: `start` sees each start slice, `carry` gives the next slice's start, `faded`
    says whether that start no longer looks like the target."""

    name = "base"
    #: Whether the last `carry` found that the target no longer stands out (see the module docstring).
    faded = False

    def start(self, image: np.ndarray, mask: np.ndarray) -> None:
        """``mask`` is a start slice's mask on ``image`` (what the user drew or accepted)."""

    def carry(self, image: np.ndarray, neighbour: np.ndarray, tool: Segmenter) -> np.ndarray:
        """The starting mask on ``image`` from the ``neighbour`` slice's final mask; ``tool`` is
        the 2D tool on ``image`` (it embeds the image on first use)."""
        raise NotImplementedError


class PriorCarrier(Carrier):
    """The neighbour's mask as the 2D tool's prior, no click (see the module docstring)."""

    name = "prior"

    def carry(self, image, neighbour, tool):
        if not neighbour.any():
            return np.zeros_like(neighbour, dtype=bool)
        return tool.predict([], prior_mask=neighbour).mask


class WatershedCarrier(Carrier):
    """Marker-controlled watershed from the neighbour's mask (see the module docstring)."""

    name = "watershed"

    def __init__(self) -> None:
        self._start_contrasts: List[float] = []

    @property
    def reference_contrast(self) -> Optional[float]:
        """The start slices' mean contrast, or None before any start."""
        return float(np.mean(self._start_contrasts)) if self._start_contrasts else None

    def start(self, image, mask):
        if np.any(mask):
            self._start_contrasts.append(contrast(image, mask))

    def carry(self, image, neighbour, tool):
        neighbour = np.asarray(neighbour, dtype=bool)
        self.faded = False
        if not neighbour.any():
            return np.zeros_like(neighbour)
        region, box, half = watershed_carry(image, neighbour)
        mask = np.zeros_like(neighbour)
        mask[box] = region
        self.faded = bool(self._faded(image[box], region, half))
        return mask

    def _faded(self, image: np.ndarray, region: np.ndarray, half: float) -> bool:
        """Whether ``region`` (in the window ``image`` shows) no longer stands out like the target
        on the start slices. The ring is measured with the neighbour's ``half`` thickness."""
        reference = self.reference_contrast
        if reference is None or abs(reference) < MIN_CONTRAST:
            return False
        width = max(2.0, RING * half)
        ring = ~region & (ndimage.distance_transform_edt(~region) <= width)
        return contrast(image, region, ring) * np.sign(reference) < KEEP_CONTRAST * abs(reference)


CARRIERS = {"watershed": WatershedCarrier, "prior": PriorCarrier}
