"""How well the `litemedsam` tool refines under clicks, with the standard protocol.

Protocol: `ibisagent.evaluate.run_case` (the simulated annotator clicks 20 times, every click is
applied, no early stop) on the centre MNI152 slice of each tissue (brain, grey, white) in each
plane (axial, coronal, sagittal): 9 cases. Starts: from scratch and "continue my mask" from each
`sample_data.rough_mask` kind (eroded, cut, leaky). Reported per start: NoC@85 and NoC@90
(`metrics.clicks_to_reach`, 20 when never reached), mean IoU after 1 and 5 clicks, and the mean
starting IoU. Runs in about 2-4 minutes on a 2-core CPU (torch limited to 2 threads).

    python benchmarks/litemedsam_quality.py [--starts scratch cut] [--tissues brain]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ibisagent.evaluate import run_case, summarise
from ibisagent.imaging import to_rgb
from ibisagent.sample_data import PLANES, ROUGHNESS, TISSUES, mni152_slice, rough_mask
from ibisagent.segmenters import build_segmenter

CLICKS = 20
STARTS = ("scratch",) + ROUGHNESS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", nargs="+", default=list(STARTS), choices=STARTS)
    parser.add_argument("--tissues", nargs="+", default=list(TISSUES), choices=TISSUES)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    segmenter = build_segmenter("litemedsam", device="cpu")
    cases = []
    for tissue in args.tissues:
        for plane in PLANES:
            image, truth = mni152_slice(tissue, plane)
            cases.append((f"{tissue}/{plane}", to_rgb(image), truth))
    started = time.perf_counter()
    header = ("cases", "NoC@85", "NoC@90", "mIoU@1", "mIoU@5")
    print(f"{'start':8} " + " ".join(f"{h:>7}" for h in header) + f" {'start IoU':>9}")
    for start in args.starts:
        results = [
            run_case(name, image, truth, segmenter, None, clicks=CLICKS,
                     initial=None if start == "scratch" else rough_mask(truth, start))
            for name, image, truth in cases
        ]
        summary = summarise(results, CLICKS)
        start_iou = float(np.mean([r.start_iou for r in results]))
        print(f"{start:8} {summary['cases']:>7} {summary['noc@85']:>7.2f} {summary['noc@90']:>7.2f} "
              f"{summary['miou@1']:>7.3f} {summary['miou@5']:>7.3f} {start_iou:>9.3f}", flush=True)
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
