"""`sam2` as a 3D click tool: sam2's image predictor on the clicked slices and its video
predictor (`sam2_video.SAM2VideoStack`, memory attention) carrying them through the volume.

It is `volume_propagation.VolumePropagationSegmenter` with the 2D `sam2` tool, whose volume
episodes propagate with sam2's own video memory (``can_propagate``): the box start gives sam2
the box on its slice (as the 2D tool's box prompt) and propagates through the box's slice range;
each click goes to sam2 with the other clicks on its slice and the start's slice as the mask
prompt, and the volume is propagated again from every clicked slice. Weights are a local
checkpoint (SAM2, SAM2.1 or MedSAM2), as for the 2D tool; nothing is downloaded.
"""

from __future__ import annotations

from typing import Optional

from .sam2 import DEFAULT_CONFIG
from .volume_propagation import VolumePropagationSegmenter


class SAM2VolumeSegmenter(VolumePropagationSegmenter):
    name = "sam2"
    description = "SAM2 on the clicked slices, propagated by its video memory (sam2 extra + a local checkpoint)"
    box_as_prompt = True


def build(config: str = DEFAULT_CONFIG, checkpoint=None, device: str = "auto",
          image_size: Optional[int] = None) -> SAM2VolumeSegmenter:
    """Options as the 2D sam2 tool's (`sam2.build`)."""
    return SAM2VolumeSegmenter("sam2", config=config, checkpoint=checkpoint, device=device, image_size=image_size)
