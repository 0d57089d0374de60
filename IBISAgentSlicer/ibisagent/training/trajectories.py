"""Cold-start trajectories from labelled images (``ibisagent trajectories``).

For each image/mask pair (matched by file name, as ``ibisagent eval`` does) an episode runs with
the simulated annotator as the teacher: it clicks in the middle of the largest error, explains
the click in the model's grammar with reasoning templated from the image and the masks
(`ibisagent.training.reasoning`), and says Terminate once the IoU reaches ``stop_iou`` (0.8 and
at most 20 clicks, as the reference's trajectory generator). The segmentation tool is this
product's (``graphcut`` by default), so the masks are the ones it will really produce. Every episode
is written as a trajectory record with the expert mask as its truth, ready for
``ibisagent export-training``. A pair that cannot be used (unreadable, too small, a tool failure)
is listed with its reason in ``skipped.txt`` and the run goes on; a record it had begun is
removed, so a later run tries it again.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional

import numpy as np

from .. import image_io
from ..actions import TERMINATE, Action, format_response
from ..annotator import next_click
from ..clicks import Click
from ..episode import STOP_TERMINATED, Episode
from ..evaluate import case_failure, find_pairs
from ..imaging import Window, check_mask, to_rgb
from ..metrics import iou
from ..policies.base import Observation, Policy
from ..safe_io import OwnedFolder
from ..segmenters.base import Segmenter
from . import reasoning
from .recorder import TrainingRecorder
from .samples import click_action

DEFAULT_STOP_IOU = 0.8
DEFAULT_MAX_STEPS = 20
DEFAULT_REQUEST = "Segment the target structure in this image."


class ColdStartTeacher(Policy):
    """The simulated annotator, answering with reasoning a model can learn from."""

    name = "cold-start"
    description = "simulated annotator with templated reasoning (cold-start trajectories; uses the expert mask)"

    def __init__(self, truth: np.ndarray, stop_iou: float = DEFAULT_STOP_IOU) -> None:
        self.truth = np.asarray(truth, dtype=bool)
        if not self.truth.any():
            raise ValueError("the expert mask is empty; a trajectory needs a target")
        if not 0.0 < stop_iou <= 1.0:
            raise ValueError(f"stop_iou must be in (0, 1]; got {stop_iou}.")
        self.stop_iou = stop_iou

    def respond(self, observation: Observation) -> str:
        truth = check_mask(self.truth, observation.mask.shape, "expert mask")
        mask = observation.mask
        click = None
        if not (mask.any() and iou(mask, truth) >= self.stop_iou):
            click = next_click(truth, mask, [(c.x, c.y) for c in observation.clicks])
        if click is None:
            text, answer = reasoning.describe_done(mask, truth)
            return format_response(text, Action(TERMINATE), answer)
        x, y, positive = click
        rows, cols = mask.shape
        action = click_action(Click(x, y, positive), cols, rows)
        text = reasoning.describe_click(observation.image, mask, truth, x, y, positive, observation.request)
        return format_response(text, action)


def generate_trajectories(images_dir: str, masks_dir: str, out_dir: str, segmenter: Segmenter,
                          initial_dir: Optional[str] = None, request: str = DEFAULT_REQUEST,
                          stop_iou: float = DEFAULT_STOP_IOU, max_steps: int = DEFAULT_MAX_STEPS,
                          window: Window = None, log: Callable[[str], None] = print) -> Dict[str, object]:
    """Write one record per usable pair into ``out_dir``; returns a summary. ``request`` may
    hold ``{name}`` (the case name). Pairs that cannot be used are listed in
    ``out_dir/skipped.txt`` and in the summary."""
    if max_steps < 1:
        raise ValueError(f"--max-steps must be at least 1; got {max_steps}.")
    # Records accumulate in the folder (each run adds its own); the list of skipped pairs is ours.
    folder = OwnedFolder(out_dir, True, "--out", ["skipped.txt"], [images_dir, masks_dir, initial_dir],
                         kind="trajectories")
    pairs, problems = find_pairs(images_dir, masks_dir, initial_dir)
    recorder = TrainingRecorder(out_dir)
    final_ious: List[float] = []
    steps = kept = 0
    for name, image_path, mask_path, initial_path in pairs:
        if os.path.exists(os.path.join(recorder.folder, name)):
            problems.append(f"{name}: {out_dir} already holds a record named {name}; left as it was")
            kept += 1
            continue
        recording = None
        try:
            pixels, _ = image_io.read_2d(image_path)
            image_rgb = to_rgb(pixels, window)
            truth = image_io.read_mask_2d(mask_path, image_rgb.shape[:2])
            initial = image_io.read_mask_2d(initial_path, image_rgb.shape[:2]) if initial_path else None
            teacher = ColdStartTeacher(truth, stop_iou)
            episode = Episode(image_rgb, segmenter, teacher, request=request.replace("{name}", name),
                              initial_mask=initial, max_steps=max_steps)
            recording = recorder.record(episode, source="cold-start", truth=truth, name=name)
            result = episode.run()
            recording.finish(done=result.stop_reason == STOP_TERMINATED)
        except Exception as error:  # noqa: BLE001 - one bad pair is listed, the run goes on
            if recording is not None:
                recording.discard()
            problems.append(f"{os.path.basename(image_path)}: {case_failure(error)}")
            continue
        steps += len(result.steps)
        final_ious.append(iou(result.mask, truth))
        log(f"{name}: {len(result.steps)} steps, IoU {final_ious[-1]:.3f} ({result.stop_reason})")
    folder.write_text("skipped.txt", "".join(line + "\n" for line in problems))
    folder.finish()
    for line in problems:
        log(f"skipped {line}")
    if not final_ious and not kept:
        raise ValueError(f"No trajectory could be made; see {folder.path('skipped.txt')}.")
    return {"records": len(final_ious), "steps": steps,
            "mean_final_iou": round(float(np.mean(final_ious)), 4) if final_ious else None,
            "skipped": len(problems), "already_recorded": kept}
