"""Write the MNI152 evaluation slices as files, so `ibisagent eval` itself can be run on them.

Layout under OUT: images/<case>.nii.gz (T1 slice), masks/<case>.png (tissue mask) and, per rough
start kind, initial_<kind>/<case>.png. Cases are `bench_common.slice_set`:
brain, grey and white matter x axial, coronal, sagittal x the centre slice and +/-12.

    python benchmarks/export_eval_set.py --out /tmp/mni152-eval
    ibisagent eval --images /tmp/mni152-eval/images --masks /tmp/mni152-eval/masks \\
        --policy simulated --segmenter graphcut --clicks 20 --out /tmp/eval-graphcut
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import SimpleITK as sitk

from bench_common import slice_set
from ibisagent import image_io
from ibisagent.sample_data import ROUGHNESS, rough_mask


def export(out: str, quick: bool = False) -> int:
    for folder in ["images", "masks", *[f"initial_{kind}" for kind in ROUGHNESS]]:
        os.makedirs(os.path.join(out, folder), exist_ok=True)
    cases = slice_set(quick)
    for name, image, truth in cases:
        case = name.replace("/", "_")
        sitk.WriteImage(sitk.GetImageFromArray(np.asarray(image, np.float32)),
                        os.path.join(out, "images", f"{case}.nii.gz"))
        image_io.write_mask(os.path.join(out, "masks", f"{case}.png"), truth)
        for kind in ROUGHNESS:
            image_io.write_mask(os.path.join(out, f"initial_{kind}", f"{case}.png"), rough_mask(truth, kind))
    return len(cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true", help="centre slices only")
    args = parser.parse_args()
    print(f"Wrote {export(args.out, args.quick)} cases to {args.out}")


if __name__ == "__main__":
    main()
