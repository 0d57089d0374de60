"""The CVPR 2025 3D interactive protocol ("Foundation Models for Interactive 3D Biomedical
Image Segmentation"), reproduced from the challenge's `CVPR25_iter_eval.py` and `get_boxes.py`
(JunMa11/CVPR-MedSegFMCompetition), for one binary target.

One case: a start, then ``clicks`` clicks (5 in the challenge), the tool predicting after each.

- **Start** ``box`` (the challenge's): `box_of` = the target's slice range along the first array
  axis plus its 2D box on the slice of its median voxel, ``z_indices[len(z_indices) // 2]`` of
  the sorted distinct slice indices that hold target. Start ``mask`` (ours, for "continue my
  mask"): the user's rough 3D mask, given to the tool as its prior mask.
- **Click** (`next_click`): the error is ``prediction != truth``; its largest 26-connected
  component (cc3d; ties: the lowest label); the exact Euclidean distance transform (scipy) of
  that component, cropped to its bounding box with zero padding, so the array border counts as
  outside; the click is a voxel of the largest distance, chosen uniformly among ties with a
  generator seeded 42 (the script reseeds NumPy's global generator with 42 before every
  choice, so it is the same choice); positive where the truth has target, negative otherwise.
  No error: no click (the tool is asked again with the same clicks, as the script runs the
  model anyway).
- **Scores** after every prediction: DSC; NSD at 2 mm (`NSD_TOLERANCE_MM`) with DeepMind's
  `surface-distance` (the code the challenge's SurfaceDice.py copies) and the voxel spacing,
  0 when DSC <= 0.2 as the script does. ``DSC_AUC`` / ``NSD_AUC`` (`auc`): the trapezoid over
  the scores after clicks 1..N at unit spacing (the script: ``cumulative_trapezoid(dscs[-5:],
  arange(5))[-1]``; the box step is left out, so 5 clicks give at most 4.0). Final DSC and NSD:
  after the last click. Time: seconds of each ``predict`` call.

Where this differs from the script, on purpose:

- one binary target per case (the script loops over every class of a label map and averages;
  give a multi-class image one target at a time);
- no random box shift (``get_boxes.py`` grows the 2D box by 0-5 voxels per 256 at random), so
  runs are deterministic;
- the distance transform never falls back to a 2x-downsampled one (the script does above 60 M
  voxels of crop), and, like the script's, it is in voxel units (no spacing);
- the spacing is taken in the array's own axis order [k, j, i] (from the image's header);
- the box is given to the tool as a `BoxPrompt`, not as the challenge's npz keys.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
from scipy import integrate, ndimage

from .metrics import dice as dsc  # the challenge's DSC is the Dice of two bool volumes
from .segmenters.volume_base import BoxPrompt, VolumeSegmenter, VoxelClick

NSD_TOLERANCE_MM = 2.0
#: NSD is only computed above this DSC (the script's rule); below it NSD counts as 0.
NSD_MIN_DSC = 0.2
#: The seed of the generator that breaks ties between voxels of equal distance.
TIE_SEED = 42
STARTS = ("box", "mask")


def box_of(truth: np.ndarray) -> BoxPrompt:
    """The challenge's box of a non-empty bool target [k, j, i], without the random shift."""
    truth = np.asarray(truth, dtype=bool)
    if not truth.any():
        raise ValueError("the target is empty, so it has no box")
    slices = np.flatnonzero(truth.any(axis=(1, 2)))
    middle = int(slices[len(slices) // 2])
    rows, cols = np.nonzero(truth[middle])
    return BoxPrompt(int(slices[0]), int(slices[-1]), middle, int(rows.min()), int(rows.max()),
                     int(cols.min()), int(cols.max()))


def next_click(prediction: np.ndarray, truth: np.ndarray) -> Optional[VoxelClick]:
    """The challenge's next click for ``prediction`` against ``truth`` (bool [k, j, i]), or None
    when they agree everywhere."""
    import cc3d

    prediction, truth = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    error = prediction != truth
    if not error.any():
        return None
    components = cc3d.connected_components(error.view(np.uint8), connectivity=26)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    largest = components == int(np.argmax(sizes))
    distance = _component_distance(largest)
    if not distance.any():  # the script's fallback: any voxel of the component
        distance = largest.astype(np.float64)
    candidates = np.argwhere(distance == distance.max())
    chosen = candidates[np.random.RandomState(TIE_SEED).choice(len(candidates))]
    k, j, i = (int(v) for v in chosen)
    return VoxelClick(k, j, i, bool(truth[k, j, i]), origin="user")


def _component_distance(component: np.ndarray) -> np.ndarray:
    """float64 [k, j, i]: the exact EDT (voxel units) of ``component`` inside its bounding box,
    padded with one voxel of background on every side (the script pads by a quarter of the box;
    the nearest background is the same), zero elsewhere."""
    where = np.argwhere(component)
    low, high = where.min(axis=0), where.max(axis=0) + 1
    box = tuple(slice(a, b) for a, b in zip(low, high))
    crop = np.pad(component[box], 1)
    result = np.zeros(component.shape, dtype=np.float64)
    result[box] = ndimage.distance_transform_edt(crop)[1:-1, 1:-1, 1:-1]
    return result * component


def nsd(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float], tolerance_mm: float = NSD_TOLERANCE_MM,
        dice: Optional[float] = None) -> float:
    """Normalised surface Dice at ``tolerance_mm`` (``spacing`` in mm, [k, j, i] order); 0 when
    the DSC is at most `NSD_MIN_DSC`, as the script assumes."""
    import surface_distance

    prediction, truth = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    if (dsc(prediction, truth) if dice is None else dice) <= NSD_MIN_DSC:
        return 0.0
    with warnings.catch_warnings():  # it still spells scipy.ndimage's old namespaces; the maths is unchanged
        warnings.simplefilter("ignore", DeprecationWarning)
        distances = surface_distance.compute_surface_distances(truth, prediction, [float(s) for s in spacing])
    return float(surface_distance.compute_surface_dice_at_tolerance(distances, tolerance_mm))


def auc(scores_after_clicks: Sequence[float]) -> float:
    """The trapezoid of the scores after clicks 1..N at unit spacing (0 for fewer than 2)."""
    values = np.asarray(scores_after_clicks, dtype=float)
    if values.size < 2:
        return 0.0
    return float(integrate.trapezoid(values, dx=1.0))


@dataclass
class CaseRun:
    """One case under the protocol. ``dscs``/``nsds``/``seconds``: index 0 is the start (the
    tool's box prediction, or the user's mask as given), then one per click; ``clicks``: the
    clicks placed (fewer than asked when the prediction became perfect); ``mask``: the final
    prediction, bool [k, j, i]."""

    dscs: List[float] = field(default_factory=list)
    nsds: List[float] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)
    clicks: List[VoxelClick] = field(default_factory=list)
    mask: Optional[np.ndarray] = None

    @property
    def dsc_auc(self) -> float:
        return auc(self.dscs[1:])

    @property
    def nsd_auc(self) -> float:
        return auc(self.nsds[1:])

    @property
    def click_seconds(self) -> List[float]:
        return self.seconds[1:]


