"""The standard interactive-segmentation evaluation (the NoC protocol of RITM/SimpleClick/SAM).

For each image/mask pair, the simulated annotator clicks ``clicks`` times with no early stop;
the IoU after every click is recorded. It ends sooner only when it has nothing left to click
(the mask equals the truth), and then that IoU, 1.0, counts for the remaining clicks. Another
policy (heuristic, qwen) may stop by its own rules (terminate, repeated action); its last IoU is
carried forward and its stop reason recorded. Reported: mean IoU after 1/3/5/10 clicks, NoC@85
and NoC@90 (clicks needed to reach that IoU; the click budget when never reached), failures@90
(cases that never reach 0.9), final Dice, and the median seconds per click of the segmentation
tool; the same per group of cases (`case_group`: ``ct_...``, ``derm_...``).

Cases are independent, so `evaluate_folder` can spread them over worker processes (one core
each, see `ibisagent.parallel`); every worker builds its own tool and policy from an
`EngineSpec`, and the results are the same, in the same order, for any number of workers. A case
that fails (unreadable or damaged file, too small to segment, a tool error) is listed in
``skipped.txt`` with its reason and the run goes on. The output folder is a
`safe_io.OwnedFolder`, checked before the work, its four files written together at the end.
"""

from __future__ import annotations

import csv
import os
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import image_io, parallel
from .engine import EngineSpec, MakePolicy
from .episode import Episode
from .imaging import Window, check_mask, to_rgb
from .metrics import clicks_to_reach, dice, iou
from .policies.simulated import SimulatedPolicy
from .safe_io import OwnedFolder
from .segmenters import Segmenter

SUMMARY_KEYS = ("cases", "miou@1", "miou@3", "miou@5", "miou@10", "noc@85", "noc@90", "failures@90",
                "dice_final", "seconds_per_click")
MASK_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".png")
#: Images may also be photographs (dermoscopy, endoscopy) stored as JPEG; masks must be lossless.
IMAGE_SUFFIXES = MASK_SUFFIXES + (".jpg", ".jpeg")
#: The files `evaluate_folder` writes into its output folder.
OUTPUTS = ("summary.json", "per_case.csv", "iou_vs_clicks.png", "skipped.txt")
#: One pair from `find_pairs`: (case name, image path, mask path, starting mask path or None).
Pair = Tuple[str, str, str, Optional[str]]


def case_group(name: str) -> str:
    """The group a case is reported in: its name up to the first ``_`` (``ct_lits_10001`` ->
    ``ct``, ``derm_isic_12`` -> ``derm``); a name without ``_`` is a group of its own."""
    return name.split("_", 1)[0] or name


@dataclass
class CaseResult:
    name: str
    start_iou: float
    ious: List[float]
    dice_final: float
    seconds: List[float] = field(default_factory=list)
    stop_reason: Optional[str] = None


def run_case(
    name: str,
    image_rgb: np.ndarray,
    truth: np.ndarray,
    segmenter: Segmenter,
    make_policy: Optional[MakePolicy] = None,
    clicks: int = 20,
    initial: Optional[np.ndarray] = None,
    request: str = "",
    recorder=None,
) -> CaseResult:
    """Click ``clicks`` times on one image and record the IoU after each click. A policy that
    stops early (the annotator with nothing left to click, or another policy's own stop) keeps
    its last IoU for the remaining clicks. With a `ibisagent.training.recorder.TrainingRecorder`
    the episode is also written as a trajectory record (the ground truth as its reference)."""
    truth = check_mask(truth, image_rgb.shape[:2], "ground-truth mask")
    policy = (make_policy or SimulatedPolicy)(truth)
    stop_rules = {}
    if isinstance(policy, SimulatedPolicy):
        # The protocol clicks the whole budget: clicking again an error the tool did not fix is
        # a click like any other, so the episode's repeated-action stop is out of reach.
        stop_rules["repeat_limit"] = clicks + 1
    episode = Episode(image_rgb, segmenter, policy, request=request, initial_mask=initial, max_steps=clicks,
                      **stop_rules)
    recording = recorder.record(episode, source="eval", truth=truth) if recorder is not None else None
    ious: List[float] = []
    seconds: List[float] = []

    def record(step) -> None:
        ious.append(iou(episode.mask, truth))
        seconds.append(step.seconds)

    result = episode.run(on_step=record)
    if recording is not None:
        recording.finish()
    start = iou(episode.initial_mask, truth)
    last = ious[-1] if ious else start
    ious.extend([last] * (clicks - len(ious)))
    return CaseResult(name, start, ious, dice(result.mask, truth), seconds, result.stop_reason)


