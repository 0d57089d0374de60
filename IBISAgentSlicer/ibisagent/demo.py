"""The quick-start demo: continue a rough mask on a real MRI slice, with the CPU defaults.

Data: the MNI152 T1 template and its tissue mask, which ship inside nilearn. The starting mask
is the tissue mask made rough on purpose (a band cut out, eroded, or leaky); the agent's clicks
should bring it back towards the reference. Everything is written under one folder.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from . import headless, image_io
from .engine import spec_from_args
from .imaging import to_rgb
from .sample_data import mni152_slice, rough_mask

REQUESTS = {
    "brain": "Segment the brain.",
    "grey": "Segment the grey matter.",
    "white": "Segment the white matter.",
}


def run_demo(args) -> int:
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {args.out} is a file; the demo writes into a folder.")
    if args.max_steps < 1:
        raise ValueError(f"--max-steps must be at least 1; got {args.max_steps}.")
    inputs = os.path.join(out, "inputs")
    os.makedirs(inputs, exist_ok=True)
    image, truth = mni152_slice(args.tissue, args.plane)
    start = rough_mask(truth, args.rough)
    request = REQUESTS[args.tissue]
    image_io.write_mask(os.path.join(inputs, "reference_mask.nii.gz"), truth)
    image_io.write_mask(os.path.join(inputs, "starting_mask.nii.gz"), start)
    _write_image(os.path.join(inputs, "t1_slice.nii.gz"), image)
    image_rgb = to_rgb(image)
    Image.fromarray(image_rgb).save(os.path.join(inputs, "t1_slice.png"))

    segmenter, make_policy = spec_from_args(args).build()
    policy = make_policy(truth)
    print(f"IBISAgent demo: MNI152 T1 {args.plane} slice ({image.shape[1]}x{image.shape[0]} pixels), "
          f"request {request!r}, starting from a rough ({args.rough}) {args.tissue} mask.")
    if policy.name == "heuristic":
        print("NOTE: no IBISAgent checkpoint is configured, so the proposals come from the weight-free "
              "heuristic policy, not from the IBISAgent model (README: 'Using real checkpoints').")
    headless.clear_step_pictures(os.path.join(out, "steps"))  # the demo's own pictures of an earlier run
    report = headless.run_continue(image_rgb, segmenter, policy, request, start, args.max_steps, truth,
                                   os.path.join(out, "steps"))
    mask = report.result.mask
    image_io.write_mask(os.path.join(out, "final_mask.nii.gz"), mask)
    image_io.write_mask(os.path.join(out, "final_mask.png"), mask)
    headless.write_log(os.path.join(out, "steps.json"), report, policy, segmenter, request, True)
    print(headless.final_iou_line(report, truth))
    print(f"Proposals were made by the {policy.name} policy: {policy.description}.")
    print(f"Wrote {out}/final_mask.nii.gz, final_mask.png, steps.json, steps/step_*.png "
          f"(one picture per step) and steps/all_steps.png.")
    return 0


def _write_image(path: str, pixels: np.ndarray) -> None:
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(pixels.astype(np.float32)), path, True)
