"""Does the weight-free `heuristic` policy do no harm on real images of every modality?

Cases: the 2D dev set (``--devset``, default ``../shared/data/devset/2d``: ``images/``, ``masks/``,
``initial/``), grouped by the case-name prefix before the first ``_`` (``ct``, ``derm``, ...) and
split into two fixed halves per group (`devset_variants.halves`: sorted by name, alternating A/B),
so that a change tuned on one half can be confirmed on the other. Every proposal is accepted
unchanged, up to ``--steps`` steps. Scenarios:

- ``truth``: the episode starts from the expert mask itself. The policy should leave it alone
  (terminate at once is fine); the target is a final IoU >= 0.95 in at least 97% of the cases,
  and at least 96% on each half.
- ``initial``: the episode starts from the degraded mask in ``initial/``. The target is a mean
  IoU after the episode at least the start's on every group (each half too), and better on most.
- with ``--stress``, starts the dev set does not hold (`devset_variants`): the expert mask on a
  changed image (``truth~photo``, ``truth~small``; kept >= 0.95?) and rough starts of six other
  kinds (``shift``, ``leak``, ``notch``, ``erode8``, ``dilate8``, ``near``; no group lower on
  average?).

The policy never sees the ground truth; the IoU against it is measured before and after.

Run:  OMP_NUM_THREADS=1 python benchmarks/heuristic_devset.py [--steps 8] [--workers 2]
      [--segmenter graphcut] [--devset DIR] [--stress] [--cases]
Prints per group: start and end mean IoU of both scenarios, the share of truth starts kept
>= 0.95, the share of degraded starts improved and worsened; then the same per half; with
``--stress`` one line per stress scenario and group; with ``--cases``, one row per case.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "IBISAgentSlicer"))
sys.path.insert(0, HERE)

import devset_variants as variants  # noqa: E402
from ibisagent import image_io, parallel  # noqa: E402
from ibisagent.episode import Episode  # noqa: E402
from ibisagent.evaluate import case_group, find_pairs  # noqa: E402
from ibisagent.imaging import to_rgb  # noqa: E402
from ibisagent.metrics import iou  # noqa: E402
from ibisagent.policies import build_policy  # noqa: E402
from ibisagent.segmenters import build_segmenter  # noqa: E402

DEFAULT_DEVSET = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "devset", "2d"))
SCENARIOS = ("truth", "initial")
#: Scenarios that start from a right mask (the expert's, on the image as given or changed).
KEEP_SCENARIOS = ("truth",) + variants.IMAGE_KINDS
STRESS_SCENARIOS = variants.IMAGE_KINDS + variants.ROUGH_KINDS
#: A truth start is "kept" when its final IoU is at least this (the issue's target).
KEPT_IOU = 0.95
#: A change smaller than this IoU counts as no change (mask resampling noise is below it).
SAME = 0.001


@dataclass
class Row:
    case: str
    scenario: str
    start_iou: float
    end_iou: float
    steps: int
    stop: Optional[str]
    half: str = "A"

    @property
    def group(self) -> str:
        return case_group(self.case)


def run_case(image_rgb, truth, start_mask, segmenter, policy, steps: int):
    """(final IoU, steps taken, stop reason) of one episode that accepts every proposal."""
    episode = Episode(image_rgb, segmenter, policy, "Segment the target.", start_mask, max_steps=steps)
    result = episode.run()
    return iou(result.mask, truth), len(result.steps), result.stop_reason


def load_case(pair):
    """(rgb image, truth, degraded start) of one `find_pairs` pair, as `ibisagent eval` reads them."""
    _, image_path, mask_path, initial_path = pair
    pixels, _ = image_io.read_2d(image_path)
    rgb = to_rgb(pixels)
    truth = image_io.read_mask_2d(mask_path, rgb.shape[:2])
    initial = image_io.read_mask_2d(initial_path, rgb.shape[:2])
    return rgb, truth, initial


def pairs_of(devset: str, only: Sequence[str] = ()) -> list:
    """The dev set's (name, image, mask, initial, half) cases, optionally only the named ones;
    the half ("A" or "B") comes from all the dev set's names, whatever ``only`` keeps."""
    pairs, _ = find_pairs(os.path.join(devset, "images"), os.path.join(devset, "masks"),
                          os.path.join(devset, "initial"))
    half = variants.halves(pair[0] for pair in pairs)
    if only:
        pairs = [pair for pair in pairs if pair[0] in set(only)]
    return [tuple(pair) + (half[pair[0]],) for pair in pairs]


