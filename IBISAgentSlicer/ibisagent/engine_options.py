"""Command-line options that choose and configure a policy and a segmentation tool.

Shared by every command that builds an engine (`continue`, `eval`, `serve`, `demo`) so they
accept the same spelling. Named options cover the common cases; ``--policy-option KEY=VALUE``
and ``--tool-option KEY=VALUE`` pass anything else to the builder.
"""

from __future__ import annotations

import argparse
import os
from typing import Dict, List, Tuple

from .policies import DEFAULT_POLICY, POLICIES
from .segmenters import DEFAULT_SEGMENTER, SEGMENTERS


def add_engine_arguments(parser: argparse.ArgumentParser, policies=None) -> None:
    group = parser.add_argument_group("agent")
    group.add_argument("--policy", default=DEFAULT_POLICY, choices=list(policies or POLICIES),
                       help=f"who proposes the clicks (default: {DEFAULT_POLICY}, weight-free, no checkpoint)")
    group.add_argument("--checkpoint", help="qwen: local folder of an IBISAgent/Qwen2.5-VL checkpoint")
    group.add_argument("--openai-url", help="openai: base URL of an OpenAI-compatible server "
                       "(default: $OPENAI_BASE_URL)")
    group.add_argument("--model-name", help="openai: served model name (default: the server's first model)")
    group.add_argument("--prompts-dir", help="qwen/openai: folder of prompt templates to use instead of ours")
    group.add_argument("--policy-option", action="append", default=[], metavar="KEY=VALUE",
                       help="extra option for the policy builder (repeatable)")
    tool = parser.add_argument_group("segmentation tool")
    tool.add_argument("--segmenter", default=DEFAULT_SEGMENTER, choices=list(SEGMENTERS),
                      help=f"tool that turns clicks into a mask (default: {DEFAULT_SEGMENTER}, classical, CPU)")
    tool.add_argument("--tool-checkpoint", help="sam/sam2/litemedsam: checkpoint file")
    tool.add_argument("--tool-config", help="sam2: model config, e.g. configs/sam2.1/sam2.1_hiera_t.yaml; "
                      "sam: model type vit_b/vit_l/vit_h")
    tool.add_argument("--tool-option", action="append", default=[], metavar="KEY=VALUE",
                      help="extra option for the tool builder (repeatable)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (torch backends only)")


def parse_pairs(pairs: List[str]) -> Dict[str, object]:
    """KEY=VALUE strings to a dict; numbers and true/false are converted."""
    options: Dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"Expected KEY=VALUE, got {pair!r}.")
        key, value = pair.split("=", 1)
        options[key.strip().replace("-", "_")] = _convert(value.strip())
    return options


def _convert(value: str) -> object:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def engine_options(args: argparse.Namespace) -> Tuple[Dict[str, object], Dict[str, object]]:
    """(policy options, tool options) for `build_policy` and `build_segmenter`."""
    policy: Dict[str, object] = {}
    if args.policy == "qwen":
        if not args.checkpoint:
            raise ValueError("The qwen policy needs --checkpoint pointing to a local checkpoint folder.")
        policy.update(checkpoint=args.checkpoint, device=args.device)
    if args.policy == "openai":
        url = args.openai_url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise ValueError("The openai policy needs --openai-url or the OPENAI_BASE_URL environment variable.")
        policy.update(url=url)
        if args.model_name:
            policy.update(model=args.model_name)
    if args.prompts_dir and args.policy in ("qwen", "openai"):
        policy.update(prompts_dir=args.prompts_dir)
    policy.update(parse_pairs(args.policy_option))
    tool: Dict[str, object] = {}
    if args.segmenter in ("sam", "sam2", "litemedsam"):
        tool.update(device=args.device)
        if args.tool_checkpoint:
            tool.update(checkpoint=args.tool_checkpoint)
        if args.tool_config and args.segmenter == "sam2":
            tool.update(config=args.tool_config)
        elif args.tool_config and args.segmenter == "sam":
            tool.update(model_type=args.tool_config)
    tool.update(parse_pairs(args.tool_option))
    return policy, tool
