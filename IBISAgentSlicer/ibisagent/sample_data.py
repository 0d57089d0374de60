"""Real sample data with ground truth: the MNI152 T1 template and its tissue masks, which
nilearn ships inside its wheel (nothing is downloaded).

Slices are returned in *display orientation* for the standard views of a RAS volume: row 0 at
the top of the screen (anterior/superior), column 0 at the screen's left (patient right), as
the Red (axial), Green (coronal) and Yellow (sagittal) views of 3D Slicer show them.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

TISSUES = ("brain", "grey", "white")
PLANES = ("axial", "coronal", "sagittal")
#: The [i, j, k] axis each plane's slices are taken along.
AXIS_OF_PLANE = {"axial": 2, "coronal": 1, "sagittal": 0}


def _load(what: str):
    try:
        from nilearn import datasets
    except ImportError as error:  # pragma: no cover - message for users without the extra
        raise ImportError("The sample data needs nilearn: pip install 'ibisagent[demo]'.") from error
    loaders = {
        "t1": datasets.load_mni152_template,
        "brain": datasets.load_mni152_brain_mask,
        "grey": datasets.load_mni152_gm_mask,
        "white": datasets.load_mni152_wm_mask,
    }
    return loaders[what](resolution=1)


def mni152_volume(tissue: str = "white") -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T1 float32 [i, j, k], tissue mask bool [i, j, k], 4x4 affine voxel->RAS) of MNI152."""
    if tissue not in TISSUES:
        raise ValueError(f"Unknown tissue {tissue!r}; choose one of: {', '.join(TISSUES)}.")
    t1 = _load("t1")
    mask = _load(tissue)
    return (
        np.asarray(t1.get_fdata(), dtype=np.float32),
        np.asarray(mask.get_fdata()) > 0.5,
        np.asarray(t1.affine, dtype=float),
    )


def display_slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """One slice of an [i, j, k] RAS-aligned volume, as Slicer's view of that plane shows it.

    Slicer's views: axial (Red) has patient right on the screen's left and anterior at the top;
    coronal (Green) has patient right on the left and superior at the top; sagittal (Yellow) has
    anterior on the left and superior at the top.
    """
    if plane == "axial":
        return volume[::-1, ::-1, index].T
    if plane == "coronal":
        return volume[::-1, index, ::-1].T
    if plane == "sagittal":
        return volume[index, ::-1, ::-1].T
    raise ValueError(f"Unknown plane {plane!r}; choose one of: {', '.join(PLANES)}.")


def mni152_slice(tissue: str = "white", plane: str = "axial", index: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(T1 slice float32 (H, W), tissue mask bool (H, W)) in display orientation.

    ``index`` is the voxel index along the plane's axis; by default the middle of the brain.
    """
    t1, mask, _ = mni152_volume(tissue)
    if plane not in PLANES:
        raise ValueError(f"Unknown plane {plane!r}; choose one of: {', '.join(PLANES)}.")
    axis = AXIS_OF_PLANE[plane]
    if index is None:
        index = centre_index(mask, plane)
    if not 0 <= index < t1.shape[axis]:
        raise ValueError(f"Slice index {index} is outside 0..{t1.shape[axis] - 1} for the {plane} plane.")
    image = np.ascontiguousarray(display_slice(t1, plane, index), dtype=np.float32)
    return image, np.ascontiguousarray(display_slice(mask, plane, index))


def centre_index(mask: np.ndarray, plane: str) -> int:
    """The slice index along ``plane``'s axis of an [i, j, k] mask where the mask is largest."""
    axis = AXIS_OF_PLANE[plane]
    counts = mask.sum(axis=tuple(a for a in range(3) if a != axis))
    return int(np.argmax(counts))


ROUGHNESS = ("eroded", "cut", "leaky", "mixed")


def rough_mask(truth: np.ndarray, kind: str = "cut", seed: int = 0) -> np.ndarray:
    """A plausible rough first attempt at ``truth``, the kind a person asks the agent to fix.

    ``eroded``: shrunk by about 4% of the object's size; ``cut``: a band through the object is
    missing; ``leaky``: dilated, plus a blob spilling outside; ``mixed``: a band missing and a
    blob spilling outside, so both positive and negative clicks are needed. Deterministic for a
    given seed.
    """
    from scipy import ndimage

    truth = np.asarray(truth, dtype=bool)
    if not truth.any():
        raise ValueError("Cannot roughen an empty mask.")
    rows, cols = np.nonzero(truth)
    size = int(max(np.ptp(rows), np.ptp(cols))) + 1
    rng = np.random.default_rng(seed)
    if kind == "eroded":
        return ndimage.binary_erosion(truth, iterations=max(1, int(0.04 * size)))
    if kind == "cut":
        mask = truth.copy()
        centre = int(rng.integers(rows.min() + size // 4, rows.max() - size // 4 + 1))
        half = max(2, int(0.08 * size))
        mask[max(0, centre - half): centre + half, :] = False
        return mask
    if kind in ("leaky", "mixed"):
        if kind == "leaky":
            mask = ndimage.binary_dilation(truth, iterations=max(1, int(0.03 * size)))
        else:
            mask = rough_mask(truth, "cut", seed)
        yy, xx = np.mgrid[: truth.shape[0], : truth.shape[1]]
        edge = int(rng.integers(len(rows)))
        radius = max(3, int(0.12 * size))
        blob = (yy - rows[edge]) ** 2 + (xx - cols[edge]) ** 2 <= radius ** 2
        return mask | blob
    raise ValueError(f"Unknown roughness {kind!r}; choose one of: {', '.join(ROUGHNESS)}.")
