"""SAM and MedSAM through segment-anything's SamPredictor. MedSAM checkpoints are ViT-B SAM
checkpoints, so ``build(checkpoint, model_type="vit_b")`` loads either.

Geometry (segment-anything's): the image is resized so its longest side is 1024 and padded at the
bottom/right to 1024 x 1024; low-res logits are float32 (1, 256, 256) on that padded frame shrunk
4 times. Every step sends all clicks (pixel x, y; label 1 positive, 0 negative) and the previous
step's low-res logits as ``mask_input``, asks for three candidates and keeps the one with the
highest predicted IoU; its logits, thresholded at 0, are the mask.

Using a user's starting mask: on the first step there is no previous logits, so the mask is drawn
into the low-res frame with the same resize + pad (`_torch.mask_to_logits`: +8 inside, -8
outside) and sent as ``mask_input``. With no clicks at all, the mask's bounding box and one
positive point at its deepest interior pixel are sent too, because SAM ignores a mask prompt
that comes with no sparse prompt far more than one that comes with them.

Known difference: MedSAM's own scripts feed the encoder a min-max scaled 1024 x 1024 stretch of
the image, while SamPredictor keeps the aspect ratio and uses SAM's pixel mean/std.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from ..clicks import Click, as_arrays
from . import _torch
from .base import Prediction, Segmenter

EXTRA = "sam"

#: ViT sizes of the released SAM checkpoints (segment-anything's build_sam.py).
ENCODERS = {
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": (2, 5, 8, 11)},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn_indexes": (5, 11, 17, 23)},
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn_indexes": (7, 15, 23, 31)},
}
ENCODER_KEYS = ("embed_dim", "depth", "num_heads", "global_attn_indexes")
IMAGE_SIZE = 1024  # SAM's encoder input; the low-res frame is a quarter of it
PATCH_SIZE = 16
PROMPT_DIM = 256


class SAMSegmenter(Segmenter):
    """segment-anything's predictor, one image embedding per image. Build it with `build`."""

    name = "sam"
    description = "SAM / MedSAM (segment-anything); needs a local checkpoint, a GPU is advised."

    def __init__(self, predictor) -> None:
        super().__init__()
        self.predictor = predictor

    def _embed(self, image: np.ndarray) -> object:
        """The predictor's per-image data: embedding, original and resized (rows, cols)."""
        self.predictor.set_image(image, image_format="RGB")
        p = self.predictor
        return {"features": p.features, "original_size": p.original_size, "input_size": p.input_size}

    def _predict(self, image_state, clicks, prior_mask, prior_state) -> Prediction:
        p = self.predictor
        p.features, p.original_size, p.input_size = (
            image_state["features"], image_state["original_size"], image_state["input_size"],
        )
        p.is_image_set = True
        prompts = sparse_prompts(clicks, prior_mask)
        mask_input = prior_state
        if mask_input is None and prior_mask is not None and prior_mask.any():
            frame = IMAGE_SIZE // 4
            content = tuple(max(1, round(side / 4)) for side in image_state["input_size"])
            mask_input = _torch.mask_to_logits(prior_mask, content, frame)
        masks, scores, low_res = p.predict(
            point_coords=prompts["points"], point_labels=prompts["labels"], box=prompts["box"],
            mask_input=mask_input, multimask_output=True,
        )
        best = _torch.best_of(scores)
        return Prediction(masks[best].astype(bool), low_res[best: best + 1].astype(np.float32), float(scores[best]))


def sparse_prompts(clicks, prior_mask: Optional[np.ndarray]) -> dict:
    """Points (float32 (N, 2), x, y pixels), labels (int32 (N,)) and box (float32 (4,) or None).

    All clicks are sent as points. With no clicks, a non-empty prior mask gives its bounding box
    and one positive point at its deepest interior pixel (see the module docstring).
    """
    if clicks:
        points, labels = as_arrays(clicks)
        return {"points": points, "labels": labels, "box": None}
    point = _torch.deepest_point(prior_mask)
    if point is None:
        raise ValueError("The starting mask is empty and there are no clicks: nothing to segment from.")
    points, labels = as_arrays([Click(point[0], point[1], True)])
    return {"points": points, "labels": labels, "box": _torch.mask_box(prior_mask)}


def build_model(model_type: str = "vit_b", encoder: Optional[Mapping] = None):
    """An untrained segment-anything Sam of the given size.

    ``encoder`` overrides the ViT sizes of ``model_type`` (keys: embed_dim, depth, num_heads,
    global_attn_indexes) for checkpoints of a non-standard size.
    """
    import functools

    import torch

    modeling = _torch.require("segment_anything.modeling", EXTRA)
    if model_type not in ENCODERS:
        raise ValueError(f"Unknown SAM model type {model_type!r}; choose one of: {', '.join(ENCODERS)}.")
    sizes = dict(ENCODERS[model_type])
    unknown = set(encoder or {}) - set(ENCODER_KEYS)
    if unknown:
        raise ValueError(f"Unknown encoder settings {sorted(unknown)}; allowed: {', '.join(ENCODER_KEYS)}.")
    sizes.update(encoder or {})
    grid = IMAGE_SIZE // PATCH_SIZE
    return modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            depth=sizes["depth"], embed_dim=sizes["embed_dim"], img_size=IMAGE_SIZE, mlp_ratio=4,
            norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6), num_heads=sizes["num_heads"],
            patch_size=PATCH_SIZE, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=tuple(sizes["global_attn_indexes"]), window_size=14, out_chans=PROMPT_DIM,
        ),
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=PROMPT_DIM, image_embedding_size=(grid, grid),
            input_image_size=(IMAGE_SIZE, IMAGE_SIZE), mask_in_chans=16,
        ),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=2048, num_heads=8),
            transformer_dim=PROMPT_DIM, iou_head_depth=3, iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def build(checkpoint=None, model_type: str = "vit_b", device: str = "auto", encoder: Optional[Mapping] = None) -> SAMSegmenter:
    """SAM or MedSAM from a local checkpoint file (a state dict, bare or under "model")."""
    _torch.require("torch", EXTRA)
    predictor_module = _torch.require("segment_anything.predictor", EXTRA)
    _torch.check_file(checkpoint, "SAM checkpoint")
    device = _torch.choose_device(device)
    model = build_model(model_type, encoder)
    _torch.load_weights(model, checkpoint, "SAM checkpoint")
    model.to(device).eval()
    return SAMSegmenter(predictor_module.SamPredictor(model))
