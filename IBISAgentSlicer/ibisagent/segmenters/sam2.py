"""SAM2 / SAM2.1 / MedSAM2 through the sam2 package's SAM2ImagePredictor: the reference
IBISAgent's segmentation tool.

Geometry (sam2's): the image is stretched to ``image_size`` x ``image_size`` (no padding; 1024
for SAM2, 512 for MedSAM2) and the low-res logits are float32 (1, image_size/4, image_size/4)
covering the whole stretched image. Every step sends all clicks (pixel x, y; label 1 positive,
0 negative) and the previous step's low-res logits as ``mask_input``, asks for three candidates
and keeps the one with the highest predicted IoU; its logits, thresholded at 0, are the mask.

Using a user's starting mask: on the first step there is no previous logits, so the mask is
stretched into the low-res frame the same way (`_torch.mask_to_logits`: +8 inside, -8 outside)
and sent as ``mask_input``. With no clicks at all, the mask's bounding box and one positive point
at its deepest interior pixel are sent too (see `sam.sparse_prompts`).

Configs are the names packaged with sam2, e.g. "configs/sam2.1/sam2.1_hiera_t.yaml"; MedSAM2 is
that config with ``image_size=512``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import _torch
from .base import Prediction, Segmenter
from .sam import sparse_prompts

EXTRA = "sam2"
DEFAULT_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


class SAM2Segmenter(Segmenter):
    """sam2's image predictor, one image embedding per image. Build it with `build`."""

    name = "sam2"
    description = "SAM2 / SAM2.1 / MedSAM2 (sam2 package); needs a local checkpoint, a GPU is advised."
    #: Volumes: sam2's video predictor carries the mask through the slices (`sam2_video`).
    can_propagate = True

    def __init__(self, predictor) -> None:
        super().__init__()
        self.predictor = predictor

    def open_stack(self, slices):
        """A `sam2_video.SAM2VideoStack` over ``slices`` (the same model, its video memory)."""
        from .sam2_video import SAM2VideoStack

        return SAM2VideoStack(self, slices)

    @property
    def low_res_size(self) -> int:
        """Side of the square low-res logits frame: the model's image size / 4."""
        return self.predictor.model.image_size // 4

    def _embed(self, image: np.ndarray) -> object:
        """The predictor's per-image data: the multi-scale features and the original (rows, cols)."""
        self.predictor.set_image(image)
        return {"features": self.predictor._features, "orig_hw": list(self.predictor._orig_hw)}

    def _predict(self, image_state, clicks, prior_mask, prior_state) -> Prediction:
        p = self.predictor
        p._features, p._orig_hw, p._is_image_set, p._is_batch = (
            image_state["features"], list(image_state["orig_hw"]), True, False,
        )
        prompts = sparse_prompts(clicks, prior_mask)
        mask_input = prior_state
        if mask_input is None and prior_mask is not None and prior_mask.any():
            size = self.low_res_size
            mask_input = _torch.mask_to_logits(prior_mask, (size, size), size)
        masks, scores, low_res = p.predict(
            point_coords=prompts["points"], point_labels=prompts["labels"], box=prompts["box"],
            mask_input=mask_input, multimask_output=True,
        )
        best = _torch.best_of(scores)
        return Prediction(masks[best] > 0, low_res[best: best + 1].astype(np.float32), float(scores[best]))


def build(config: str = DEFAULT_CONFIG, checkpoint=None, device: str = "auto", image_size: Optional[int] = None) -> SAM2Segmenter:
    """SAM2-family model from a packaged config and a local checkpoint file.

    ``checkpoint`` is a state dict, bare or under "model" (sam2's own format). ``image_size``
    overrides the config's (512 for MedSAM2); it must be a multiple of 64 (the Hiera stride of
    32 times the 2x window alignment sam2 assumes).
    """
    _torch.require("torch", EXTRA)
    build_module = _torch.require("sam2.build_sam", EXTRA)
    predictor_module = _torch.require("sam2.sam2_image_predictor", EXTRA)
    _torch.check_file(checkpoint, "SAM2 checkpoint")
    overrides = []
    if image_size is not None:
        if int(image_size) <= 0 or int(image_size) % 64:
            raise ValueError(f"image_size must be a positive multiple of 64; got {image_size}.")
        overrides.append(f"++model.image_size={int(image_size)}")
    device = _torch.choose_device(device)
    try:
        # sam2's video predictor is the image model plus the video memory logic, with the same
        # weights: one model serves 2D steps (image predictor) and volumes (`sam2_video`).
        model = build_module.build_sam2_video_predictor(config, ckpt_path=None, device="cpu",
                                                        hydra_overrides_extra=overrides)
    except Exception as error:  # hydra raises its own types for a missing or bad config
        raise ValueError(f"Could not build SAM2 from config {config!r}: {error}") from error
    _torch.load_weights(model, checkpoint, "SAM2 checkpoint")
    model.to(device).eval()
    predictor = predictor_module.SAM2ImagePredictor(model)
    # The predictor assumes a 1024 model; its feature-map sizes must follow the real image size.
    size = model.image_size
    predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]
    return SAM2Segmenter(predictor)