def summarise(results: Sequence[CaseResult], clicks: int) -> Dict[str, float]:
    """The summary with exactly `SUMMARY_KEYS`."""
    if not results:
        raise ValueError("No case could be evaluated; see the list of skipped pairs.")
    curves = np.array([r.ious for r in results])

    def miou(count: int) -> float:
        return float(curves[:, min(count, clicks) - 1].mean())

    nocs85 = [clicks_to_reach(r.ious, 0.85, clicks) for r in results]
    nocs90 = [clicks_to_reach(r.ious, 0.90, clicks) for r in results]
    all_seconds = [s for r in results for s in r.seconds]
    return {
        "cases": len(results),
        "miou@1": round(miou(1), 4),
        "miou@3": round(miou(3), 4),
        "miou@5": round(miou(5), 4),
        "miou@10": round(miou(10), 4),
        "noc@85": round(float(np.mean(nocs85)), 3),
        "noc@90": round(float(np.mean(nocs90)), 3),
        "failures@90": int(sum(1 for r in results if max(r.ious) < 0.90)),
        "dice_final": round(float(np.mean([r.dice_final for r in results])), 4),
        "seconds_per_click": round(statistics.median(all_seconds), 5) if all_seconds else 0.0,
    }


def summarise_groups(results: Sequence[CaseResult], clicks: int,
                     with_start: bool = False) -> Dict[str, Dict[str, float]]:
    """`summarise` for each `case_group`, by group name; with ``with_start`` each also has
    ``start_iou``, the mean IoU of its starting masks."""
    groups: Dict[str, List[CaseResult]] = {}
    for result in results:
        groups.setdefault(case_group(result.name), []).append(result)
    table = {}
    for name in sorted(groups):
        table[name] = summarise(groups[name], clicks)
        if with_start:
            table[name]["start_iou"] = _mean_start(groups[name])
    return table


def _mean_start(results: Sequence[CaseResult]) -> float:
    return round(float(np.mean([r.start_iou for r in results])), 4)


#: The columns of the printed table: (header, summary key, format).
TABLE_COLUMNS = (("cases", "cases", "d"), ("start", "start_iou", ".3f"), ("mIoU@1", "miou@1", ".3f"),
                 ("mIoU@3", "miou@3", ".3f"), ("mIoU@5", "miou@5", ".3f"), ("mIoU@10", "miou@10", ".3f"),
                 ("NoC@85", "noc@85", ".1f"), ("NoC@90", "noc@90", ".1f"), ("fail@90", "failures@90", "d"),
                 ("Dice", "dice_final", ".3f"), ("s/click", "seconds_per_click", ".3f"))


def format_table(summary: Dict[str, Any]) -> str:
    """The summary of `evaluate_folder` as a text table: one row per group, then ``all``. The
    ``start`` column is there only when the summary has starting IoUs."""
    columns = [c for c in TABLE_COLUMNS if c[1] in summary]
    rows = [(name, values) for name, values in summary.get("groups", {}).items()] + [("all", summary)]
    width = max(len("group"), *(len(name) for name, _ in rows))
    cells = [[format(values[key], spec) for _, key, spec in columns] for _, values in rows]
    sizes = [max(len(header), *(len(row[i]) for row in cells)) for i, (header, _, _) in enumerate(columns)]
    lines = ["  ".join([f"{'group':<{width}}"] + [f"{h:>{n}}" for (h, _, _), n in zip(columns, sizes)])]
    for index, ((name, _), row) in enumerate(zip(rows, cells)):
        if index == len(rows) - 1:
            lines.append("-" * len(lines[0]))
        lines.append("  ".join([f"{name:<{width}}"] + [f"{c:>{n}}" for c, n in zip(row, sizes)]))
    return "\n".join(lines)


