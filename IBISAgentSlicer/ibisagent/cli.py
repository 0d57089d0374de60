"""The `ibisagent` command: continue, eval, propagate, eval3d, serve, demo, and the training commands
(`ibisagent.training.commands`: trajectories, export-training, train-sft, train-grpo, merge-lora).

Each subcommand parses its options and calls library functions; errors a user can fix (missing
files, bad options, damaged inputs, an image too large for the memory budget) are printed as one
line and exit with status 2, never as a traceback. Every file is written through
`ibisagent.safe_io`: the outputs of a run are checked before the work (never an input, never two
outputs the same file, nothing replaced without ``--overwrite``, folders writable) and written
together at its end.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from . import __version__
from .engine import add_engine_arguments, parse_window, spec_from_args, volume_tool_from_args
from .memory import BUDGET_ENV as IBISAGENT_MEMORY_ENV
from .segmenters import DEFAULT_VOLUME_SEGMENTER, VOLUME_SEGMENTERS
from .training.commands import COMMANDS as TRAINING_COMMANDS
from .training.commands import add_record_argument, add_training_commands, make_recorder, run_training_command


#: Lossless mask formats `continue` can write (JPEG would blur a binary mask).
MASK_OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".png")
#: Lossless volume formats `propagate` can write.
VOLUME_OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def _add_overwrite_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what} (refused by default)")


def _add_label_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", type=int, metavar="N",
                        help="the label of --mask to work on (default: its only non-zero label); every other "
                        "label is written back unchanged")


def _add_image_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", help="grey-level window: a CT preset (abdomen, soft-tissue, liver, lung, bone, "
                        "brain) or LOW,HIGH; default: the slice's 1st-99th percentile")


def _add_volume_tool_argument(parser, scope: str = "") -> None:
    parser.add_argument("--segmenter3d", default=DEFAULT_VOLUME_SEGMENTER, choices=list(VOLUME_SEGMENTERS),
                        help=f"{scope}the 3D click tool (default: {DEFAULT_VOLUME_SEGMENTER}, classical, CPU); "
                        "--tool-checkpoint, --tool-config, --tool-option and --device configure it (slice2d and "
                        "propagation3d work each clicked slice with the --segmenter 2D tool)")


def _continue_parser(sub) -> None:
    parser = sub.add_parser("continue", help="continue a mask on an image, accepting every proposal",
                            description="Headless 'continue my mask': the agent proposes clicks, every proposal "
                            "is accepted, and the final mask is written.")
    parser.add_argument("--image", required=True, help="2D image (PNG, JPEG, NIfTI, NRRD) or a 3D volume")
    parser.add_argument("--mask", help="your starting mask on the same grid (default: start from nothing)")
    parser.add_argument("--request", required=True, help='what to segment, e.g. "Segment the liver."')
    parser.add_argument("--out", required=True, help="final mask file (.nii.gz, .nrrd or .png)")
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--plane", choices=["axial", "coronal", "sagittal"],
                        help="for volumes: work one slice of this plane (without it the agent works the whole volume "
                        "in 3D, looking at slices of every plane)")
    parser.add_argument("--index", type=int, help="with --plane: the slice index (default: the middle)")
    _add_volume_tool_argument(parser, "whole volumes: ")
    parser.add_argument("--looks", type=int, default=3, metavar="N",
                        help="whole volumes: slices the agent reviews per proposal before it calls the volume done "
                        "(default 3; more finds more to fix, at more risk of a wrong click)")
    parser.add_argument("--confirm", action=argparse.BooleanOptionalAction, default=True,
                        help="whole volumes: a click whose change reaches off its slice is kept only when the agent "
                        "also proposes it on the slice holding most of that change (default: on)")
    parser.add_argument("--log", help="JSON step log (default: next to --out, ending .steps.json)")
    parser.add_argument("--pictures", help="folder for a picture of every step")
    parser.add_argument("--truth", help="reference mask, to print the IoU of every step (whole volumes: the Dice; "
                        "its voxels of --label when given)")
    _add_label_argument(parser)
    add_record_argument(parser)
    _add_overwrite_argument(parser, "existing output files (--out, --log, step pictures)")
    _add_image_arguments(parser)
    add_engine_arguments(parser)


def _eval_parser(sub) -> None:
    parser = sub.add_parser("eval", help="NoC evaluation with the simulated annotator",
                            description="Evaluate a segmentation tool click by click on image/mask pairs "
                            "matched by file name.")
    parser.add_argument("--images", required=True, help="folder of 2D images")
    parser.add_argument("--masks", required=True, help="folder of ground-truth masks with the same names")
    parser.add_argument("--initial", help="folder of starting masks (continue-my-mask evaluation)")
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--request", default="", help="request text for non-simulated policies")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="cases evaluated at once, one process and one core each (default: every usable "
                        "core for CPU-only tools and policies, 1 for torch models and with --record)")
    add_record_argument(parser)
    _add_overwrite_argument(parser, "the results of an earlier evaluation in --out")
    _add_image_arguments(parser)
    add_engine_arguments(parser)
    parser.set_defaults(policy="simulated")


def _add_propagation_arguments(parser: argparse.ArgumentParser) -> None:
    from .slice_stack import PROPAGATIONS

    parser.add_argument("--plane", choices=["axial", "coronal", "sagittal"], default="axial",
                        help="the plane whose slices the mask is carried through (default: axial)")
    parser.add_argument("--propagation", choices=list(PROPAGATIONS), default="auto",
                        help="how the next slice's start is made: the tool's own (sam2's video memory), the "
                        "watershed carrier, or the 2D tool's prior (default auto: own if the tool has one, "
                        "else watershed)")
    parser.add_argument("--min-fraction", type=float, default=0.2,
                        help="the target ends where a slice keeps fewer than this fraction of its neighbour's "
                        "pixels (default 0.2)")


def _propagate_parser(sub) -> None:
    parser = sub.add_parser("propagate", help="propagate a mask through the slices of a volume, the agent "
                            "checking every slice", description="Carry the mask of slice K through the volume, "
                            "up, down or both; on every slice the agent refines the carried mask (every "
                            "proposal accepted) within a step limit. Writes the 3D mask and a JSON log per slice.")
    parser.add_argument("--image", required=True, help="the volume (NIfTI, NRRD, MHA)")
    parser.add_argument("--mask", required=True, help="mask volume on the same grid; its slice K is the start")
    parser.add_argument("--index", type=int, action="append", required=True, metavar="K",
                        help="start slice along --plane (repeat for several worked slices)")
    parser.add_argument("--range", metavar="A:B", help="only slices A..B (inclusive) may change (default: all)")
    parser.add_argument("--direction", choices=["up", "down", "both"], default="both",
                        help="up: increasing slice index (axial: superior, coronal: posterior, sagittal: patient "
                        "left); default both")
    parser.add_argument("--max-slices", type=int, help="at most this many slices each way (default: no limit)")
    parser.add_argument("--max-steps-per-slice", type=int, default=3,
                        help="agent steps on each propagated slice (0: propagation alone; default 3)")
    parser.add_argument("--out", required=True, help="the 3D mask to write (.nii.gz, .nii, .nrrd, .mha)")
    parser.add_argument("--log", help="JSON log per slice (default: next to --out, ending .propagation.json)")
    parser.add_argument("--request", default="", help='what to segment, e.g. "Segment the tumour."')
    parser.add_argument("--truth", help="reference mask volume (needed by --policy simulated)")
    _add_label_argument(parser)
    _add_propagation_arguments(parser)
    _add_overwrite_argument(parser, "existing output files (--out, --log)")
    _add_image_arguments(parser)
    add_engine_arguments(parser)


def _eval3d_parser(sub) -> None:
    parser = sub.add_parser("eval3d", help="3D evaluation: propagation from the largest slice (default), or the "
                            "CVPR 2025 protocol (--protocol cvpr25)", description="For each volume and mask matched by "
                            "name. propagation (default): start from the true mask on the slice with the largest "
                            "cross-section, propagate both ways, and let the annotator click up to N times on every "
                            "other slice. cvpr25: start from the challenge's box or your rough 3D mask, then N clicks "
                            "at the centre of the largest 3D error; DSC and NSD after each click, their AUCs.")
    parser.add_argument("--protocol", choices=["propagation", "cvpr25"], default="propagation",
                        help="which evaluation (default: propagation)")
    cvpr = parser.add_argument_group("cvpr25 protocol")
    cvpr.add_argument("--start", choices=["box", "mask"], default="box",
                      help="box: the challenge's box (slice range + 2D box on the median slice); mask: the "
                      "starting masks of --initial (default: box)")
    cvpr.add_argument("--initial", metavar="DIR", help="folder of starting masks named like the images (--start mask)")
    cvpr.add_argument("--clicks", type=int, default=5, metavar="N", help="clicks per volume (default: 5)")
    cvpr.add_argument("--save-masks", metavar="DIR", help="write each case's final mask here, named like the case")
    _add_volume_tool_argument(cvpr)
    parser.add_argument("--images", required=True, help="folder of volumes (NIfTI, NRRD)")
    parser.add_argument("--masks", required=True, help="folder of ground-truth mask volumes with the same names")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--clicks-per-slice", type=int, default=0, metavar="N",
                        help="clicks the annotator may add on each propagated slice (0: propagation alone)")
    parser.add_argument("--request", default="", help="request text for non-simulated policies")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_propagation_arguments(parser)
    _add_overwrite_argument(parser, "the results of an earlier evaluation in --out")
    _add_image_arguments(parser)
    add_engine_arguments(parser)
    parser.set_defaults(policy="simulated")


def _demo_parser(sub) -> None:
    parser = sub.add_parser("demo", help="continue a rough brain mask on a real MRI slice (bundled data)")
    parser.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    parser.add_argument("--tissue", default="brain", choices=["brain", "grey", "white"])
    parser.add_argument("--plane", default="axial", choices=["axial", "coronal", "sagittal"])
    parser.add_argument("--rough", default="mixed", choices=["eroded", "cut", "leaky", "mixed"],
                        help="how the start is rough (mixed: a band missing and a blob spilling out)")
    parser.add_argument("--max-steps", type=int, default=8)
    _add_overwrite_argument(parser, "the files of an earlier demo in --out")
    add_engine_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ibisagent", description="IBISAgent: segmentation click by click.")
    parser.add_argument("--version", action="version", version=f"ibisagent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _continue_parser(sub)
    _eval_parser(sub)
    _propagate_parser(sub)
    _eval3d_parser(sub)
    _demo_parser(sub)
    serve = sub.add_parser("serve", help="run the local agent server for 3D Slicer and scripts")
    from .server import run as server_run

    server_run.add_arguments(serve)
    add_training_commands(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "continue":
            return _run_continue(args)
        if args.command == "eval":
            return _run_eval(args)
        if args.command == "propagate":
            return _run_propagate(args)
        if args.command == "eval3d":
            return _run_eval3d(args)
        if args.command in TRAINING_COMMANDS:
            return run_training_command(args)
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args)
        from .server import run as server_run

        return server_run.run(args) or 0
    except (ValueError, ImportError) as error:
        print(f"ibisagent {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # missing files, unwritable or occupied output paths
        print(f"ibisagent {args.command}: error: {_os_error_text(error)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"ibisagent {args.command}: error: this machine ran out of memory for the work; crop or downsample "
              f"the image (the budget is set with {IBISAGENT_MEMORY_ENV}).", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


def _os_error_text(error: OSError) -> str:
    if error.filename and error.strerror:
        return f"{error.strerror}: {error.filename}"
    return str(error)


def _run_continue(args) -> int:
    from . import headless, image_io
    from .safe_io import OutputSet

    if args.plane is None and _readable_volume(args.image):
        return _run_continue_volume(args)
    if image_io.suffix_of(args.out) not in MASK_OUTPUT_SUFFIXES:
        raise ValueError(f"--out {args.out}: write the mask as one of {', '.join(MASK_OUTPUT_SUFFIXES)}.")
    log_path = args.log or _sibling(args.out, ".steps.json")
    inputs = [args.image, args.mask, args.truth]
    pictures = headless.picture_folder(args.pictures, args.max_steps, args.overwrite, inputs) if args.pictures else None
    with OutputSet({"--out": args.out, "--log": log_path}, inputs, args.overwrite, [pictures]) as outputs:
        window = parse_window(args.window)
        image_rgb, where, image = headless.load_slice(args.image, args.plane, args.index, window)
        if where is not None and image_io.suffix_of(args.out) == ".png":
            raise ValueError(f"{args.image} is a volume, so --out must be a volume file (.nii.gz, .nrrd), not PNG.")
        shape = image_rgb.shape[:2]
        start = headless.read_start_mask(args.mask, where, image, shape, args.label) if args.mask else None
        initial = None if start is None else (where.take(start.binary) != 0 if where is not None else start.binary)
        truth = headless.read_truth(args.truth, where, image, shape, args.label) if args.truth else None
        if args.policy == "simulated" and truth is None:
            raise ValueError("The simulated policy needs the reference mask: give --truth.")
        segmenter, make_policy = spec_from_args(args).build()
        policy = make_policy(truth)
        report = headless.run_continue(image_rgb, segmenter, policy, args.request, initial, args.max_steps, truth,
                                       pictures, recorder=make_recorder(args.record))
        details = {}
        if where is None:
            final = report.result.mask
        else:
            import numpy as np
            import SimpleITK as sitk

            base = start.binary if start is not None else np.zeros(sitk.GetArrayViewFromImage(image).shape[:3], bool)
            final = where.put(base, report.result.mask)
        if start is not None:
            details = {"label": start.label.item(), "left_to_other_labels": start.blocked(final)}
        with outputs.stage("--out") as temporary:
            image_io.save_image(image_io.result_image(final, image, image_io.suffix_of(args.out), start), temporary)
        outputs.write_json("--log", headless.log_document(report, policy, segmenter, args.request, truth is not None,
                                                          **details))
        outputs.commit()
    print(headless.final_iou_line(report, truth))
    print(f"Wrote {args.out} and {log_path}" + (f"; pictures in {args.pictures}" if args.pictures else ""))
    return 0


def _readable_volume(path: str) -> bool:
    """Whether ``path`` is a volume; a file that cannot be read goes the 2D way, which says why."""
    from .image_io import is_volume_file

    try:
        return is_volume_file(path)
    except (ValueError, OSError):
        return False


def _run_continue_volume(args) -> int:
    """`continue` on a whole volume (no --plane): the agent works it in 3D (`continue_volume`)."""
    from . import continue_volume
    from .image_io import result_image, save_image, suffix_of
    from .policies import build_policy
    from .safe_io import OutputSet

    if args.index is not None:
        raise ValueError("--index chooses a slice of --plane; give --plane too, or leave both out to work the whole "
                         "volume.")
    for option, given in (("--pictures", args.pictures), ("--record", args.record)):
        if given:
            raise ValueError(f"{option} works on one slice for now; add --plane (and --index), or leave {option} out.")
    if args.policy == "simulated":
        raise ValueError("The simulated annotator clicks one slice; use `ibisagent eval3d` to score 3D clicks.")
    if args.looks < 1:
        raise ValueError(f"--looks must be at least 1; got {args.looks}.")
    if suffix_of(args.out) not in VOLUME_OUTPUT_SUFFIXES:
        raise ValueError(f"--out {args.out}: a volume's mask is written as one of {', '.join(VOLUME_OUTPUT_SUFFIXES)}.")
    log_path = args.log or _sibling(args.out, ".steps.json")
    outputs = OutputSet({"--out": args.out, "--log": log_path}, inputs=[args.image, args.mask, args.truth],
                        overwrite=args.overwrite)
    inputs = continue_volume.read_inputs(args.image, args.mask, args.label)
    truth = continue_volume.read_truth(args.truth, inputs, args.label) if args.truth else None
    spec = spec_from_args(args)
    tool = volume_tool_from_args(args)
    policy = build_policy(spec.policy, **spec.policy_options)
    report = continue_volume.run_continue_volume(inputs, tool, policy, args.request, args.max_steps,
                                                 parse_window(args.window), truth, looks=args.looks, confirm=args.confirm)
    details = {"image": args.image, "mask": args.mask, "request": args.request, "max_steps": args.max_steps,
               "looks": args.looks, "confirm": args.confirm}
    with outputs:  # a failure leaves nothing behind
        with outputs.stage("--out") as temporary:
            save_image(result_image(report.result.mask, inputs.image, suffix_of(args.out), inputs.labels), temporary)
        outputs.write_json("--log", continue_volume.log_document(report, inputs, policy, tool, details))
        outputs.commit()
    result = report.result
    if truth is not None:
        print(f"Dice against the reference: start {report.start_dice:.4f} -> final "
              f"{report.dices[-1] if report.dices else report.start_dice:.4f} after {len(result.steps)} step(s).")
    else:
        print(f"Final mask: {int(result.mask.sum())} voxels after {len(result.steps)} step(s).")
    print(f"Wrote {args.out} and {log_path}")
    return 0


def _sibling(path: str, suffix: str) -> str:
    from .image_io import case_name

    return os.path.join(os.path.dirname(os.path.abspath(path)), case_name(path) + suffix)


def _eval_workers(args) -> int:
    """``--workers``, or its default: every usable core when the tool and the policy run on the
    CPU alone (each worker holds its own copy), else one, as for ``--record`` (it writes from
    this process)."""
    from .parallel import usable_cores

    if args.workers is not None:
        return args.workers
    if args.record or not spec_from_args(args).cpu_only:
        return 1
    return usable_cores()


def _run_eval(args) -> int:
    from .evaluate import evaluate_folder, format_table

    summary = evaluate_folder(args.images, args.masks, args.out, spec_from_args(args), args.clicks, args.initial,
                              args.request, parse_window(args.window), progress=not args.no_progress,
                              recorder=make_recorder(args.record), workers=_eval_workers(args),
                              overwrite=args.overwrite)
    print(format_table(summary))
    print(f"Wrote per_case.csv, iou_vs_clicks.png, summary.json and skipped.txt to {args.out}")
    return 0


def _volume_engine(args, truth_slices=None):
    """(segmenter, policy) for `propagate`: one policy for every slice, or for ``--policy
    simulated`` the annotator of each slice of the reference (a function of the slice index)."""
    from .evaluate3d import slice_annotator

    segmenter, make_policy = spec_from_args(args).build()
    if args.policy == "simulated":
        return segmenter, lambda index: slice_annotator(truth_slices[index])
    return segmenter, make_policy(None)


def _eval3d_engine(args):
    """(segmenter, make_policy(index, truth slice)) for `eval3d`."""
    from .evaluate3d import slice_annotator

    segmenter, make_policy = spec_from_args(args).build()
    if args.policy == "simulated":
        return segmenter, lambda index, truth: slice_annotator(truth)
    policy = make_policy(None)
    return segmenter, lambda index, truth: policy


def _run_propagate(args) -> int:
    from . import propagate_files as files
    from .evaluate3d import slice_annotator
    from .image_io import suffix_of
    from .policies.base import Policy
    from .safe_io import OutputSet
    from .volume_episode import VolumeEpisode

    log_path = args.log or _sibling(args.out, ".propagation.json")
    if suffix_of(args.out) not in VOLUME_OUTPUT_SUFFIXES:
        raise ValueError(f"--out {args.out}: write the 3D mask as one of {', '.join(VOLUME_OUTPUT_SUFFIXES)}.")
    if args.max_steps_per_slice < 0:
        raise ValueError(f"--max-steps-per-slice must be 0 or more; got {args.max_steps_per_slice}.")
    with OutputSet({"--out": args.out, "--log": log_path}, [args.image, args.mask, args.truth],
                   args.overwrite) as outputs:
        inputs = files.read_inputs(args.image, args.mask, args.plane, parse_window(args.window), args.label)
        first, last = files.parse_range(args.range, len(inputs.slices))
        starts = files.start_masks(inputs, args.index, args.plane)
        truth = files.read_truth(inputs, args.truth, args.label) if args.truth else None
        if args.policy == "simulated" and truth is None:
            raise ValueError("The simulated policy needs the reference mask: give --truth.")
        segmenter, policy = _volume_engine(args, truth)
        episode = VolumeEpisode(inputs.slices, segmenter, policy, starts, request=args.request,
                                direction=args.direction, first=first, last=last, max_slices=args.max_slices,
                                steps_per_slice=args.max_steps_per_slice, min_fraction=args.min_fraction,
                                propagation=args.propagation)
        print(f"Propagating from {args.plane} slice(s) {', '.join(map(str, sorted(starts)))} {args.direction}, "
              f"slices {first}:{last}, up to {args.max_steps_per_slice} agent steps per slice "
              f"({segmenter.name}, {args.policy}).")
        try:
            result = files.run_propagation(episode)
        finally:
            episode.close()
        details = {"image": args.image, "mask": args.mask, "plane": args.plane, "range": [first, last],
                   "direction": args.direction, "max_slices": args.max_slices,
                   "max_steps_per_slice": args.max_steps_per_slice, "min_fraction": args.min_fraction,
                   "propagation": args.propagation, "request": args.request}
        described = policy if isinstance(policy, Policy) else slice_annotator(starts[min(starts)])
        files.stage_outputs(outputs, inputs, result, files.engine_details(described, segmenter, details))
        outputs.commit()
    print(files.describe(result))
    print(f"Wrote {args.out} and {log_path}")
    return 0


def _run_eval3d(args) -> int:
    if args.protocol == "cvpr25":
        return _run_eval3d_cvpr25(args)
    from .evaluate3d import evaluate_volumes, output_folder

    out = output_folder(args.out, args.images, args.masks, args.overwrite)  # checked before the engine is built
    segmenter, make_policy = _eval3d_engine(args)
    summary = evaluate_volumes(args.images, args.masks, out, segmenter, make_policy, args.clicks_per_slice,
                               args.plane, args.request, parse_window(args.window), args.propagation,
                               progress=not args.no_progress, min_fraction=args.min_fraction)
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")
    print(f"Wrote per_case.csv, dice3d_vs_clicks.png, summary.json and skipped.txt to {args.out}")
    return 0


def _run_eval3d_cvpr25(args) -> int:
    from .evaluate_cvpr25 import evaluate

    tool = volume_tool_from_args(args)
    summary = evaluate(args.images, args.masks, args.out, tool, args.start, args.initial, args.clicks,
                       args.save_masks, args.overwrite, progress=not args.no_progress)
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")
    saved = f"; final masks in {args.save_masks}" if args.save_masks else ""
    print(f"Wrote summary.json, per_case.csv, dsc_vs_clicks.png and skipped.txt to {args.out}{saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
