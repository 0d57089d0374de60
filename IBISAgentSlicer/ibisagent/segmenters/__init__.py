"""Segmentation tools by name. Each lives in its own module, imported only when built, so the
heavy ones (torch, segment-anything, sam2) cost nothing until asked for."""

from __future__ import annotations

from ..registry import build_named
from .base import ImageState, Prediction, Segmenter

#: name -> "module:builder". Builders take keyword options (checkpoint paths, device) and return
#: a Segmenter.
SEGMENTERS = {
    "graphcut": "ibisagent.segmenters.graphcut:build",
    "growcut": "ibisagent.segmenters.growcut:build",
    "litemedsam": "ibisagent.segmenters.litemedsam:build",
    "sam": "ibisagent.segmenters.sam:build",
    "sam2": "ibisagent.segmenters.sam2:build",
    "watershed": "ibisagent.segmenters.watershed:build",
}

DEFAULT_SEGMENTER = "graphcut"


def build_segmenter(name: str = DEFAULT_SEGMENTER, **options) -> Segmenter:
    """Build the tool called ``name`` with its ``options``; unknown names or options are a
    clear ValueError."""
    return build_named(SEGMENTERS, "segmentation tool", name, options)


__all__ = ["ImageState", "Prediction", "Segmenter", "SEGMENTERS", "DEFAULT_SEGMENTER", "build_segmenter"]