def find_pairs(images_dir: str, masks_dir: str, initial_dir: Optional[str] = None) -> Tuple[list, List[str]]:
    """Pair files by name (without suffix). Returns ([(name, image, mask, initial|None)], problems)."""
    for folder, what in ((images_dir, "images"), (masks_dir, "masks"), (initial_dir, "initial masks")):
        if folder is not None and not os.path.isdir(folder):
            raise FileNotFoundError(f"The {what} folder does not exist: {folder}")
    problems: List[str] = []
    images = _by_name(images_dir, IMAGE_SUFFIXES, problems)
    masks = _by_name(masks_dir, MASK_SUFFIXES, problems)
    initials = _by_name(initial_dir, MASK_SUFFIXES, problems) if initial_dir else {}
    pairs = []
    for name, image in sorted(images.items()):
        if name not in masks:
            problems.append(f"{os.path.basename(image)}: no mask named {name}.* in {masks_dir}")
            continue
        if initial_dir and name not in initials:
            problems.append(f"{os.path.basename(image)}: no starting mask named {name}.* in {initial_dir}")
            continue
        pairs.append((name, image, masks[name], initials.get(name)))
    for name, mask in sorted(masks.items()):
        if name not in images:
            problems.append(f"{os.path.basename(mask)}: no image named {name}.* in {images_dir}")
    return pairs, problems


def _by_name(folder: str, suffixes: Sequence[str], problems: List[str]) -> Dict[str, str]:
    """Files of ``folder`` by case name. Files of other types, and a second file with the same
    case name, are added to ``problems`` (hidden files and sub-folders are passed over)."""
    found: Dict[str, str] = {}
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if entry.startswith(".") or not os.path.isfile(path):
            continue
        if image_io.suffix_of(entry) not in suffixes:
            problems.append(f"{entry}: not a file type eval reads ({', '.join(suffixes)}) in {folder}")
            continue
        name = image_io.case_name(entry)
        if name in found:
            problems.append(f"{entry}: another file in {folder} is also named {name}.*; "
                            f"using {os.path.basename(found[name])}")
            continue
        found[name] = path
    return found


def evaluate_pair(
    pair: Pair,
    segmenter: Segmenter,
    make_policy: Optional[MakePolicy],
    clicks: int,
    request: str = "",
    window: Window = None,
    recorder=None,
) -> Union[CaseResult, str]:
    """Read one pair from `find_pairs` and `run_case` it; a pair that cannot be used gives its
    line for ``skipped.txt`` instead."""
    name, image_path, mask_path, initial_path = pair
    try:
        pixels, _ = image_io.read_2d(image_path)
        image_rgb = to_rgb(pixels, window)
        truth = image_io.read_mask_2d(mask_path, image_rgb.shape[:2])
        if not truth.any():
            raise ValueError("the ground-truth mask is empty")
        initial = image_io.read_mask_2d(initial_path, image_rgb.shape[:2]) if initial_path else None
        return run_case(name, image_rgb, truth, segmenter, make_policy, clicks, initial, request, recorder)
    except Exception as error:  # noqa: BLE001 - one bad case is listed, the run goes on
        return f"{os.path.basename(image_path)}: {case_failure(error)}"


