"""Where each next slice's starting mask comes from, and the tool the agent refines it with.

A `SliceStack` holds one plane of a volume as slices (RGB uint8 (H, W, 3), display orientation,
indexed along the plane's axis) and the masks already final on some of them. A volume episode
(`ibisagent.volume_episode`) uses it in this order:

1. ``remember(index, mask)`` for every start slice (the user's mask);
2. ``carry(index, neighbour)``: the starting mask on slice ``index`` from the remembered
   ``neighbour`` (``index`` +- 1), and ``faded(index)``: whether that start no longer looks like
   the target;
3. ``tool(index)``: the 2D segmentation tool for the agent's clicks on that slice; an
   `ibisagent.episode.Episode` runs on it exactly as on a 2D image;
4. ``remember(index, mask)`` with the slice's final mask, which later carries build on.

There is one tool interface (`ibisagent.segmenters.base.Segmenter`). A tool that can propagate
by itself says so (``can_propagate``) and opens its own stack (``open_stack``): sam2 carries
through its video memory. Every other tool gets a `NeighbourStack`, where a carrier
(`ibisagent.carry`) moves the neighbour's mask and the 2D tool refines it unchanged.
"""

from __future__ import annotations

from typing import Dict, Optional, Protocol, Sequence

import numpy as np

from .carry import CARRIERS, Carrier
from .segmenters.base import Prediction, Segmenter

#: ``auto``: the tool's own propagation when it has one, else the watershed carrier.
PROPAGATIONS = ("auto", "own", *CARRIERS)


class SliceStack(Protocol):
    """See the module docstring. Masks are bool (H, W)."""

    def remember(self, index: int, mask: np.ndarray) -> None:
        """``mask`` is final on slice ``index``."""

    def carry(self, index: int, neighbour: int) -> np.ndarray:
        """The starting mask on slice ``index`` from the remembered slice ``neighbour``."""

    def faded(self, index: int) -> bool:
        """Whether the start last carried onto slice ``index`` no longer looks like the target
        (the volume episode then ends the front there unless the slice is edited)."""

    def tool(self, index: int) -> Segmenter:
        """The 2D tool for clicks on slice ``index``, its image set (or set on first use)."""

    def close(self) -> None:
        """Release what the stack holds; safe to call twice."""


def open_stack(segmenter: Optional[Segmenter], slices: Sequence[np.ndarray], propagation: str = "auto") -> SliceStack:
    """The stack for ``segmenter`` over ``slices``. ``propagation``: one of `PROPAGATIONS`
    ("own" needs a tool that can propagate). ``segmenter`` None: the tool is not in this process
    (an agent server refines the slices), so only the watershed carrier can move the masks."""
    if propagation not in PROPAGATIONS:
        raise ValueError(f"Unknown propagation {propagation!r}; choose one of: {', '.join(PROPAGATIONS)}.")
    if segmenter is None:
        if propagation not in ("auto", "watershed"):
            raise ValueError(f"The {propagation!r} propagation needs the segmentation tool in this process; "
                             "with an agent server, propagation uses the watershed carrier.")
        return NeighbourStack(None, slices, CARRIERS["watershed"]())
    if propagation == "own" or (propagation == "auto" and segmenter.can_propagate):
        if not segmenter.can_propagate:
            raise ValueError(f"The {segmenter.name!r} tool cannot propagate by itself; choose "
                             f"--propagation {' or '.join(CARRIERS)}.")
        return segmenter.open_stack(slices)
    carrier = CARRIERS["watershed" if propagation == "auto" else propagation]()
    return NeighbourStack(segmenter, slices, carrier)


class NeighbourStack:
    """A 2D tool's stack: ``carrier`` moves the neighbour's final mask onto the next slice, the
    tool refines it. The tool embeds a slice only when something on that slice asks it to."""

    def __init__(self, segmenter: Optional[Segmenter], slices: Sequence[np.ndarray], carrier: Carrier) -> None:
        self.segmenter = segmenter
        self.slices = slices
        self.carrier = carrier
        self._masks: Dict[int, np.ndarray] = {}
        self._carried: set = set()
        self._faded: Dict[int, bool] = {}
        self._embedded: Optional[int] = None

    def remember(self, index: int, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool).copy()
        if index not in self._carried:
            self.carrier.start(self.slices[index], mask)
        self._masks[index] = mask

    def carry(self, index: int, neighbour: int) -> np.ndarray:
        if neighbour not in self._masks:
            raise ValueError(f"Slice {neighbour} has no final mask to carry onto slice {index}.")
        self._carried.add(index)
        tool = self.tool(index) if self.segmenter is not None else None
        start = self.carrier.carry(self.slices[index], self._masks[neighbour], tool)
        self._faded[index] = self.carrier.faded
        return start

    def faded(self, index: int) -> bool:
        return self._faded.get(index, False)

    def tool(self, index: int) -> Segmenter:
        if self.segmenter is None:
            raise RuntimeError("This stack has no segmentation tool in this process.")
        return _OnSlice(self, index)

    def _embed(self, index: int) -> None:
        if self._embedded != index:
            self._embedded = None
            self.segmenter.set_image(self.slices[index])
            self._embedded = index

    def close(self) -> None:
        self._masks.clear()


class _OnSlice(Segmenter):
    """The stack's 2D tool on one slice: the same tool, its image set on the first call that
    needs it (a slice the agent accepts without a click costs no embedding)."""

    def __init__(self, stack: NeighbourStack, index: int) -> None:
        super().__init__()
        self.name = stack.segmenter.name
        self.description = stack.segmenter.description
        self._stack = stack
        self._index = index
        self._shape = tuple(np.shape(stack.slices[index])[:2])

    def _embed(self, image: np.ndarray) -> object:
        raise RuntimeError("A slice's tool gets its image from the slice stack.")

    def _predict(self, image_state, clicks, prior_mask, prior_state) -> Prediction:
        self._stack._embed(self._index)
        return self._stack.segmenter.predict(clicks, prior_mask, prior_state)
