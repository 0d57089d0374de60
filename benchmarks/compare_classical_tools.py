"""Compare the classical click tools (`graphcut`, `growcut`, `watershed`) on the dev set's 2D cases.

The peers are seeded as a Slicer user paints seeds (`ibisagent.segmenters.slicer_seeds`):
`growcut` is Slicer's "Grow from seeds" (FastGrowCut), `watershed` a SimpleITK marker watershed.
Protocol: `ibisagent eval`'s (`ibisagent.evaluate.evaluate_folder`): the simulated annotator
clicks 20 times on every case with no early stop, each click applied, the IoU recorded after
each. Scenarios: from scratch, and "continue my mask" from the dev set's degraded starting masks
(``initial/``). Printed per scenario and per group of cases (the case-name prefix before the
first ``_``: ``ct``, ``derm``...) and overall: the start IoU, mIoU@1, mIoU@5, NoC@85, NoC@90 and
the median milliseconds per click (predict only, one core per worker), then where `graphcut`
meets the issue's targets (NoC@85 and mIoU@5 at least as good as each peer's).

Data: ``--devset`` (default ../shared/data/devset/2d beside the repository, with images/,
masks/ and initial/); the script says so and exits when it is absent. Takes several minutes
(growcut is about 250 ms per click).

    python benchmarks/compare_classical_tools.py [--tools graphcut growcut watershed]
        [--scenarios scratch continue] [--clicks 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import bench_common as common  # noqa: E402
from bench_common import format_table  # noqa: E402

from ibisagent.engine import EngineSpec  # noqa: E402
from ibisagent.evaluate import evaluate_folder  # noqa: E402

DEVSET_2D = os.path.join(common.ROOT, "..", "shared", "data", "devset", "2d")
TOOLS = ("graphcut", "growcut", "watershed")
SCENARIOS = ("scratch", "continue")
#: The printed columns: (header, summary key, scale, format).
FIGURES = (("start", "start_iou", 1, ".3f"), ("mIoU@1", "miou@1", 1, ".3f"), ("mIoU@5", "miou@5", 1, ".3f"),
           ("NoC@85", "noc@85", 1, ".2f"), ("NoC@90", "noc@90", 1, ".2f"),
           ("ms/click", "seconds_per_click", 1000, ".0f"))


def evaluate(devset: str, tool: str, scenario: str, clicks: int, workers: int) -> Dict:
    """`evaluate_folder`'s summary (overall figures and ``groups``) of ``tool`` in ``scenario``."""
    initial = os.path.join(devset, "initial") if scenario == "continue" else None
    with tempfile.TemporaryDirectory() as out:
        return evaluate_folder(os.path.join(devset, "images"), os.path.join(devset, "masks"), out,
                               EngineSpec(tool, policy="simulated"), clicks=clicks, initial_dir=initial, progress=False,
                               log=lambda line: print(f"  {tool} {scenario}: {line}"), workers=workers)


def comparison_rows(summaries: Dict[str, Dict]) -> List[Dict]:
    """One row per group (then ``all``) and tool, from {tool: summary}."""
    first = next(iter(summaries.values()))
    rows = []
    for group in [*first["groups"], "all"]:
        for tool, summary in summaries.items():
            figures = summary if group == "all" else summary["groups"][group]
            row = {"group": group, "tool": tool, "cases": figures["cases"]}
            for header, key, scale, spec in FIGURES:
                if key in figures:
                    row[header] = format(float(figures[key]) * scale, spec)
            rows.append(row)
    return rows


def target_misses(summaries: Dict[str, Dict], tool: str = "graphcut") -> Optional[List[str]]:
    """The groups (and ``all``) where ``tool``'s NoC@85 is above, or its mIoU@5 below, the best
    other tool's, each with both figures; None when ``tool`` was not compared with another."""
    peers = [name for name in summaries if name != tool]
    if tool not in summaries or not peers:
        return None
    misses = []
    for group in [*summaries[tool]["groups"], "all"]:
        figures = {name: summary if group == "all" else summary["groups"][group] for name, summary in summaries.items()}
        noc = min(peers, key=lambda name: figures[name]["noc@85"])
        miou = max(peers, key=lambda name: figures[name]["miou@5"])
        wrong = []
        if figures[tool]["noc@85"] > figures[noc]["noc@85"]:
            wrong.append(f"NoC@85 {figures[tool]['noc@85']:.2f} > {figures[noc]['noc@85']:.2f} ({noc})")
        if figures[tool]["miou@5"] < figures[miou]["miou@5"]:
            wrong.append(f"mIoU@5 {figures[tool]['miou@5']:.3f} < {figures[miou]['miou@5']:.3f} ({miou})")
        if wrong:
            misses.append(f"{group}: {', '.join(wrong)}")
    return misses


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devset", default=DEVSET_2D, help="the dev set's 2D folder (images/, masks/, initial/)")
    parser.add_argument("--tools", nargs="+", default=list(TOOLS))
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one core each")
    args = parser.parse_args(argv)

    needed = ["images", "masks"] + (["initial"] if "continue" in args.scenarios else [])
    missing = [f"{name}/" for name in needed if not os.path.isdir(os.path.join(args.devset, name))]
    if missing:
        print(f"Skipped: the dev set is not there ({', '.join(missing)} missing in {os.path.abspath(args.devset)}); "
              f"give its 2D folder with --devset.")
        return 0
    started = time.perf_counter()
    for scenario in args.scenarios:
        summaries = {}
        for tool in args.tools:
            began = time.perf_counter()
            summaries[tool] = evaluate(args.devset, tool, scenario, args.clicks, args.workers)
            print(f"  {tool} {scenario}: {time.perf_counter() - began:.0f} s")
        columns = ["group", "tool", "cases"] + [header for header, key, _, _ in FIGURES
                                                if key in next(iter(summaries.values()))]
        title = f"\n{scenario}: {args.clicks} clicks of the simulated annotator, {args.workers} workers"
        print(format_table(comparison_rows(summaries), columns, title))
        misses = target_misses(summaries)
        if misses is not None:
            print("graphcut meets the targets (NoC@85 and mIoU@5 at least as good as every peer's) "
                  + ("in every group and overall" if not misses else "except in " + "; ".join(misses)))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