def case_failure(error: Exception) -> str:
    """The reason a case is skipped: the message of an error about the input, or the error's
    type and message for anything else (a tool failure, running out of memory)."""
    if isinstance(error, (ValueError, OSError)) and str(error):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def evaluate_folder(
    images_dir: str,
    masks_dir: str,
    out_dir: str,
    engine: EngineSpec,
    clicks: int = 20,
    initial_dir: Optional[str] = None,
    request: str = "",
    window: Window = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    recorder=None,
    workers: int = 1,
    overwrite: bool = False,
) -> Dict[str, Any]:
    """Evaluate every pair, write `OUTPUTS` (``per_case.csv``, ``iou_vs_clicks.png``,
    ``summary.json`` and ``skipped.txt``) to ``out_dir``, and return the summary: `SUMMARY_KEYS`,
    ``start_iou`` (with ``initial_dir``) and ``groups`` (`summarise_groups`). An ``out_dir``
    holding an earlier evaluation is refused unless ``overwrite``; files of the user's there are
    never replaced (`safe_io.OwnedFolder`).

    ``workers`` > 1 runs the cases in that many processes, each building the tool and policy of
    ``engine`` once; 1 runs them here, one after the other. A ``recorder`` (which writes from
    this process) needs ``workers`` = 1."""
    from tqdm import tqdm

    if clicks < 1:
        raise ValueError(f"--clicks must be at least 1; got {clicks}.")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1; got {workers}.")
    if recorder is not None and workers > 1:
        raise ValueError("--record writes from one process; use it with --workers 1.")
    folder = OwnedFolder(out_dir, overwrite, "--out", OUTPUTS, [images_dir, masks_dir, initial_dir], kind="eval",
                         what="the results of an evaluation")
    pairs, problems = find_pairs(images_dir, masks_dir, initial_dir)
    workers = min(workers, max(1, len(pairs)))
    log(f"{len(pairs)} cases, {clicks} clicks each, {engine.segmenter} with the {engine.policy} policy, "
        f"{workers} worker process{'es' if workers > 1 else ''}.")
    with tqdm(total=len(pairs), desc="cases", unit="case", disable=not progress) as bar:
        if workers == 1:
            segmenter, make_policy = engine.build()
            outcomes = []
            for pair in pairs:
                outcome = evaluate_pair(pair, segmenter, make_policy, clicks, request, window, recorder)
                outcomes.append(outcome)
                bar.update()
        else:
            outcomes = parallel.map_in_workers(_pair_in_worker, pairs, workers, _start_worker,
                                               (engine, clicks, request, window), on_result=bar.update)
    results = [outcome for outcome in outcomes if isinstance(outcome, CaseResult)]
    problems += [outcome for outcome in outcomes if isinstance(outcome, str)]
    folder.add_text("skipped.txt", "".join(line + "\n" for line in problems))
    for line in problems:
        log(f"skipped {line}")
    if not results:
        folder.commit()
        raise ValueError(f"No case could be evaluated; see {os.path.join(out_dir, 'skipped.txt')}.")
    summary: Dict[str, Any] = dict(summarise(results, clicks))
    if initial_dir:
        summary["start_iou"] = _mean_start(results)
    summary["groups"] = summarise_groups(results, clicks, with_start=bool(initial_dir))
    with folder.add("per_case.csv") as temporary:
        _write_cases(temporary, results, clicks)
    folder.add_json("summary.json", summary)
    from .render import iou_curve_plot

    curve = np.mean([r.ious for r in results], axis=0)
    with folder.add("iou_vs_clicks.png") as temporary:
        iou_curve_plot(temporary, {engine.segmenter: curve}, baseline=summary.get("start_iou"))
    folder.commit()
    return summary


#: This worker process's (segmenter, make_policy, clicks, request, window), set by `_start_worker`.
_worker_engine: Optional[tuple] = None


def _start_worker(engine: EngineSpec, clicks: int, request: str, window: Window) -> None:
    global _worker_engine
    segmenter, make_policy = engine.build()
    _worker_engine = (segmenter, make_policy, clicks, request, window)


def _pair_in_worker(pair: Pair) -> Union[CaseResult, str]:
    segmenter, make_policy, clicks, request, window = _worker_engine
    return evaluate_pair(pair, segmenter, make_policy, clicks, request, window)


def _write_cases(path: str, results: Sequence[CaseResult], clicks: int) -> None:
    """``path``: the temporary file the output folder staged for ``per_case.csv``."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "start_iou", *[f"iou@{k}" for k in range(1, clicks + 1)], "noc@85", "noc@90",
                         "dice_final", "seconds_per_click", "stop_reason", "group"])
        for r in results:
            median = statistics.median(r.seconds) if r.seconds else 0.0
            writer.writerow([r.name, f"{r.start_iou:.4f}", *[f"{v:.4f}" for v in r.ious],
                             clicks_to_reach(r.ious, 0.85, clicks), clicks_to_reach(r.ious, 0.90, clicks),
                             f"{r.dice_final:.4f}", f"{median:.5f}", r.stop_reason or "", case_group(r.name)])