def starts_of(name: str, rgb, truth, initial, scenarios: Sequence[str]):
    """(scenario, image, expert mask, start mask) of each scenario asked for."""
    for scenario in scenarios:
        if scenario == "truth":
            yield scenario, rgb, truth, truth
        elif scenario == "initial":
            yield scenario, rgb, truth, initial
        elif scenario in variants.IMAGE_KINDS:
            image, mask = variants.changed_image(name, scenario, rgb, truth)
            yield scenario, image, mask, mask
        else:
            yield scenario, rgb, truth, variants.rough_start(name, scenario, truth)


def run_pair(pair, segmenter, policy, steps: int, scenarios: Sequence[str] = SCENARIOS) -> List[Row]:
    rgb, truth, initial = load_case(pair[:4])
    rows = []
    for scenario, image, right, start in starts_of(pair[0], rgb, truth, initial, scenarios):
        end, count, stop = run_case(image, right, start, segmenter, policy, steps)
        rows.append(Row(pair[0], scenario, iou(start, right), end, count, stop, pair[4]))
    return rows


_worker: Optional[tuple] = None


def _start_worker(segmenter_name: str, steps: int, scenarios: Sequence[str]) -> None:
    global _worker
    _worker = (build_segmenter(segmenter_name), build_policy("heuristic"), steps, tuple(scenarios))


def _pair_in_worker(pair) -> List[Row]:
    segmenter, policy, steps, scenarios = _worker
    return run_pair(pair, segmenter, policy, steps, scenarios)


def run(devset: str = DEFAULT_DEVSET, steps: int = 8, segmenter_name: str = "graphcut", workers: int = 2,
        only: Sequence[str] = (), scenarios: Sequence[str] = SCENARIOS) -> List[Row]:
    pairs = pairs_of(devset, only)
    setup = (segmenter_name, steps, tuple(scenarios))
    if workers > 1:
        nested = parallel.map_in_workers(_pair_in_worker, pairs, workers, _start_worker, setup)
    else:
        _start_worker(*setup)
        nested = [_pair_in_worker(pair) for pair in pairs]
    return [row for rows in nested for row in rows]


def group_table(rows: Sequence[Row]) -> Dict[str, Dict[str, float]]:
    """Per group (and "all"): the figures `summarise` prints."""
    groups = sorted({r.group for r in rows}) + ["all"]
    table = {}
    for group in groups:
        part = [r for r in rows if group in ("all", r.group)]
        truth = [r for r in part if r.scenario == "truth"]
        start = [r for r in part if r.scenario == "initial"]
        gains = np.array([r.end_iou - r.start_iou for r in start])
        table[group] = {
            "cases": len(truth),
            "truth_end": float(np.mean([r.end_iou for r in truth])),
            "truth_kept": float(np.mean([r.end_iou >= KEPT_IOU for r in truth])),
            "truth_untouched": float(np.mean([r.steps == 0 for r in truth])),
            "initial_start": float(np.mean([r.start_iou for r in start])),
            "initial_end": float(np.mean([r.end_iou for r in start])),
            "improved": float(np.mean(gains > SAME)),
            "worse": float(np.mean(gains < -SAME)),
            "steps": float(np.mean([r.steps for r in start])),
        }
    return table


