"""Slicer-side cost of one agent step: flat in the number of slices, and a fast slice write.

Timed on a real MRML scene (PyPI slicer-core), with an agent that costs nothing (scripted
proposals, a tool that returns one of two fixed masks), so every millisecond is the module's own
work in Slicer:

- **step**: one `proposeNext` + `acceptProposal` of `IBISAgentLogic` (hand-edit check, markups,
  the slice written into the segment's own grid, the click history) on 256 x 256 volumes of 24
  and 240 slices. Goal (issue 10): 240 slices cost at most 1.5x what 24 slices cost.
- **slice write**: `SliceLabelmap.write` alone, changing a quarter of the slice, at 512 and 1024
  px (24 slices). Goal: under 10 ms at 512 px.

Each figure is printed beside baselines measured in the same run: ``np.copy`` of the slice mask,
and the whole-segment round trip the module used before (``arrayFromSegmentBinaryLabelmap``, the
slice changed, ``updateSegmentBinaryLabelmapFromArray``), whose cost grows with the volume.

    python benchmarks/bench_slicer_step.py            # about a minute on a 2-core VM
    python benchmarks/bench_slicer_step.py --quick    # smaller repeats
"""

from __future__ import annotations

import argparse
import sys
from typing import Dict, List, Sequence

import numpy as np

import bench_common as common
from bench_common import format_table, stats, time_calls, write_json
from bench_latency import open_scene

STEP_SIDE = 256
STEP_DEPTHS = (24, 240)
WRITE_SIDES = (512, 1024)
WRITE_DEPTH = 24
#: Steps per episode before a fresh one starts (the click history grows with the episode).
EPISODE_STEPS = 10


