"""A mask file with several labels: the label worked on, and writing back only what changed.

The one owner of reading a label out of a label map, for every command that takes ``--mask``
and ``--label`` (``continue`` on an image, a slice or a whole volume, ``propagate``):

Masks on disk are often label maps (0 background, 1 liver, 2 tumour, ...), of any integer or float
data type. A headless command works on one label (``--label N``; by default the only non-zero
label, else it asks), as a bool mask (`LabelMask.binary`), and writes back a copy of the file's
own values in which only the voxels the work changed differ (`LabelMask.merged`): where the new
mask gained a voxel that was background (or already this label) it holds the label, where it
lost a voxel of the label it holds 0. A voxel of another label (`LabelMask.others`: what a tool
working in 3D must treat as locked) is never changed, on the worked slice or anywhere else, so
the output keeps every other label, the label values and the data type bit for bit.

A reference mask (``--truth``) is read by the same rule (`reference_mask`).
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np


class LabelMask:
    """``values``: the mask file's values ([row, col] or [k, j, i], any numeric type).
    ``label``: the label worked on; None picks the only non-zero value (1 for an empty mask)
    and refuses a mask with several, listing them. ``source`` names the file in messages."""

    def __init__(self, values: np.ndarray, label: Optional[float] = None, source: str = "the mask") -> None:
        self.values = np.asarray(values)
        if self.values.dtype == bool:
            self.values = self.values.astype(np.uint8)
        present = self.labels()
        if label is None:
            if len(present) > 1:
                raise ValueError(f"{source} holds several labels ({_listed(present)}); choose the one to work on "
                                 "with --label N.")
            label = present[0] if present else 1
        elif label == 0:
            raise ValueError("--label 0 is the background; give the label to work on (e.g. --label 1).")
        value = np.asarray(label).astype(self.values.dtype)
        if value != label:
            raise ValueError(f"--label {label:g} cannot be stored in {source}, whose values are "
                             f"{self.values.dtype}.")
        self.label = value[()]
        self.binary = self.values == self.label
        others = (self.values != 0) & ~self.binary
        others.flags.writeable = False
        self._others = others if others.any() else None

    def labels(self) -> List[float]:
        """The non-zero values present, in increasing order."""
        found = np.unique(self.values[self.values != 0])
        return [value.item() for value in found]

    def merged(self, mask: np.ndarray) -> np.ndarray:
        """A copy of the values in which the label covers exactly ``mask`` (bool, same shape)
        wherever that is free (background or this label); every other voxel is unchanged."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.values.shape:
            raise ValueError(f"The new mask has shape {mask.shape}; the mask file has {self.values.shape}.")
        out = self.values.copy()
        out[mask & (self.values == 0)] = self.label
        out[~mask & self.binary] = 0
        return out

    def others(self) -> Optional[np.ndarray]:
        """bool, the values' shape: the voxels of other labels (never changed by `merged`; a
        tool working on the whole mask must leave them alone; read-only); None when there are none."""
        return self._others

    def blocked(self, mask: np.ndarray) -> int:
        """Voxels of ``mask`` that another label holds (left to that label by `merged`)."""
        mask = np.asarray(mask, dtype=bool)
        return int(np.count_nonzero(mask & self._others)) if self._others is not None else 0


def reference_mask(values: np.ndarray, label: Optional[float] = None, source: str = "the reference mask") -> np.ndarray:
    """A reference mask's target, bool: any non-zero value when it holds one label, else the
    label worked on (``--label``; refused without one, as `LabelMask` does)."""
    values = np.asarray(values)
    several = len(np.unique(values[values != 0])) > 1
    return LabelMask(values, label, source).binary if several else values != 0


def _listed(values: List[float]) -> str:
    return ", ".join(f"{value:g}" for value in values)