def summarise(rows: Sequence[Row], out=sys.stdout) -> Dict[str, Dict[str, float]]:
    table = group_table(rows)
    print(f"{'group':<8}{'cases':>6} | {'truth: end':>10}{'>=0.95':>8}{'no click':>9} | "
          f"{'degraded: start':>15}{'end':>7}{'gain':>8}{'improved':>9}{'worse':>7}{'steps':>6}", file=out)
    for group, f in table.items():
        print(f"{group:<8}{f['cases']:>6} | {f['truth_end']:>10.3f}{f['truth_kept']:>8.0%}{f['truth_untouched']:>9.0%} | "
              f"{f['initial_start']:>15.3f}{f['initial_end']:>7.3f}{f['initial_end'] - f['initial_start']:>+8.3f}"
              f"{f['improved']:>9.0%}{f['worse']:>7.0%}{f['steps']:>6.1f}", file=out)
    groups = {g: f for g, f in table.items() if g != "all"}
    not_worse = [g for g, f in groups.items() if f["initial_end"] >= f["initial_start"] - 1e-9]
    better = [g for g, f in groups.items() if f["initial_end"] > f["initial_start"] + SAME]
    overall = table["all"]
    print(f"\ntruth starts kept >= {KEPT_IOU}: {overall['truth_kept']:.1%} of {overall['cases']} cases "
          f"(target >= 97%)", file=out)
    print(f"degraded starts: mean IoU not below the start on {len(not_worse)} of {len(groups)} groups, "
          f"better on {len(better)} (target: all, and most)"
          + (f"; below on {', '.join(sorted(set(groups) - set(not_worse)))}" if len(not_worse) < len(groups) else ""),
          file=out)
    return table


def figures(rows: Sequence[Row]) -> Dict[str, float]:
    """cases, kept (share of final IoU >= `KEPT_IOU`), start and end mean IoU, worse (share of
    cases that lost more than `SAME`) of some rows (NaN figures when there are none)."""
    if not rows:
        return {"cases": 0, **{key: float("nan") for key in ("kept", "start", "end", "worse")}}
    return {
        "cases": len(rows),
        "kept": float(np.mean([r.end_iou >= KEPT_IOU for r in rows])),
        "start": float(np.mean([r.start_iou for r in rows])),
        "end": float(np.mean([r.end_iou for r in rows])),
        "worse": float(np.mean([r.end_iou < r.start_iou - SAME for r in rows])),
    }


def split_table(rows: Sequence[Row], scenario: str) -> Dict[str, Dict[str, Dict[str, float]]]:
    """group (and "all") -> half ("A", "B", "all") -> `figures` of one scenario's rows."""
    rows = [r for r in rows if r.scenario == scenario]
    table = {}
    for group in sorted({r.group for r in rows}) + ["all"]:
        part = [r for r in rows if group in ("all", r.group)]
        table[group] = {half: figures([r for r in part if half in ("all", r.half)])
                        for half in variants.HALVES + ("all",)}
    return table


def lower_groups(table, half: str = "all") -> List[str]:
    """The groups of a `split_table` whose mean IoU ended below the start's on ``half``."""
    return sorted(g for g, by_half in table.items() if g != "all" and by_half[half]["cases"]
                  and by_half[half]["end"] < by_half[half]["start"] - 1e-9)


def _cell(scenario: str, f: Dict[str, float]) -> str:
    if not f["cases"]:
        return "-"
    if scenario in KEEP_SCENARIOS:
        return f"{f['kept']:.0%}"
    return f"{f['start']:.3f}>{f['end']:.3f}"


def print_halves(rows: Sequence[Row], out=sys.stdout) -> None:
    """Per group and half: truth starts kept, degraded starts' mean IoU before > after."""
    truth, initial = split_table(rows, "truth"), split_table(rows, "initial")
    heads = "".join(f"{'A ' + what:>14}{'B ' + what:>14}" for what in ("kept", "degraded"))
    print(f"{'group':<8}{heads}", file=out)
    for group in truth:
        cells = [_cell("truth", truth[group][h]) for h in variants.HALVES]
        cells += [_cell("initial", initial[group][h]) for h in variants.HALVES]
        print(f"{group:<8}" + "".join(f"{c:>14}" for c in cells), file=out)
    for half in variants.HALVES:
        f = truth["all"][half]
        lower = lower_groups(initial, half)
        print(f"half {half}: truth kept >= {KEPT_IOU} in {f['kept']:.1%} of {f['cases']} (target >= 96%); "
              f"degraded mean IoU lower on {len(lower)} groups" + (f" ({', '.join(lower)})" if lower else ""),
              file=out)


