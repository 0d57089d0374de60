"""The training subcommands of ``ibisagent``: trajectories, export-training, train-sft, train-grpo
and merge-lora, plus the ``--record DIR`` option other commands share.

Only argparse and the engine factory's option tables are imported here; each command imports
what it needs when it runs, so ``ibisagent --help`` stays light.
"""

from __future__ import annotations

import argparse
import json
from typing import Optional

from ..engine import parse_window, tool_arguments, tool_options

COMMANDS = ("trajectories", "export-training", "train-sft", "train-grpo", "merge-lora")


def add_record_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--record", metavar="DIR",
                        help="record every applied step for training into this local folder (off unless given)")


def make_recorder(folder: Optional[str]):
    """A `TrainingRecorder` for ``--record DIR``, or None when recording is off."""
    if not folder:
        return None
    from .recorder import TrainingRecorder

    return TrainingRecorder(folder)


def add_training_commands(sub) -> None:
    from .training_images import DEFAULT_OVERLAY, OVERLAYS
    from .trajectories import DEFAULT_MAX_STEPS, DEFAULT_REQUEST, DEFAULT_STOP_IOU

    p = sub.add_parser("trajectories", help="cold-start training trajectories from labelled images",
                       description="Run the simulated annotator (with reasoning text) on image/mask pairs "
                       "matched by file name and write one trajectory record per image.")
    p.add_argument("--images", required=True, help="folder of 2D images")
    p.add_argument("--masks", required=True, help="folder of expert masks with the same names")
    p.add_argument("--initial", help="folder of starting masks (continue-my-mask trajectories)")
    p.add_argument("--out", required=True, help="folder for the records")
    p.add_argument("--request", default=DEFAULT_REQUEST, help="the request text; {name} is the case name")
    p.add_argument("--stop-iou", type=float, default=DEFAULT_STOP_IOU, help="terminate at this IoU (default 0.8)")
    p.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS)
    p.add_argument("--window", help="grey-level window: a CT preset or LOW,HIGH")
    tool_arguments(p)

    p = sub.add_parser("export-training", help="records -> LLaMA-Factory SFT data or verl GRPO parquet")
    p.add_argument("--records", required=True, help="folder of trajectory records (searched recursively)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", required=True, choices=["llamafactory", "verl"])
    p.add_argument("--overlay", default=DEFAULT_OVERLAY, choices=list(OVERLAYS),
                   help="mask drawing in the pictures: inference (what this product sends, default) or "
                   "reference (the reference converter's RGBA green)")
    p.add_argument("--prompts-dir", help="prompt templates to write the prompts with (default: the package's)")
    p.add_argument("--dataset", help="dataset name (llamafactory: ibisagent_sft; verl: ibisagent)")
    p.add_argument("--split", default="train", help="verl: split name, also the parquet file name")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")

    p = sub.add_parser("train-sft", help="LoRA SFT with TRL on a llamafactory export (CPU smoke or GPU)")
    p.add_argument("--data", required=True, help="folder written by export-training --format llamafactory")
    p.add_argument("--dataset", default="", help="dataset name in its dataset_info.json (default: the only one)")
    _train_arguments(p, learning_rate=1e-5, epochs=10.0)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--grad-accum", type=int, default=16)
    p.add_argument("--max-length", type=int, default=2048, help="token cutoff (the reference's cutoff_len)")

    p = sub.add_parser("train-grpo", help="GRPO with TRL and the five rewards on a verl export")
    p.add_argument("--data", required=True, help="parquet written by export-training --format verl")
    _train_arguments(p, learning_rate=1e-6, epochs=1.0)
    p.add_argument("--num-generations", type=int, default=4, help="completions per prompt (default 4)")
    p.add_argument("--prompts-per-step", type=int, default=1, help="prompts per device per micro-batch")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--max-completion-length", type=int, default=512)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--vllm", action="store_true", help="generate with vLLM colocated (needs the vllm package)")
    tool_arguments(p, device=False)

    p = sub.add_parser("merge-lora", help="merge a LoRA adapter into its base: a full checkpoint folder")
    p.add_argument("--adapter", required=True, help="folder written by train-sft or train-grpo")
    p.add_argument("--out", required=True, help="new folder for the merged checkpoint")
    p.add_argument("--base", help="base checkpoint (default: the one the adapter was trained from)")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])


def _train_arguments(parser: argparse.ArgumentParser, learning_rate: float, epochs: float) -> None:
    parser.add_argument("--checkpoint", required=True, help="local Qwen2.5-VL / IBISAgent checkpoint folder")
    parser.add_argument("--out", required=True, help="folder for the LoRA adapter")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps")
    parser.add_argument("--epochs", type=float, default=epochs)
    parser.add_argument("--learning-rate", type=float, default=learning_rate)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logging-steps", type=int, default=10)
    parser.add_argument("--report-to", default="none", help="none, tensorboard, wandb, ...")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (the model and the reward's tool)")


def run_training_command(args: argparse.Namespace) -> int:
    if args.command == "trajectories":
        from ..engine import EngineSpec
        from .trajectories import generate_trajectories

        segmenter = EngineSpec(args.segmenter, tool_options(args)).tool()
        summary = generate_trajectories(args.images, args.masks, args.out, segmenter, args.initial, args.request,
                                        args.stop_iou, args.max_steps, parse_window(args.window))
    elif args.command == "export-training":
        if args.format == "llamafactory":
            from .export_llamafactory import DEFAULT_DATASET, export_llamafactory

            summary = export_llamafactory(args.records, args.out, args.overlay, args.prompts_dir,
                                          args.dataset or DEFAULT_DATASET, args.overwrite)
        else:
            from .export_verl import export_verl

            summary = export_verl(args.records, args.out, args.overlay, args.prompts_dir,
                                  args.dataset or "ibisagent", args.split, overwrite=args.overwrite)
    elif args.command == "train-sft":
        from .trl_train import train_sft

        run = train_sft(args.data, args.checkpoint, args.out, args.dataset, args.max_steps, args.epochs,
                        args.learning_rate, args.batch_size, args.grad_accum, args.max_length, args.lora_rank,
                        args.device, args.seed, args.report_to, args.logging_steps)
        summary = {"adapter": run.output_dir, "steps": run.steps, "last_loss": run.loss}
    elif args.command == "train-grpo":
        from .trl_train import train_grpo

        run = train_grpo(args.data, args.checkpoint, args.out, args.max_steps, args.epochs, args.learning_rate,
                         args.num_generations, args.prompts_per_step, args.grad_accum, args.max_completion_length,
                         args.temperature, args.lora_rank, args.segmenter, tool_options(args), args.device,
                         args.seed, args.report_to, args.logging_steps, args.vllm)
        summary = {"adapter": run.output_dir, "steps": run.steps, "last_loss": run.loss}
    else:
        from .merge import merge_adapter

        summary = {"merged_checkpoint": merge_adapter(args.adapter, args.out, args.base, args.dtype)}
    print(json.dumps(summary, indent=2))
    return 0
