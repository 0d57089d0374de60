"""What both exporters share: the output folder check, the prompt of a sample, and PNG writing."""

from __future__ import annotations

import io
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..policies.prompts import PromptTemplates
from .samples import TrainingSample
from .training_images import DEFAULT_OVERLAY, training_image

#: The placeholder both LLaMA-Factory and verl replace by the image.
IMAGE_TOKEN = "<image>"


def prepare_output(out_dir: str, outputs: Sequence[str], overwrite: bool) -> str:
    """Create ``out_dir``; refuse (unless ``overwrite``) when it already holds any of ``outputs``."""
    path = os.path.abspath(os.path.expanduser(out_dir))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--out {out_dir} is a file; give a folder for the export.")
    earlier = [name for name in outputs if os.path.exists(os.path.join(path, name))]
    if earlier and not overwrite:
        raise ValueError(f"--out {out_dir} already holds an export ({', '.join(earlier)}); choose a new folder "
                         "or add --overwrite.")
    os.makedirs(path, exist_ok=True)
    return path


def messages(sample: TrainingSample, templates: PromptTemplates) -> Tuple[List[dict], str]:
    """(prompt messages with string content, the user text). The user message is the image
    placeholder followed by the filled template, as this product sends it; a system message
    comes first unless the system template is empty (the reference's RL data had none)."""
    turn = sample.turn(templates)
    prompt = [] if turn.system is None else [{"role": "system", "content": turn.system}]
    prompt.append({"role": "user", "content": IMAGE_TOKEN + turn.text})
    return prompt, turn.text


def sample_picture(sample: TrainingSample, overlay: str = DEFAULT_OVERLAY) -> Image.Image:
    """The picture of the sample's observation in the chosen overlay (the inference overlay is
    exactly what this product sent the model)."""
    return training_image(sample.image, sample.mask, overlay, sample.max_pixels)


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def save_mask_png(path: str, mask: Optional[np.ndarray]) -> None:
    """A binary mask as an 8-bit PNG (0 / 255), what the reference's reward reads (> 127)."""
    Image.fromarray(np.where(np.asarray(mask, bool), 255, 0).astype(np.uint8), "L").save(path)
