"""sam2's video predictor over the slices of a volume: the sam2 tool's own propagation.

The slices of one plane are the frames of a video, as MedSAM2 treats a CT or MRI volume. The
sam2 tool builds its model as sam2's ``SAM2VideoPredictor`` (the same weights serve the image
predictor of the 2D tool), and `SAM2VideoStack` drives it slice by slice for a volume episode
(`ibisagent.slice_stack.SliceStack`):

- a start slice's mask enters as a mask prompt on an untracked frame: a *conditioning* frame,
  always in the memory;
- ``carry`` tracks the next slice from the memory bank (the conditioning frames and the nearest
  finished slices in the direction of travel, sam2's own selection), with no prompt; sam2's
  object score may say the target is gone (an empty mask);
- the agent's clicks on that slice (``tool``) go to sam2's decoder *with* that memory, plus the
  previous step's low-res logits as the mask prompt (the 2D tool's convention: all clicks are
  re-sent every step, and a prior mask without logits is stretched into the low-res frame);
- a finished slice's final mask (the agent's result or a hand edit) enters the memory as a mask
  prompt on that tracked frame, so later slices remember exactly what was accepted.

Frames are turned into model input (resize to ``image_size``, ImageNet normalisation: the image
predictor's own transform) only when sam2 asks for them, and sam2 keeps the features of the
last frame only, so a volume is never held at model resolution. Nothing is stored while the
agent refines a slice, so the slice episode's undo stays exact.

This drives sam2 1.x below its demo API (``_run_single_frame_inference``, the inference-state
dict), as MedSAM2 and the SAM2 Slicer plugins do; the state is made by sam2's own
``init_state`` with the frame loader swapped for the slices.
"""

from __future__ import annotations

import importlib
from typing import Optional, Sequence

import numpy as np

from . import _torch
from .base import Prediction, Segmenter
from .sam import sparse_prompts

EXTRA = "sam2"
#: sam2 tracks objects by id; a volume episode has one target.
OBJECT_ID = 1


class _Frames:
    """The slices as sam2's frames: model input tensors (3, size, size), made on demand."""

    def __init__(self, slices: Sequence[np.ndarray], transform, device) -> None:
        self.slices = slices
        self.transform = transform
        self.device = device

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, index: int):
        return self.transform(np.ascontiguousarray(self.slices[int(index)])).to(self.device)


def _init_state(model, frames: _Frames, rows: int, cols: int) -> dict:
    """sam2's own ``init_state`` on ``frames`` (it only knows how to read frames from files)."""
    module = importlib.import_module(type(model).__module__)
    loader = module.load_video_frames
    module.load_video_frames = lambda **_options: (frames, rows, cols)
    try:
        return model.init_state(video_path="<volume slices>")
    finally:
        module.load_video_frames = loader


