"""The interface every segmentation tool implements.

A tool turns an image, all clicks so far and the previous step's result into a new mask. Like
segment-anything's predictor it is used in two phases: `set_image` once per image (where the
expensive image embedding is computed and kept), then `predict` once per step. Calling `predict`
before `set_image` raises a RuntimeError that says so.

Everything `set_image` computes is kept as one opaque *image state*. `image_state()` hands it out
and `use_image_state(state)` puts it back, so one loaded model can serve several images (the
server keeps one state per session) without recomputing any embedding.

The previous result reaches `predict` in two forms:

- ``prior_mask``: the current mask, bool (H, W). On the first step of "continue my mask" this is
  the user's own mask and there is no ``prior_state`` yet.
- ``prior_state``: whatever the tool returned as `Prediction.state` last time (SAM-family tools:
  the low-resolution logits of the best mask, float32 (1, 256, 256), fed back as ``mask_input``).
  Tools that need none return None and receive None.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..clicks import Click, check_inside


#: The smallest image side the tools accept: SimpleITK's recursive Gaussian filters, which the
#: classical tools smooth and take gradients with, need at least 4 pixels along each axis.
MIN_SIDE = 4


@dataclass
class Prediction:
    """A tool's answer: ``mask`` bool (H, W) at the image's own resolution, ``state`` to pass back
    as ``prior_state`` on the next call (or None), and the tool's confidence ``score``."""

    mask: np.ndarray
    state: Optional[np.ndarray]
    score: float


@dataclass(frozen=True)
class ImageState:
    """An image's precomputed data: its (rows, cols), the tool's payload, the tool's name."""

    shape: tuple
    payload: object
    tool: str


class Segmenter(abc.ABC):
    """Base class: checks inputs and tracks the image so subclasses only do the maths."""

    name = "base"
    #: One line shown to users: what the tool is and what it needs.
    description = ""
    #: True for a tool that carries a mask from one slice to the next by itself (SAM2's video
    #: memory) and so implements `open_stack`. Other tools are 2D only and leave both alone: a
    #: volume episode carries their masks for them (`ibisagent.slice_stack`).
    can_propagate = False

    def open_stack(self, slices):
        """The tool's own `ibisagent.slice_stack.SliceStack` over ``slices`` (RGB uint8 (H, W, 3)
        each, one plane of a volume in display orientation). Only for ``can_propagate`` tools."""
        raise NotImplementedError(f"The {self.name!r} tool cannot propagate a mask through slices by itself.")

    def __init__(self) -> None:
        self._shape: Optional[tuple] = None
        self._image: object = None

    @property
    def is_image_set(self) -> bool:
        return self._shape is not None

    @property
    def image_shape(self) -> tuple:
        """(rows, cols) of the image given to `set_image`."""
        if self._shape is None:
            raise RuntimeError("No image is set: call set_image(image) before predict().")
        return self._shape

    def set_image(self, image: np.ndarray) -> None:
        """Take an RGB uint8 image (H, W, 3) and compute everything that depends only on it."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"The image must be RGB uint8 with shape (H, W, 3); got {image.dtype} {image.shape}."
            )
        if image.shape[0] < MIN_SIDE or image.shape[1] < MIN_SIDE:
            raise ValueError(f"The image is too small to segment: {image.shape[1]}x{image.shape[0]} pixels "
                             f"(at least {MIN_SIDE} x {MIN_SIDE}).")
        self._image = self._embed(image)
        self._shape = image.shape[:2]

    def reset_image(self) -> None:
        """Forget the image and its embedding."""
        self._shape = None
        self._image = None

    def image_state(self) -> ImageState:
        """Everything computed by `set_image`, to hand back later with `use_image_state`."""
        return ImageState(self.image_shape, self._image, self.name)

    def use_image_state(self, state: "ImageState") -> None:
        """Make a previously computed image current again, without recomputing anything."""
        if state.tool != self.name:
            raise ValueError(f"That image state was made by {state.tool!r}, not {self.name!r}.")
        self._shape, self._image = state.shape, state.payload

    def predict(
        self,
        clicks: Sequence[Click],
        prior_mask: Optional[np.ndarray] = None,
        prior_state: Optional[np.ndarray] = None,
    ) -> Prediction:
        """Segment from all clicks so far plus the previous result. See the module docstring."""
        shape = self.image_shape
        check_inside(clicks, shape)
        prior_mask = prior_as_bool(prior_mask, shape, "image")
        if not clicks and prior_mask is None:
            raise ValueError("Nothing to segment from: give at least one click or a prior mask.")
        prediction = self._predict(self._image, list(clicks), prior_mask, prior_state)
        prediction.mask = answer_as_bool(self.name, prediction.mask, shape, "image")
        return prediction

    @abc.abstractmethod
    def _embed(self, image: np.ndarray) -> object:
        """Compute and return everything that depends only on the image (e.g. the embedding)."""

    @abc.abstractmethod
    def _predict(
        self,
        image_state: object,
        clicks: list,
        prior_mask: Optional[np.ndarray],
        prior_state: Optional[np.ndarray],
    ) -> Prediction:
        """Segment. ``image_state`` is what `_embed` returned; inputs are already checked."""


def prior_as_bool(prior_mask: Optional[np.ndarray], shape: tuple, grid: str) -> Optional[np.ndarray]:
    """``prior_mask`` (bool-like, or None) as bool, checked against the ``shape`` of the tool's
    ``grid`` ("image" or "volume"; named in the ValueError). Shared by the 2D and 3D bases."""
    if prior_mask is None:
        return None
    prior_mask = np.asarray(prior_mask)
    if prior_mask.shape != shape:
        raise ValueError(f"The prior mask has shape {prior_mask.shape}; the {grid} has {shape}.")
    return prior_mask.astype(bool, copy=False)


def answer_as_bool(tool: str, mask: np.ndarray, shape: tuple, grid: str) -> np.ndarray:
    """A tool's mask as bool; a RuntimeError (a bug in the tool) when it does not have the
    ``shape`` of its ``grid``. Shared by the 2D and 3D bases."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape:
        raise RuntimeError(f"{tool} returned a mask of shape {mask.shape}; the {grid} has {shape}.")
    return mask
