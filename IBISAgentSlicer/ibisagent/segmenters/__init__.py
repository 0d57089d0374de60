"""Segmentation tools by name. Each lives in its own module, imported only when built, so the
heavy ones (torch, segment-anything, sam2) cost nothing until asked for.

Two tables: the 2D tools (`Segmenter`, one image, pixel clicks) and the 3D tools
(`volume_base.VolumeSegmenter`, one volume, voxel clicks on any slice)."""

from __future__ import annotations

from typing import Union

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

#: The 3D click tools (`volume_base.VolumeSegmenter`: a volume, voxel clicks on any slice, a 3D
#: mask), name -> "module:builder", imported only when built like the 2D table.
VOLUME_SEGMENTERS = {
    "graphcut3d": "ibisagent.segmenters.volume_graphcut:build",
    "growcut3d": "ibisagent.segmenters.volume_growcut:build",
    "propagation3d": "ibisagent.segmenters.volume_propagation:build",
    "sam2": "ibisagent.segmenters.sam2_volume:build",
    "slice2d": "ibisagent.segmenters.slice2d:build",
}

DEFAULT_VOLUME_SEGMENTER = "graphcut3d"


def build_segmenter(name: str = DEFAULT_SEGMENTER, **options) -> Segmenter:
    """Build the tool called ``name`` with its ``options``; unknown names or options are a
    clear ValueError."""
    return build_named(SEGMENTERS, "segmentation tool", name, options)


def as_segmenter(tool: Union[str, Segmenter], **options) -> Segmenter:
    """A 2D tool given by name (built with ``options``) or already built (used as it is: then no
    ``options``), e.g. the one a slice-wise 3D tool works each slice with."""
    if isinstance(tool, str):
        return build_segmenter(tool, **options)
    if options:
        raise ValueError(f"Options ({', '.join(sorted(options))}) are for a 2D tool built by name; the "
                         f"{tool.name!r} tool given is already built.")
    return tool


def build_volume_segmenter(name: str = DEFAULT_VOLUME_SEGMENTER, **options):
    """Build the 3D click tool called ``name`` (a `volume_base.VolumeSegmenter`) with its
    ``options``; unknown names or options are a clear ValueError."""
    return build_named(VOLUME_SEGMENTERS, "3D segmentation tool", name, options)


__all__ = ["ImageState", "Prediction", "Segmenter", "SEGMENTERS", "DEFAULT_SEGMENTER", "build_segmenter", "as_segmenter",
           "VOLUME_SEGMENTERS", "DEFAULT_VOLUME_SEGMENTER", "build_volume_segmenter"]