def _agent():
    """A scripted policy and a tool that alternates between two fixed masks: no agent cost."""
    from ibisagent.actions import POSITIVE, Action, format_response
    from ibisagent.policies.base import Policy
    from ibisagent.segmenters.base import Prediction, Segmenter

    class Scripted(Policy):
        name = "scripted"

        def respond(self, observation):
            return format_response("bench", Action(POSITIVE, 0.3 + 0.01 * observation.step, 0.5))

    class TwoMasks(Segmenter):
        name = "two-masks"

        def _embed(self, image):
            rows, cols = image.shape[:2]
            small = np.zeros((rows, cols), bool)
            small[rows // 4: rows // 2, cols // 4: cols // 2] = True
            large = small.copy()
            large[rows // 4: 3 * rows // 4, cols // 4: 3 * cols // 4] = True
            return small, large

        def _predict(self, masks, clicks, prior_mask, prior_state):
            return Prediction(masks[len(clicks) % 2].copy(), None, 1.0)

    return Scripted(), TwoMasks()


def _case(mrml, side: int, depth: int):
    from slicer_scene import add_segmentation, add_volume, make_ijk_to_ras, place_view_on_voxel

    voxels = np.random.default_rng(0).integers(0, 1000, (depth, side, side)).astype(np.int16)
    volume = add_volume(mrml, voxels, make_ijk_to_ras(np.eye(3)), name=f"v{side}x{depth}")
    segmentation, ids = add_segmentation(mrml, volume)
    start = np.zeros((depth, side, side), np.uint8)
    start[:, side // 3: 2 * side // 3, side // 3: 2 * side // 3] = 1  # every slice holds part of the segment
    import slicer

    slicer.util.updateSegmentBinaryLabelmapFromArray(start, segmentation, ids[0], volume)
    place_view_on_voxel(mrml, "Red", volume, (side // 2, side // 2, depth // 2))
    return volume, segmentation, ids[0]


def _whole_segment_round_trip(volume, segmentation, segment_id, geometry, masks):
    """The old write: the whole segment out to the volume's grid and back, one slice changed."""
    import slicer

    flip = [0]

    def write():
        flip[0] ^= 1
        array = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, volume)
        slicer.util.updateSegmentBinaryLabelmapFromArray(
            geometry.insert(array, masks[flip[0]].astype(np.uint8)), segmentation, segment_id, volume)

    return write


def step_rows(mrml, side: int, depths: Sequence[int], steps: int) -> List[Dict]:
    from IBISAgentLib.logic import IBISAgentLogic
    from IBISAgentLib.slice_geometry import slice_geometry

    rows = []
    for depth in depths:
        volume, segmentation, segment_id = _case(mrml, side, depth)
        logic = IBISAgentLogic()
        policy, tool = _agent()
        logic.useLocalEngine(policy, tool)
        durations = []
        while len(durations) < steps:
            logic.startEpisode(volume, segmentation, segment_id, view="Red", maxSteps=1000)
            logic.proposeNext()
            logic.acceptProposal()  # warm-up step of each episode, not timed
            for _ in range(min(EPISODE_STEPS, steps - len(durations))):
                durations.extend(time_calls(lambda: (logic.proposeNext(), logic.acceptProposal()), 1, warmup=0))
            logic.finish()
        geometry = slice_geometry(volume, "Red", mrml)
        masks = [np.zeros(geometry.shape, bool), np.zeros(geometry.shape, bool)]
        masks[1][: side // 2, : side // 2] = True
        old = stats(time_calls(_whole_segment_round_trip(volume, segmentation, segment_id, geometry, masks),
                               max(3, steps // 4)))
        rows.append({"part": "step (propose + accept)", "volume": f"{side}x{side}x{depth}", **stats(durations),
                     "old_write_ms": old["median_ms"]})
        mrml.RemoveNode(segmentation)
        mrml.RemoveNode(volume)
    return rows


def write_rows(mrml, sides: Sequence[int], depth: int, repeats: int) -> List[Dict]:
    from IBISAgentLib.slice_geometry import slice_geometry
    from IBISAgentLib.slice_labelmap import SliceLabelmap

    rows = []
    for side in sides:
        volume, segmentation, segment_id = _case(mrml, side, depth)
        geometry = slice_geometry(volume, "Red", mrml)
        labelmap = SliceLabelmap(segmentation, segment_id, volume, geometry)
        masks = [labelmap.read(), labelmap.read()]
        masks[1][: side // 2, : side // 2] = ~masks[1][: side // 2, : side // 2]  # a quarter of the slice
        flip = [0]

        def write():
            flip[0] ^= 1
            labelmap.write(masks[flip[0]])

        new = stats(time_calls(write, repeats))
        read = stats(time_calls(labelmap.read, repeats))
        copy = common.baseline_copy(geometry.shape)
        old = stats(time_calls(_whole_segment_round_trip(volume, segmentation, segment_id, geometry, masks),
                               max(3, repeats // 4)))
        rows.append({"part": "slice write", "volume": f"{side}x{side}x{depth}", **new,
                     "read_ms": read["median_ms"], "copy_ms": copy["median_ms"], "old_write_ms": old["median_ms"],
                     "x_faster": round(old["median_ms"] / new["median_ms"], 1)})
        mrml.RemoveNode(segmentation)
        mrml.RemoveNode(volume)
    return rows


def run(step_side: int = STEP_SIDE, depths: Sequence[int] = STEP_DEPTHS, write_sides: Sequence[int] = WRITE_SIDES,
        write_depth: int = WRITE_DEPTH, steps: int = 40, repeats: int = 40) -> Dict:
    """Both parts on one fresh scene; ``{"rows": []}`` without slicer-core."""
    scene = open_scene()
    if scene is None:
        return {"rows": [], "goals": []}
    with scene as mrml:
        steps_part = step_rows(mrml, step_side, depths, steps)
        writes = write_rows(mrml, write_sides, write_depth, repeats)
    return {"rows": steps_part + writes, "goals": goals(steps_part, writes)}


def goals(steps_part: List[Dict], writes: List[Dict]) -> List[Dict]:
    checks = []
    if len(steps_part) >= 2:
        first, last = steps_part[0], steps_part[-1]
        ratio = last["median_ms"] / first["median_ms"]
        old_ratio = last["old_write_ms"] / first["old_write_ms"]
        checks.append({"goal": f"step cost {last['volume']} / {first['volume']} <= 1.5",
                       "value": f"{ratio:.2f} ({first['median_ms']:.1f} -> {last['median_ms']:.1f} ms; "
                                f"the old whole-segment write: {old_ratio:.1f}x)",
                       "ok": ratio <= 1.5})
    for row in writes:
        if row["volume"].startswith("512x"):
            checks.append({"goal": "slice write at 512 px < 10 ms",
                           "value": f"{row['median_ms']:.2f} ms (old {row['old_write_ms']:.1f} ms, {row['x_faster']}x)",
                           "ok": row["median_ms"] < 10})
    for check in checks:
        check["result"] = "PASS" if check["ok"] else "FAIL"
    return checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    result = run(steps=15 if args.quick else 40, repeats=12 if args.quick else 40)
    if not result["rows"]:
        return 1
    print(format_table(result["rows"], ("part", "volume", "median_ms", "p95_ms", "n", "read_ms", "copy_ms",
                                        "old_write_ms", "x_faster"), "Slicer-side cost (ms)"))
    print(format_table(result["goals"], ("goal", "value", "result"), "goals"))
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