def print_stress(rows: Sequence[Row], out=sys.stdout) -> None:
    """One column per stress scenario: kept share (right masks) or mean IoU before > after."""
    scenarios = [s for s in STRESS_SCENARIOS if any(r.scenario == s for r in rows)]
    if not scenarios:
        return
    tables = {s: split_table(rows, s) for s in scenarios}
    print(f"{'group':<8}" + "".join(f"{s:>14}" for s in scenarios), file=out)
    groups = list(tables[scenarios[0]])
    for group in groups:
        cells = "".join(f"{_cell(s, tables[s][group]['all']):>14}" for s in scenarios)
        print(f"{group:<8}{cells}", file=out)
    for half in variants.HALVES:
        print(f"{'all ' + half:<8}" + "".join(f"{_cell(s, tables[s]['all'][half]):>14}" for s in scenarios),
              file=out)
    for s in scenarios:
        if s in KEEP_SCENARIOS:
            continue
        lower = {h: lower_groups(tables[s], h) for h in variants.HALVES + ("all",)}
        if any(lower.values()):
            where = "; ".join(f"{h}: {', '.join(g)}" for h, g in lower.items() if g)
            print(f"{s}: mean IoU lower on {where}", file=out)
    worse = [r for r in rows if r.scenario in scenarios and r.scenario not in KEEP_SCENARIOS]
    print(f"rough stress starts: {figures(worse)['worse']:.1%} of {len(worse)} ended lower", file=out)


def print_cases(rows: Sequence[Row], out=sys.stdout) -> None:
    print(f"{'case':<52}{'start':<13}{'IoU0':>7}{'IoU1':>7}{'gain':>8}{'steps':>6}  stop", file=out)
    for r in sorted(rows, key=lambda r: (r.case, r.scenario)):
        print(f"{r.case[:51]:<52}{r.scenario:<13}{r.start_iou:7.3f}{r.end_iou:7.3f}"
              f"{r.end_iou - r.start_iou:+8.3f}{r.steps:6d}  {r.stop} {r.half}", file=out)
    print(file=out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devset", default=DEFAULT_DEVSET, help="the 2D dev set folder (images/, masks/, initial/)")
    parser.add_argument("--steps", type=int, default=8, help="most clicks per episode (default 8)")
    parser.add_argument("--segmenter", default="graphcut", help="segmentation tool name (default graphcut)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--stress", action="store_true",
                        help="also run the stress scenarios (changed images, six other rough starts)")
    parser.add_argument("--half", choices=variants.HALVES, help="only the cases of this half")
    parser.add_argument("--cases", action="store_true", help="also print one row per case and scenario")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.devset):
        print(f"The dev set folder does not exist: {args.devset}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    only = [p[0] for p in pairs_of(args.devset) if p[4] == args.half] if args.half else ()
    scenarios = SCENARIOS + (STRESS_SCENARIOS if args.stress else ())
    rows = run(args.devset, args.steps, args.segmenter, args.workers, only, scenarios)
    policy = build_policy("heuristic")
    print(f"policy: {policy.description}\ntool: {args.segmenter}, {args.steps} steps at most, "
          f"{len({r.case for r in rows})} cases from {args.devset}\n")
    if args.cases:
        print_cases(rows)
    summarise(rows)
    print("\nper half (fixed split: per group, sorted by name, alternating A, B):")
    print_halves(rows)
    if args.stress:
        print("\nstress (starts the dev set does not hold; kept >= 0.95 for right masks, mean IoU "
              "start>end for rough ones):")
        print_stress(rows)
    print(f"\n{time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
