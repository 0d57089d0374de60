"""Shared pieces of the torch-based tools (litemedsam, sam, sam2): importing the heavy packages
with a clear message, choosing the device, loading checkpoints safely, and turning a user's mask
into the prompts a SAM-family model understands.

torch is imported inside the functions, so importing this module costs nothing.

Frames used below: SAM-family models see the image resized (and, for some, padded) to a square
*model frame* of ``size`` pixels, and return low-resolution logits on a square *low-res frame*,
the model frame shrunk 4 times (SAM: 1024 -> 256; LiteMedSAM: 256 -> 256 because its decoder
output already matches its input). A prompt mask must be drawn in the low-res frame with the same
resize + pad geometry the model applies to the image, or it would not line up with the image.
"""

from __future__ import annotations

import importlib
import os
from typing import Optional, Tuple

import numpy as np

from ..imaging import interior_depth

#: Logit written into the low-res prompt for pixels inside the user's mask, and its negation for
#: pixels outside. SAM's own low-res logits for a confident mask sit around +-10..20 (they are
#: clamped at +-32 by SAM2); 8 is firmly on each side of the 0 threshold (sigmoid(8) = 0.9997)
#: without claiming more certainty than a hand-drawn outline deserves. Pixels cut by the mask's
#: edge get a value in between, proportional to how much of them the mask covers.
MASK_PROMPT_LOGIT = 8.0

DEVICES = ("auto", "cpu", "cuda")


def require(module: str, extra: str):
    """Import ``module`` or raise ImportError naming the pip extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"The {extra!r} segmentation tool needs {module}: pip install 'ibisagent[{extra}]'."
        ) from error


def choose_device(device: str = "auto"):
    """A torch.device from "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N"."""
    torch = importlib.import_module("torch")
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"Unknown device {device!r}; choose one of: {', '.join(DEVICES)} (or cuda:N).")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"Device {device!r} was asked for but this machine has no usable CUDA GPU; use 'cpu'.")
    return torch.device(name)


def check_file(path, what: str) -> str:
    """Return ``path`` as a string, or raise FileNotFoundError naming ``what`` is missing."""
    if path is None:
        raise ValueError(f"The {what} is required: give the path of a local file.")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The {what} {path!r} does not exist (checkpoints are read from local files only).")
    return path


def load_state_dict(path, what: str = "checkpoint") -> dict:
    """Read a model's weights from a local file without running any pickled code.

    Accepts a bare state dict or one wrapped under "model" or "state_dict" (training scripts
    save both ways). Loaded onto the CPU; the caller moves the model afterwards.
    """
    torch = importlib.import_module("torch")
    path = check_file(path, what)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for unreadable or unsafe files
        raise ValueError(f"The {what} {path!r} could not be read as torch weights: {error}") from error
    for key in ("model", "state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict):
        raise ValueError(f"The {what} {path!r} holds a {type(data).__name__}, not a dict of weights.")
    return data


def load_weights(model, path, what: str = "checkpoint") -> None:
    """Load a checkpoint into ``model`` strictly; a mismatch says which keys disagree."""
    state = load_state_dict(path, what)
    hint = "check the model type or config"
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # raised for weights whose shapes differ
        first = str(error).split("\n\t")[1:2] or [str(error)]
        raise ValueError(f"The {what} {os.fspath(path)!r} does not fit this model ({first[0]}); {hint}.") from error
    if missing or unexpected:
        raise ValueError(
            f"The {what} {os.fspath(path)!r} does not fit this model: {len(missing)} missing weights "
            f"(e.g. {list(missing)[:3]}) and {len(unexpected)} unexpected ones (e.g. {list(unexpected)[:3]}); {hint}."
        )


def resized_shape(rows: int, cols: int, longest: int) -> Tuple[int, int]:
    """(rows, cols) after scaling so the longest side is ``longest``, rounded as SAM rounds."""
    scale = longest / max(rows, cols)
    return int(rows * scale + 0.5), int(cols * scale + 0.5)


def mask_to_logits(mask: np.ndarray, content: Tuple[int, int], frame: int) -> np.ndarray:
    """A bool (H, W) mask as a low-res prompt, float32 (1, frame, frame).

    The mask is resized (area-averaged, so edge pixels get their covered fraction) to ``content``
    (rows, cols), placed at the top-left of a ``frame`` x ``frame`` square (the models pad at the
    bottom and right) and mapped to logits: covered fraction f -> MASK_PROMPT_LOGIT * (2f - 1).
    The padding is "outside".
    """
    torch = importlib.import_module("torch")
    functional = importlib.import_module("torch.nn.functional")
    rows, cols = content
    if not (0 < rows <= frame and 0 < cols <= frame):
        raise ValueError(f"Content size {content} does not fit a {frame}x{frame} frame.")
    tensor = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
    fraction = functional.interpolate(tensor, size=(rows, cols), mode="area")[0, 0].numpy()
    logits = np.full((1, frame, frame), -MASK_PROMPT_LOGIT, dtype=np.float32)
    logits[0, :rows, :cols] = MASK_PROMPT_LOGIT * (2.0 * fraction - 1.0)
    return logits


def mask_box(mask: np.ndarray) -> Optional[np.ndarray]:
    """The mask's bounding box, float32 [x0, y0, x1, y1] in pixels (inclusive), or None if empty."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return np.array([cols.min(), rows.min(), cols.max(), rows.max()], dtype=np.float32)


def deepest_point(mask: np.ndarray) -> Optional[Tuple[int, int]]:
    """(x, y) of the mask pixel farthest from its edge (the safest positive click), or None."""
    if not mask.any():
        return None
    distance = interior_depth(mask)
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(col), int(row)


def best_of(scores: np.ndarray) -> int:
    """Index of the candidate mask with the highest predicted score (IoU estimate)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise RuntimeError("The model returned no candidate masks.")
    return int(np.argmax(scores))