def run_case(segmenter: VolumeSegmenter, volume: np.ndarray, spacing: Sequence[float], truth: np.ndarray,
             start: str = "box", initial: Optional[np.ndarray] = None, clicks: int = 5) -> CaseRun:
    """Run the protocol on one volume [k, j, i] with ``spacing`` (mm, same order) and bool
    ``truth``; ``initial`` is the user's rough mask for the ``mask`` start."""
    truth = np.asarray(truth, dtype=bool)
    if start not in STARTS:
        raise ValueError(f"Unknown start {start!r}; choose one of: {', '.join(STARTS)}.")
    if clicks < 1:
        raise ValueError(f"The protocol needs at least one click; got {clicks}.")
    if not truth.any():
        raise ValueError("the ground-truth mask is empty")
    box: Optional[BoxPrompt] = None
    prior: Optional[np.ndarray] = None
    if start == "box":
        box = box_of(truth)
    else:
        if initial is None:
            raise ValueError("the mask start needs the user's starting mask")
        prior = np.asarray(initial, dtype=bool)
        if prior.shape != truth.shape:
            raise ValueError(f"the starting mask has shape {prior.shape}; the image has {truth.shape}")
    segmenter.set_volume(volume, spacing)
    run = CaseRun()
    placed: List[VoxelClick] = []
    state = None
    for step in range(clicks + 1):
        if step > 0:
            click = next_click(prior, truth)
            if click is not None:
                placed.append(click)
        began = time.perf_counter()
        if step == 0 and start == "mask":
            prediction = segmenter.predict([], prior_mask=prior, box=None)
        else:
            prediction = segmenter.predict(list(placed), prior_mask=prior, prior_state=state, box=box)
        run.seconds.append(time.perf_counter() - began)
        prior, state = prediction.mask, prediction.state
        score = dsc(prior, truth)
        run.dscs.append(score)
        run.nsds.append(nsd(prior, truth, spacing, dice=score))
    run.clicks = placed
    run.mask = prior
    segmenter.reset_volume()
    return run

