"""What both exporters share: the output folder, the prompt of a sample, and PNG writing.

The output folder is a `safe_io.OwnedFolder`: an earlier export of the same format and dataset
(llamafactory) or split (verl) there is replaced only with ``--overwrite``, and then only the
files that export wrote (a stale image is removed, a file of the user's never); exports of other
splits or datasets in the same folder are left alone (a file one of them wrote is never written
by another); every file appears when the export is committed.
"""

from __future__ import annotations

import io
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image

from ..policies.prompts import PromptTemplates
from ..safe_io import OwnedFolder
from .samples import TrainingSample
from .training_images import DEFAULT_OVERLAY, training_image

#: The placeholder both LLaMA-Factory and verl replace by the image.
IMAGE_TOKEN = "<image>"


def output_folder(out_dir: str, records_dir: str, kind: str, overwrite: bool) -> OwnedFolder:
    """The export's folder, checked before any work (see the module docstring); ``kind``: the
    format and its dataset or split."""
    return OwnedFolder(out_dir, overwrite, "--out", inputs=[records_dir], kind=f"export {kind}", what="an export")


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


def add_picture(folder: OwnedFolder, name: str, picture: Image.Image) -> str:
    """Stage ``picture`` as the PNG ``name`` of the export folder; returns its final path."""
    with folder.add(name) as temporary:
        picture.save(temporary, format="PNG")
    return folder.path(name)


def mask_picture(mask: Optional[np.ndarray]) -> Image.Image:
    """A binary mask as an 8-bit PNG picture (0 / 255), what the reference's reward reads (> 127)."""
    return Image.fromarray(np.where(np.asarray(mask, bool), 255, 0).astype(np.uint8), "L")
