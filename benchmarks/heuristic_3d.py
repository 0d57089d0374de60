"""Does the weight-free agent do no harm in 3D, and what does it do from rough 3D starts?

Cases: the real 3D dev volumes in ``--devset`` (default ../shared/data/devset/3d; BraTS: whole
tumour, DeepLesion CT: the lesion, as `bench_common.choose_target` picks them; the
synthetic volume is left out) and three MNI152 structures of nilearn's template (brain, white
matter, grey matter). Each runs `ibisagent.volume_session.VolumeSession` (the code path of
``ibisagent continue`` without ``--plane``) with the ``heuristic`` policy, every proposal accepted,
up to ``--steps`` steps:

- ``truth``: the start is the label itself. The agent must do no harm: final Dice >= 0.97 on
  every volume (issue 19);
- ``initial``: the dev volume's rough ``*_initial.nii.gz`` start (the dev volumes only).

The policy never sees the reference; Dice against it is measured before and after. Printed per
volume and scenario: Dice before and after, steps (clicks), proposals, slices looked at, voxels
added and removed, seconds.

Run:  OMP_NUM_THREADS=1 python benchmarks/heuristic_3d.py [--tool slice2d] [--steps 20]
      [--looks 3] [--no-confirm] [--no-mni] [--devset DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Iterator, List, Optional, Tuple

import bench_common as common
import numpy as np
import SimpleITK as sitk

from ibisagent.metrics import dice
from ibisagent.policies import build_policy
from ibisagent.segmenters import DEFAULT_VOLUME_SEGMENTER, build_volume_segmenter
from ibisagent.volume_session import DEFAULT_LOOKS, VolumeSession
from ibisagent.volume_views import views_of_image

DEVSET = common.DEVSET_3D
#: The issue's no-harm target: final Dice from a correct start, on every volume.
NO_HARM_DICE = 0.97


@dataclass
class Row:
    case: str
    scenario: str
    start_dice: float
    end_dice: float
    steps: int
    clicks: int
    proposals: int
    looked: int
    added: int
    removed: int
    stop: Optional[str]
    seconds: float


def cases(devset: Optional[str], mni: bool, tissues: Tuple[str, ...] = ("brain", "white", "grey")
          ) -> Iterator[Tuple[str, sitk.Image, np.ndarray, Optional[np.ndarray]]]:
    """(name, image, truth bool [k, j, i], rough start or None) of every volume, one at a time."""
    for name, image, _, truth, _ in common.dev_volumes(devset, lambda name: not name.startswith("synthetic_")):
        initial_path = os.path.join(devset, name + "_initial.nii.gz")
        initial = sitk.GetArrayFromImage(sitk.ReadImage(initial_path)) != 0 if os.path.exists(initial_path) else None
        yield name, image, truth, initial
    if not mni:
        return
    for tissue in tissues:
        image, mask = common.mni152_images(tissue)
        yield f"mni152_{tissue}", image, sitk.GetArrayFromImage(mask) != 0, None


def run_case(name: str, scenario: str, image: sitk.Image, truth: np.ndarray, start: np.ndarray, tool, policy,
             steps: int, looks: int, confirm: bool = True) -> Row:
    started = time.perf_counter()
    volume = sitk.GetArrayFromImage(image)
    session = VolumeSession(volume, views_of_image(image), tool, policy, "Segment the target.", start,
                            spacing=tuple(reversed(image.GetSpacing())), max_steps=steps, looks=looks,
                            confirm=confirm)
    result = session.run()
    return Row(name, scenario, dice(start, truth), dice(result.mask, truth), len(result.steps),
               sum(len(s.clicks) for s in result.steps), len(result.proposals),
               sum(len(p.looked) for p in result.proposals), int((result.mask & ~start).sum()),
               int((start & ~result.mask).sum()), result.stop_reason, time.perf_counter() - started)


def run(devset: Optional[str] = DEVSET, tool_name: str = DEFAULT_VOLUME_SEGMENTER, steps: int = 20,
        looks: int = DEFAULT_LOOKS, mni: bool = True, log=print, tissues=("brain", "white", "grey"),
        confirm: bool = True) -> List[Row]:
    tool = build_volume_segmenter(tool_name)
    policy = build_policy("heuristic")
    rows = []
    for name, image, truth, initial in cases(devset, mni, tuple(tissues)):
        for scenario, start in (("truth", truth), ("initial", initial)):
            if start is None:
                continue
            rows.append(run_case(name, scenario, image, truth, start, tool, policy, steps, looks, confirm))
            log(_line(rows[-1]))
    return rows


def _line(r: Row) -> str:
    return (f"{r.case:<26}{r.scenario:<9}{r.start_dice:8.4f}{r.end_dice:8.4f}{r.end_dice - r.start_dice:+9.4f}"
            f"{r.steps:6d}{r.clicks:7d}{r.proposals:6d}{r.looked:7d}{r.added:9d}{r.removed:9d}{r.seconds:8.1f}  {r.stop}")


HEADER = (f"{'volume':<26}{'start':<9}{'Dice0':>8}{'Dice1':>8}{'gain':>9}{'steps':>6}{'clicks':>7}{'props':>6}"
          f"{'looked':>7}{'added':>9}{'removed':>9}{'s':>8}  stop")


def summary(rows: List[Row]) -> List[str]:
    truth = [r for r in rows if r.scenario == "truth"]
    rough = [r for r in rows if r.scenario == "initial"]
    kept = [r for r in truth if r.end_dice >= NO_HARM_DICE]
    lines = [f"no harm: final Dice >= {NO_HARM_DICE} from the label itself on {len(kept)} of {len(truth)} volumes "
             f"(min {min(r.end_dice for r in truth):.4f}) -> {'PASS' if len(kept) == len(truth) else 'FAIL'}"]
    if rough:
        better = [r for r in rough if r.end_dice > r.start_dice + 1e-4]
        worse = [r for r in rough if r.end_dice < r.start_dice - 1e-4]
        lines.append(f"rough starts: mean Dice {np.mean([r.start_dice for r in rough]):.4f} -> "
                     f"{np.mean([r.end_dice for r in rough]):.4f}; better on {len(better)}, worse on {len(worse)} "
                     f"of {len(rough)}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devset", default=DEVSET, help="folder of the 3D dev volumes")
    parser.add_argument("--tool", default=DEFAULT_VOLUME_SEGMENTER, help="the 3D tool (default: the registry's)")
    parser.add_argument("--steps", type=int, default=20, help="most steps per volume (default 20, as continue)")
    parser.add_argument("--looks", type=int, default=DEFAULT_LOOKS, help="slices reviewed per proposal at most")
    parser.add_argument("--no-mni", action="store_true", help="the dev volumes only")
    parser.add_argument("--confirm", action=argparse.BooleanOptionalAction, default=True,
                        help="a click must hold in a second view (the session's default: on)")
    parser.add_argument("--out", default=os.path.join(common.RESULTS_DIR, "heuristic_3d.json"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"tool {args.tool}, heuristic policy, {args.steps} steps at most, {args.looks} looks per proposal, "
          f"second view {'on' if args.confirm else 'off'}\n")
    print(HEADER, flush=True)
    rows = run(args.devset, args.tool, args.steps, args.looks, not args.no_mni,
               log=lambda line: print(line, flush=True), confirm=args.confirm)
    print()
    for line in summary(rows):
        print(line)
    print(f"\n{time.perf_counter() - started:.0f} s")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    common.write_json(args.out, {"tool": args.tool, "steps": args.steps, "looks": args.looks, "confirm": args.confirm,
                                 "rows": [asdict(r) for r in rows], "summary": summary(rows)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
