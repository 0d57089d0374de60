"""`propagation3d`: today's slice-by-slice product as a 3D click tool, a peer the 3D tools are
measured against. A 2D tool (``segmenter``, default `graphcut`) edits slices of the first array
axis, and `ibisagent.volume_episode.VolumeEpisode` (propagation only, no agent steps) carries
them through the neighbouring slices.

- **Start from a box:** the user works the box's slice: one positive click at the box's centre
  with the 2D tool (a SAM-family tool gets the box itself), kept inside the 2D box; then it is
  propagated through the box's slice range.
- **Start from a mask:** the user's 3D mask as it is.
- **Each click** is a 2D click on its slice: that slice is re-worked with the 2D tool from the
  start's slice and every click made on it so far ("continue my mask"), and becomes a worked
  slice; the volume is then propagated again from every worked slice (the box's slice too),
  each front stopping where an end rule fires (`VolumeEpisode`) or where the carried mask agrees
  with the start's own slice (Dice >= `FADED_DICE`: the change has faded out).

Everything is recomputed from the start and the clicks on every call, so undo is exact.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Union

import numpy as np

from ..clicks import Click
from ..metrics import dice
from ..volume_episode import VolumeEpisode
from ..volume_slices import RGBSlices
from .base import Segmenter
from .volume_base import BoxPrompt, VolumePrediction, VolumeSegmenter

#: A front stops where its carried mask and the start's slice agree at least this well.
FADED_DICE = 0.95


class VolumePropagationSegmenter(VolumeSegmenter):
    name = "propagation3d"
    description = "the 2D tool on the clicked slices, propagated through the neighbours (today's product); CPU"
    #: Whether the box start gives the 2D tool the box (SAM-family tools), not a click at its centre.
    box_as_prompt = False

    def __init__(self, segmenter: Union[str, Segmenter] = "graphcut", **options) -> None:
        """``segmenter``: the 2D tool's name (built with ``options``) or a built 2D tool."""
        super().__init__()
        from . import as_segmenter

        self.tool = as_segmenter(segmenter, **options)

    def _embed(self, volume: np.ndarray, spacing) -> object:
        return RGBSlices(np.asarray(volume))

    def _predict(self, volume_state, clicks, prior_mask, prior_state, box) -> VolumePrediction:
        slices: RGBSlices = volume_state
        if prior_state is None:
            prior_state = self._start(slices, prior_mask, box)
        anchor, worked, first, last = prior_state
        on_slice: Dict[int, List[Click]] = {}
        for click in clicks:
            on_slice.setdefault(click.k, []).append(Click(click.i, click.j, click.positive, click.origin))
        worked = dict(worked)
        for index, slice_clicks in on_slice.items():
            self.tool.set_image(slices[index])
            worked[index] = self.tool.predict(slice_clicks, prior_mask=anchor[index]).mask
            self.tool.reset_image()
        if not clicks:
            return VolumePrediction(anchor.copy(), prior_state, None)
        mask = anchor.copy()
        for index, edited in worked.items():
            mask[index] = edited
        starts = {index: edited for index, edited in worked.items() if edited.any()}
        if starts:
            for index, carried in _propagate(slices, self.tool, starts, anchor, first, last).items():
                mask[index] = carried
        return VolumePrediction(mask, prior_state, None)

    def _start(self, slices: RGBSlices, prior_mask: Optional[np.ndarray], box: Optional[BoxPrompt]):
        """(anchor volume, the start's worked slices, first and last slice that may change)."""
        shape = self.volume_shape
        if prior_mask is not None or box is None:
            anchor = np.zeros(shape, dtype=bool) if prior_mask is None else prior_mask.copy()
            return anchor, {}, 0, shape[0] - 1
        inside = np.zeros(shape[1:], dtype=bool)
        inside[box.j0: box.j1 + 1, box.i0: box.i1 + 1] = True
        self.tool.set_image(slices[box.k_mid])
        if self.box_as_prompt:  # a SAM-family tool takes the box itself (a prior mask's box)
            worked = self.tool.predict([], prior_mask=inside).mask & inside
        else:
            centre = Click((box.i0 + box.i1) // 2, (box.j0 + box.j1) // 2, True, "user")
            worked = self.tool.predict([centre]).mask & inside
        self.tool.reset_image()
        anchor = np.zeros(shape, dtype=bool)
        anchor[box.k_mid] = worked
        if worked.any():
            for index, carried in _propagate(slices, self.tool, {box.k_mid: worked}, None, box.k0, box.k1).items():
                anchor[index] = carried
        return anchor, {box.k_mid: worked}, box.k0, box.k1


def _propagate(slices, tool, starts: Dict[int, np.ndarray], anchor: Optional[np.ndarray], first: int,
               last: int) -> Dict[int, np.ndarray]:
    """{slice: mask} of every slice the propagation from ``starts`` keeps, fronts also stopping
    where the carried mask agrees with ``anchor``'s slice (when given)."""
    episode = VolumeEpisode(slices, tool, None, starts, steps_per_slice=0, first=first, last=last)
    try:
        while not episode.done:
            session = episode.next_slice()
            if session is None:
                break
            index = episode.current_index
            if anchor is not None and anchor[index].any() and dice(session.mask, anchor[index]) >= FADED_DICE:
                episode.stop_here()
            else:
                episode.finish_slice()
        return episode.result().masks
    finally:
        episode.close()


def build(**options) -> VolumePropagationSegmenter:
    return VolumePropagationSegmenter(**options)
