"""Time per propagated slice at 256 x 256 on the CPU, against one 2D step measured in the same run.

Volume: the MNI152 T1 template (nilearn) with its brain mask, every axial slice resized to
256 x 256 (bilinear image, nearest mask), shown through one window for the volume. Engine: the
defaults (`DEFAULT_POLICY`, `DEFAULT_SEGMENTER`, propagation "auto").

- one 2D step: ``propose`` + ``apply`` of the proposed click on an Episode whose image is already
  embedded (what the user waits for after each click), from rough starting masks so that the
  policy does propose clicks, over many slices;
- one propagated slice, the agent checking it: `VolumeEpisode.step_slice` carries the
  neighbour's mask and the agent looks at the result once (one proposal, not applied: a click it
  proposes is a 2D step of its own), from the largest slice up and down to the ends of the brain;
- for reference, propagation alone (no proposal), and one applied agent step per slice (the
  check, then embedding the new slice and applying the click).

Goal (issue 11): the median time per slice with the agent checking is within 2x of one 2D step.

    python benchmarks/bench_propagation_speed.py [--slices 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Dict, List

import bench_common as common
import numpy as np
from bench_common import format_table

from ibisagent.episode import Episode
from ibisagent.policies import DEFAULT_POLICY, build_policy
from ibisagent.segmenters import DEFAULT_SEGMENTER, build_segmenter
from ibisagent.volume_episode import VolumeEpisode
from ibisagent.volume_slices import RGBSlices

SIZE = 256


def volume(size: int = SIZE, slices: int = 40):
    """(RGBSlices, bool truth [index, row, col]): ``slices`` axial MNI152 slices around the
    brain's largest one, each resized to ``size`` x ``size``."""
    from PIL import Image

    from ibisagent.sample_data import centre_index, display_slice, mni152_volume

    t1, mask, _ = mni152_volume("brain")
    centre = centre_index(mask, "axial")
    indices = range(max(0, centre - slices // 2), min(t1.shape[2], centre + slices // 2))
    grey, truth = [], []
    for index in indices:
        image = display_slice(t1, "axial", index).astype(np.float32)
        grey.append(np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR)))
        target = display_slice(mask, "axial", index).astype(np.uint8) * 255
        truth.append(np.asarray(Image.fromarray(target).resize((size, size), Image.NEAREST)) > 127)
    return RGBSlices(np.stack(grey)), np.stack(truth)


def two_d_steps(slices, truth, policy, segmenter, count: int) -> List[float]:
    """Seconds of ``count`` propose + apply steps on already embedded slices, each starting
    from a rough mask (a band missing, a blob outside) so that the policy proposes clicks; a
    proposal that is not a click is not a step and is not counted."""
    from ibisagent.sample_data import rough_mask

    seconds: List[float] = []
    for index in range(len(slices)):
        if not truth[index].any():
            continue
        episode = Episode(slices[index], segmenter, policy, initial_mask=rough_mask(truth[index], "mixed"),
                          max_steps=3)
        for _ in range(3):
            started = time.perf_counter()
            proposal = episode.propose()
            if proposal.click is None:
                break
            episode.apply([proposal.click])
            seconds.append(time.perf_counter() - started)
            if len(seconds) >= count:
                return seconds
    return seconds


def per_slice(slices, truth, policy, segmenter, steps: int, apply: bool = True) -> List[float]:
    """Seconds of each `step_slice` with ``steps`` agent steps per slice; ``apply`` False: the
    agent's proposal is looked at and not applied (the check alone)."""
    start = int(np.argmax(truth.reshape(len(truth), -1).sum(axis=1)))
    episode = VolumeEpisode(slices, segmenter, policy, {start: truth[start]}, steps_per_slice=steps, min_fraction=0.0)
    decide = None if apply else (lambda proposal: None)
    seconds = []
    while True:
        started = time.perf_counter()
        outcome = episode.step_slice(decide)
        if outcome is None:
            break
        seconds.append(time.perf_counter() - started)
    episode.close()
    return seconds


def run(slices: int = 40, size: int = SIZE) -> Dict:
    stack, truth = volume(size, slices)
    policy, segmenter = build_policy(DEFAULT_POLICY), build_segmenter(DEFAULT_SEGMENTER)
    two_d = two_d_steps(stack, truth, policy, segmenter, count=30)
    checked = per_slice(stack, truth, policy, segmenter, steps=1, apply=False)
    alone = per_slice(stack, truth, policy, segmenter, steps=0)
    stepped = per_slice(stack, truth, policy, segmenter, steps=1)
    step_ms = statistics.median(two_d) * 1000
    rows = [
        dict(part="one 2D step (propose + apply)", **common.stats(two_d)),
        dict(part="propagated slice, the agent checks it (1 proposal)", **common.stats(checked)),
        dict(part="propagated slice, propagation alone", **common.stats(alone)),
        dict(part="propagated slice, 1 agent step applied (new embedding)", **common.stats(stepped)),
    ]
    for row in rows:
        row["x step"] = round(row["median_ms"] / step_ms, 2)
    ratio = rows[1]["x step"]
    return {"size": size, "policy": policy.name, "segmenter": segmenter.name, "rows": rows,
            "goal": {"goal": "time per slice (agent checking) <= 2x one 2D step", "measured": f"{ratio:.2f}x",
                     "result": "PASS" if ratio <= 2.0 else "FAIL"}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=40, help="axial slices around the largest one")
    args = parser.parse_args(argv)
    result = run(args.slices)
    print(f"{result['size']} x {result['size']} px, policy {result['policy']}, tool {result['segmenter']}")
    print(format_table(result["rows"], ("part", "median_ms", "p95_ms", "n", "x step")))
    goal = result["goal"]
    print(f"\n{goal['goal']}: {goal['measured']}  {goal['result']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