class SAM2VideoStack:
    """One plane of a volume in sam2's video memory; see the module docstring."""

    def __init__(self, segmenter, slices: Sequence[np.ndarray]) -> None:
        self.torch = _torch.require("torch", EXTRA)
        model = segmenter.predictor.model
        if not hasattr(model, "init_state"):
            raise ValueError("This sam2 model was not built for video; build the tool with ibisagent's sam2 builder.")
        if len(slices) == 0:
            raise ValueError("There are no slices to propagate through.")
        self.model = model
        self.segmenter = segmenter
        self.slices = slices
        rows, cols = np.shape(slices[0])[:2]
        self.shape = (int(rows), int(cols))
        with self.torch.inference_mode():
            self.state = _init_state(model, _Frames(slices, segmenter.predictor._transforms, model.device), rows, cols)
            self._object = model._obj_id_to_idx(self.state, OBJECT_ID)

    @property
    def _outputs(self) -> dict:
        return self.state["output_dict_per_obj"][self._object]

    @property
    def _tracked(self) -> dict:
        return self.state["frames_tracked_per_obj"][self._object]

    def remember(self, index: int, mask: np.ndarray) -> None:
        with self.torch.inference_mode():
            self.model.add_new_mask(self.state, int(index), OBJECT_ID, np.asarray(mask, dtype=bool))
            self.model.propagate_in_video_preflight(self.state)  # encodes the memory of that frame

    def carry(self, index: int, neighbour: int) -> np.ndarray:
        index, reverse = int(index), int(index) < int(neighbour)
        with self.torch.inference_mode():
            _out, logits = self.model._run_single_frame_inference(
                inference_state=self.state, output_dict=self._outputs, frame_idx=index, batch_size=1,
                is_init_cond_frame=False, point_inputs=None, mask_inputs=None, reverse=reverse,
                run_mem_encoder=False,
            )
        self._tracked[index] = {"reverse": reverse}
        return self._to_mask(logits)

    def faded(self, index: int) -> bool:
        """Never: SAM2's memory decides where the object ends (its mask vanishes)."""
        return False

    def tool(self, index: int) -> Segmenter:
        return _TrackedSlice(self, int(index))

    def _to_mask(self, logits) -> np.ndarray:
        _, full = self.model._get_orig_video_res_output(self.state, logits)
        return (full[0, 0] > 0).cpu().numpy()

    def refine(self, index: int, clicks, prior_mask: Optional[np.ndarray], prior_state: Optional[np.ndarray]) -> Prediction:
        """Clicks on the tracked slice ``index`` with the memory; nothing is stored."""
        torch = self.torch
        prompts = sparse_prompts(clicks, prior_mask)
        points, labels = prompts["points"], prompts["labels"]
        if prompts["box"] is not None:
            points = np.concatenate([np.asarray(prompts["box"], np.float32).reshape(2, 2), points])
            labels = np.concatenate([np.array([2, 3], np.int32), labels])
        rows, cols = self.shape
        scale = np.array([self.model.image_size / cols, self.model.image_size / rows], dtype=np.float32)
        device = self.state["device"]
        point_inputs = {
            "point_coords": torch.as_tensor(points * scale, dtype=torch.float32, device=device)[None],
            "point_labels": torch.as_tensor(labels, dtype=torch.int32, device=device)[None],
        }
        previous = prior_state
        if previous is None and prior_mask is not None and prior_mask.any():
            size = self.model.image_size // 4
            previous = _torch.mask_to_logits(prior_mask, (size, size), size)
        previous = None if previous is None else torch.as_tensor(previous, dtype=torch.float32, device=device)[None]
        reverse = self._tracked.get(index, {}).get("reverse", False)
        with torch.inference_mode():
            out, logits = self.model._run_single_frame_inference(
                inference_state=self.state, output_dict=self._outputs, frame_idx=index, batch_size=1,
                is_init_cond_frame=index not in self._tracked, point_inputs=point_inputs, mask_inputs=None,
                reverse=reverse, run_mem_encoder=False, prev_sam_mask_logits=previous,
            )
            score = float(torch.sigmoid(out["object_score_logits"]).reshape(-1)[0])
        state = logits[0].float().cpu().numpy().astype(np.float32)
        return Prediction(self._to_mask(logits), state, score)

    def close(self) -> None:
        state, self.state = getattr(self, "state", None), None
        if state is not None:
            state.clear()


class _TrackedSlice(Segmenter):
    """The sam2 tool on one tracked slice of a `SAM2VideoStack` (its features come from sam2's
    video state, so there is nothing to embed here)."""

    name = "sam2"

    def __init__(self, stack: SAM2VideoStack, index: int) -> None:
        super().__init__()
        self.description = stack.segmenter.description
        self._stack = stack
        self._index = index
        self._shape = stack.shape

    def _embed(self, image: np.ndarray) -> object:
        raise RuntimeError("A tracked slice gets its image from the video state.")

    def _predict(self, image_state, clicks, prior_mask, prior_state) -> Prediction:
        return self._stack.refine(self._index, clicks, prior_mask, prior_state)
