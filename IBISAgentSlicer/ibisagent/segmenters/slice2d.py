"""`slice2d`: a 3D click tool made of a 2D one: each click edits only the slice it lies on.

The simplest honest 3D tool: a click on voxel (k, j, i) runs the 2D tool (``graphcut`` by
default, options passed through) on the slice through that voxel across ``slice_axis``, with all
the clicks on that slice and the slice's current mask, exactly as 2D "continue my mask" does on
that slice; every other voxel keeps its label. It never spreads a click into other slices, so it
suits volumes with thick slices (the usual axial CT or MRI series, where neighbouring slices
differ most) and is the cautious choice for reviewing a finished segment slice by slice.

``slice_axis`` (array axis 0 = k, 1 = j, 2 = i) defaults to the volume's coarsest spacing (the
acquisition's slice direction; k when the spacing is even). A 3D session reads it and has the
agent look only at slices across that axis (`ibisagent.volume_session`).

Slices are shown to the 2D tool through one grey window for the whole volume
(`ibisagent.volume_slices.RGBSlices`), in array order (a 2D tool does not care about display
orientation). Each slice's embedding is kept for the last ``cache`` slices used. No box start:
the 2D tools take clicks and a mask only.

State (`VolumePrediction.state`): {array index along ``slice_axis``: (the clicks on that slice the
2D state was made from, the 2D tool's state)}, a new dict each step, so undo is exact.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Optional, Tuple, Union

import numpy as np

from ..clicks import Click
from .base import Segmenter
from .volume_base import BoxPrompt, VolumePrediction, VolumeSegmenter


class Slice2DSegmenter(VolumeSegmenter):
    """See the module docstring. ``tool``: the 2D tool (a built `Segmenter`); ``axis``: the
    slice axis, or None for the coarsest spacing; ``cache``: slice embeddings kept."""

    name = "slice2d"
    description = "each click edits only its own slice, with the 2D tool (no weights when that is graphcut)"

    def __init__(self, tool: Segmenter, axis: Optional[int] = None, cache: int = 8) -> None:
        super().__init__()
        if axis is not None and axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2 (k, j, i) or None; got {axis!r}.")
        if cache < 1:
            raise ValueError(f"cache must be at least 1; got {cache}.")
        self.tool = tool
        self.description = f"each click edits only its own slice, with the 2D tool {tool.name!r}"
        self._axis = axis
        self._cache_size = int(cache)
        self._cache: "OrderedDict[int, object]" = OrderedDict()
        self.slice_axis: Optional[int] = axis

    def _embed(self, volume: np.ndarray, spacing: Tuple[float, float, float]) -> object:
        from ..volume_slices import RGBSlices

        axis = self._axis if self._axis is not None else int(np.argmax(spacing)) if len(set(spacing)) > 1 else 0
        self.slice_axis = axis
        self._cache.clear()
        return RGBSlices(np.moveaxis(volume, axis, 0))

    def _predict(self, slices, clicks, prior_mask, prior_state, box: Optional[BoxPrompt]) -> VolumePrediction:
        if box is not None:
            raise ValueError("The slice2d tool cannot start from a box; start from a mask or a click.")
        axis = self.slice_axis
        shape = self.volume_shape
        current = np.zeros(shape, bool) if prior_mask is None else prior_mask
        states: Dict[int, tuple] = dict(prior_state) if isinstance(prior_state, dict) else {}
        by_slice: Dict[int, list] = {}
        for click in clicks:
            voxel = click.voxel
            rest = [v for a, v in enumerate(voxel) if a != axis]
            by_slice.setdefault(voxel[axis], []).append(Click(rest[1], rest[0], click.positive, click.origin))
        redo = [n for n, on_slice in by_slice.items() if states.get(n, ((), None))[0] != _key(on_slice)]
        for gone in [n for n in states if n not in by_slice]:
            del states[gone]  # clicks taken back (a shorter list): that slice's 2D state goes too
        if not redo:
            return VolumePrediction(current, states, None)
        mask = np.array(current, dtype=bool, copy=True)
        planes = np.moveaxis(mask, axis, 0)
        for index in sorted(redo):
            self._use_slice(slices, index)
            previous = states.get(index, ((), None))[1]
            prediction = self.tool.predict(by_slice[index], planes[index].copy(), previous)
            planes[index] = prediction.mask
            states[index] = (_key(by_slice[index]), prediction.state)
        low, high = min(redo), max(redo) + 1
        changed = tuple((low, high) if a == axis else (0, shape[a]) for a in range(3))
        return VolumePrediction(mask, states, changed)

    def _use_slice(self, slices, index: int) -> None:
        """Set the 2D tool's image to slice ``index``, reusing a kept embedding."""
        state = self._cache.pop(index, None)
        if state is None:
            self.tool.set_image(slices[index])
            state = self.tool.image_state()
        else:
            self.tool.use_image_state(state)
        self._cache[index] = state
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


def _key(clicks) -> tuple:
    return tuple((c.x, c.y, c.positive) for c in clicks)


def build(tool: Union[str, Segmenter] = "graphcut", axis: Optional[int] = None, cache: int = 8,
          **tool_options) -> Slice2DSegmenter:
    """The registry's builder: ``tool`` names the 2D tool (its options pass through) or is a
    built one (`ibisagent.segmenters.as_segmenter`)."""
    from . import as_segmenter

    return Slice2DSegmenter(as_segmenter(tool, **tool_options), axis, cache)
