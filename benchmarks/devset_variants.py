"""Held-out halves and stress cases for judging the heuristic policy on the 2D dev set.

The dev set is small (86 cases) and the policy's thresholds were chosen on all of it, so its
figures overstate how the policy does on new cases of the same kinds. This module gives the
benchmark three kinds of data it was not tuned on:

- **Halves.** Within each group (case-name prefix), the cases sorted by name alternate between
  half ``A`` (1st, 3rd, ...) and half ``B`` (2nd, 4th, ...). Fixed by the names alone, so a change
  can be tuned on one half and confirmed on the other, then the roles swapped.
- **Rough starts of other kinds** than the dev set's ``initial/`` (erode, dilate, cut at 4% of the
  object's equivalent diameter), from the expert mask, each seeded by the case name and kind
  (sha256) so every run gives the same masks: ``shift`` (moved by 6% of the equivalent diameter in
  a random direction), ``leak`` (a disc of half the equivalent radius spilling out from a random
  outline pixel), ``notch`` (the same disc bitten out), ``erode8`` and ``dilate8`` (8% of the
  equivalent diameter, capped at 40% of the mean structure width so thin vessels survive), and
  ``near`` (the outline moved by a smooth random field of about 1.5 pixels: a nearly right mask,
  the kind a 3D review meets on every slice).
- **The expert mask on a changed image**: ``truth~photo`` (a seeded gamma in [0.6, 0.8] or
  [1.25, 1.6] and Gaussian noise of 5 grey levels) and ``truth~small`` (image and mask resized
  to 70%: another resolution, bilinear for the image, nearest for the mask). The mask is still
  right, so the policy should keep it.

Conventions: images are RGB uint8 (H, W, 3), masks bool (H, W).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Callable, Dict, Iterable, Tuple

import numpy as np
from PIL import Image
from scipy import ndimage

HALVES = ("A", "B")
ROUGH_KINDS = ("shift", "leak", "notch", "erode8", "dilate8", "near")
IMAGE_KINDS = ("truth~photo", "truth~small")


def halves(names: Iterable[str]) -> Dict[str, str]:
    """Case name -> "A" or "B": per group (name up to the first ``_``), sorted by name, alternating."""
    by_group = defaultdict(list)
    for name in names:
        by_group[name.split("_", 1)[0]].append(name)
    return {name: HALVES[k % 2] for group in by_group.values() for k, name in enumerate(sorted(group))}


def rng_for(name: str, kind: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{name}/{kind}".encode()).hexdigest()
    return np.random.default_rng(int(digest[:16], 16))


def _size(truth: np.ndarray) -> Tuple[float, float]:
    """(equivalent diameter, mean structure width) of a mask, in pixels."""
    area = float(truth.sum())
    boundary = float((truth & ~ndimage.binary_erosion(truth)).sum())
    return 2.0 * np.sqrt(area / np.pi), 2.0 * area / max(boundary, 1.0)


def _outline_pixel(truth: np.ndarray, rng: np.random.Generator) -> Tuple[int, int]:
    rows, cols = np.nonzero(truth & ~ndimage.binary_erosion(truth))
    k = int(rng.integers(rows.size))
    return int(rows[k]), int(cols[k])


def _disc_at(shape, centre, radius: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def _shift(truth, rng):
    diameter, _ = _size(truth)
    step = max(2.0, 0.06 * diameter)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    dy, dx = int(round(step * np.sin(angle))), int(round(step * np.cos(angle)))
    return ndimage.shift(truth.astype(np.uint8), (dy, dx), order=0, mode="constant").astype(bool)


def _blob(truth, rng):
    diameter, _ = _size(truth)
    return _disc_at(truth.shape, _outline_pixel(truth, rng), max(3.0, diameter / 4.0))


def _notch(truth, rng):
    bitten = truth & ~_blob(truth, rng)
    return bitten if bitten.any() else truth.copy()


def _by(truth, grow: bool):
    diameter, width = _size(truth)
    radius = max(1.0, min(0.08 * diameter, 0.4 * width))
    if grow:
        return ndimage.distance_transform_edt(~truth) <= radius
    shrunk = ndimage.distance_transform_edt(truth) > radius
    return shrunk if shrunk.any() else truth.copy()


def _near(truth, rng):
    """The outline moved by a smooth random field (standard deviation about 1.5 pixels)."""
    signed = ndimage.distance_transform_edt(truth) - ndimage.distance_transform_edt(~truth)
    field = ndimage.gaussian_filter(rng.normal(size=truth.shape), 6.0)
    field *= 1.5 / max(float(field.std()), 1e-9)
    moved = signed + field > 0.5
    return moved if moved.any() else truth.copy()


ROUGH: Dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "shift": _shift,
    "leak": lambda truth, rng: truth | _blob(truth, rng),
    "notch": _notch,
    "erode8": lambda truth, rng: _by(truth, grow=False),
    "dilate8": lambda truth, rng: _by(truth, grow=True),
    "near": _near,
}


def rough_start(name: str, kind: str, truth: np.ndarray) -> np.ndarray:
    """The ``kind`` rough start (see the module docstring) of case ``name``'s expert mask."""
    truth = np.asarray(truth, dtype=bool)
    return ROUGH[kind](truth, rng_for(name, kind))


def changed_image(name: str, kind: str, rgb: np.ndarray, truth: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(image, expert mask) of the ``kind`` image change (see the module docstring)."""
    rng = rng_for(name, kind)
    if kind == "truth~photo":
        gamma = rng.uniform(0.6, 0.8) if rng.random() < 0.5 else rng.uniform(1.25, 1.6)
        pixels = 255.0 * (rgb.astype(np.float64) / 255.0) ** gamma
        pixels += rng.normal(0.0, 5.0, size=rgb.shape[:2])[..., None]
        return np.clip(np.round(pixels), 0, 255).astype(np.uint8), truth.copy()
    if kind == "truth~small":
        rows, cols = truth.shape
        size = (max(4, round(0.7 * cols)), max(4, round(0.7 * rows)))
        image = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
        mask = np.asarray(Image.fromarray(truth.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
        return image, mask
    raise ValueError(f"Unknown image change {kind!r}; choose one of: {', '.join(IMAGE_KINDS)}.")
