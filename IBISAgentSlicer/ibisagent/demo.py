"""The quick-start demo: continue a rough mask on a real MRI slice, with the CPU defaults.

Data: the MNI152 T1 template and its tissue mask, which ship inside nilearn. The starting mask
is the tissue mask made rough on purpose (a band cut out, eroded, or leaky); the agent's clicks
should bring it back towards the reference. Everything is written under one folder, which the
demo owns (`safe_io.OwnedFolder`): a folder holding an earlier demo is refused unless
``--overwrite``, a file of the user's is never replaced, and every file appears at the end.
"""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk
from PIL import Image

from . import headless, image_io
from .engine import spec_from_args
from .imaging import to_rgb
from .safe_io import OutputSet, OwnedFolder
from .sample_data import mni152_slice, rough_mask

#: The files the demo writes in its folder (the step pictures go to its own folder ``steps/``).
FILES = ("inputs/reference_mask.nii.gz", "inputs/starting_mask.nii.gz", "inputs/t1_slice.nii.gz", "inputs/t1_slice.png",
         "final_mask.nii.gz", "final_mask.png", "steps.json")

REQUESTS = {
    "brain": "Segment the brain.",
    "grey": "Segment the grey matter.",
    "white": "Segment the white matter.",
}


def run_demo(args) -> int:
    if args.max_steps < 1:
        raise ValueError(f"--max-steps must be at least 1; got {args.max_steps}.")
    out = OwnedFolder(args.out, args.overwrite, "--out", FILES, kind="demo", what="an earlier demo")
    steps = headless.picture_folder(os.path.join(args.out, "steps"), args.max_steps, args.overwrite, option="--out")
    with OutputSet({}, folders=[out, steps]) as outputs:
        image, truth = mni152_slice(args.tissue, args.plane)
        start = rough_mask(truth, args.rough)
        request = REQUESTS[args.tissue]
        image_rgb = to_rgb(image)
        _add_image(out, "inputs/reference_mask.nii.gz", image_io.mask_image(truth))
        _add_image(out, "inputs/starting_mask.nii.gz", image_io.mask_image(start))
        _add_image(out, "inputs/t1_slice.nii.gz", sitk.GetImageFromArray(image.astype(np.float32)))
        with out.add("inputs/t1_slice.png") as temporary:
            Image.fromarray(image_rgb).save(temporary, format="PNG")

        segmenter, make_policy = spec_from_args(args).build()
        policy = make_policy(truth)
        print(f"IBISAgent demo: MNI152 T1 {args.plane} slice ({image.shape[1]}x{image.shape[0]} pixels), "
              f"request {request!r}, starting from a rough ({args.rough}) {args.tissue} mask.")
        if policy.name == "heuristic":
            print("NOTE: no IBISAgent checkpoint is configured, so the proposals come from the weight-free "
                  "heuristic policy, not from the IBISAgent model (README: 'Using real checkpoints').")
        report = headless.run_continue(image_rgb, segmenter, policy, request, start, args.max_steps, truth, steps)
        mask = report.result.mask
        _add_image(out, "final_mask.nii.gz", image_io.mask_image(mask))
        _add_image(out, "final_mask.png", image_io.mask_image(mask, suffix=".png"))
        out.add_json("steps.json", headless.log_document(report, policy, segmenter, request, True))
        outputs.commit()
    print(headless.final_iou_line(report, truth))
    print(f"Proposals were made by the {policy.name} policy: {policy.description}.")
    print(f"Wrote {out.folder}/final_mask.nii.gz, final_mask.png, steps.json, steps/step_*.png "
          f"(one picture per step) and steps/all_steps.png.")
    return 0


def _add_image(folder: OwnedFolder, name: str, image) -> None:
    with folder.add(name) as temporary:
        image_io.save_image(image, temporary)
