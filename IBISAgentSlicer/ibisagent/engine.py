"""The engine factory: the one place that turns names and options into a policy and a tool.

An engine is a policy (who proposes the clicks) and a segmentation tool (what turns clicks into
a mask). Everything that runs the agent names its engine the same way and builds it here:

- `EngineSpec`: the names and builder options (what crosses a process boundary: an evaluation
  worker builds its own copy from it). ``EngineSpec()`` is the CPU default, the weight-free
  heuristic policy with the classical graphcut tool.
- `build_engine` / `EngineSpec.engine`: a built `Engine` (policy + tool), what the server's
  model workers, the Slicer logic's Local mode and the commands hold and reuse.
- `EngineSpec.build`: (tool, ``make_policy(truth)``) for runs over labelled cases, where the
  simulated annotator is built from each case's truth and any other policy once.
- `add_engine_arguments` and `spec_from_args`: the same command-line options for every command
  (``continue``, ``eval``, ``propagate``, ``eval3d``, ``serve``, ``demo``), and `tool_arguments`
  / `tool_options` for the training commands that need only a tool; `parse_window` reads
  ``--window``.
- `build_volume_tool` / `volume_tool_from_args`: the 3D click tool of a volume session (the
  commands and the Slicer logic's 3D session), a slice-wise one around a 2D tool's name or the
  logic's built 2D tool.
- `CPU_ONLY_POLICIES`, `CPU_ONLY_TOOLS`, `EngineSpec.cpu_only`: engines that never need a GPU
  (they may run one copy per core).

The builders live in the registries (`ibisagent.policies.POLICIES`,
`ibisagent.segmenters.SEGMENTERS`) and are imported only when chosen, so choosing the classical
tool never loads torch. Importing this module costs argparse and the registries' tables (no
scipy, no torch), so the Slicer logic imports it before the engine's packages are installed.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

from .policies import DEFAULT_POLICY, POLICIES, Policy, build_policy
from .segmenters import DEFAULT_SEGMENTER, SEGMENTERS, Segmenter, build_segmenter

if TYPE_CHECKING:  # the imaging module loads scipy; this one stays light (Slicer imports it)
    from .imaging import Window

#: Policies and tools that never touch a GPU (a remote model server counts as no GPU here).
CPU_ONLY_POLICIES = frozenset({"heuristic", "openai", "simulated"})
CPU_ONLY_TOOLS = frozenset({"graphcut", "growcut", "watershed"})
#: The tools that take a device, a checkpoint file and a model config.
MODEL_TOOLS = ("sam", "sam2", "litemedsam")

#: Gives the policy for one case from its ground truth (only the simulated annotator uses it).
MakePolicy = Callable[[Any], Policy]


@dataclass
class Engine:
    """A built policy and segmentation tool, used together (one owner: whoever built it).
    A tool sets one image at a time, so an engine serves one episode at a time."""

    policy: Policy
    segmenter: Segmenter

    @property
    def device(self) -> str:
        for part in (self.segmenter, self.policy):
            device = getattr(part, "device", None)
            if device:
                return str(device)
        return "cpu"

    def close(self) -> None:
        self.policy.close()


def build_engine(policy: Union[str, Policy] = DEFAULT_POLICY, segmenter: Union[str, Segmenter] = DEFAULT_SEGMENTER,
                 policy_options: Optional[Dict[str, Any]] = None,
                 segmenter_options: Optional[Dict[str, Any]] = None) -> Engine:
    """The engine of ``policy`` and ``segmenter``: registry names (built with their options) or
    ready objects (used as they are, e.g. a test's scripted policy). Unknown names or options
    raise ValueError naming the choices."""
    if isinstance(policy, str):
        policy = build_policy(policy, **(policy_options or {}))
    if isinstance(segmenter, str):
        segmenter = build_segmenter(segmenter, **(segmenter_options or {}))
    return Engine(policy, segmenter)


@dataclass(frozen=True)
class EngineSpec:
    """An engine by name and builder options. Field order (tool first) matches evaluation's
    habit of naming the tool under test: ``EngineSpec("growcut", policy="simulated")``."""

    segmenter: str = DEFAULT_SEGMENTER
    segmenter_options: Dict[str, Any] = field(default_factory=dict)
    policy: str = DEFAULT_POLICY
    policy_options: Dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_only(self) -> bool:
        """Neither the policy nor the tool is a torch model (so one copy per core is cheap)."""
        return self.policy in CPU_ONLY_POLICIES and self.segmenter in CPU_ONLY_TOOLS

    def tool(self) -> Segmenter:
        """The built segmentation tool alone (training rewards and trajectories need no policy)."""
        return build_segmenter(self.segmenter, **self.segmenter_options)

    def engine(self) -> Engine:
        """The built engine (not for the simulated annotator, which needs a truth: `build`)."""
        return build_engine(self.policy, self.segmenter, self.policy_options, self.segmenter_options)

    def build(self) -> Tuple[Segmenter, MakePolicy]:
        """(tool, ``make_policy(truth)``): the simulated annotator is built for each truth, any
        other policy once and shared."""
        segmenter = self.tool()
        if self.policy == "simulated":
            return segmenter, lambda truth: build_policy("simulated", truth=truth, **self.policy_options)
        policy = build_policy(self.policy, **self.policy_options)
        return segmenter, lambda truth: policy


# -- command-line options -----------------------------------------------------------------------
def add_engine_arguments(parser: argparse.ArgumentParser, policies=None) -> None:
    """The policy and tool options every engine-running command accepts."""
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
    tool_arguments(parser, help_default="classical, CPU")


def tool_arguments(parser: argparse.ArgumentParser, device: bool = True, help_default: str = "") -> None:
    """The segmentation tool's options (and ``--device`` unless ``device`` is False)."""
    tool = parser.add_argument_group("segmentation tool")
    default = f"{DEFAULT_SEGMENTER}, {help_default}" if help_default else DEFAULT_SEGMENTER
    tool.add_argument("--segmenter", default=DEFAULT_SEGMENTER, choices=list(SEGMENTERS),
                      help=f"tool that turns clicks into a mask (default: {default})")
    tool.add_argument("--tool-checkpoint", help="sam/sam2/litemedsam: checkpoint file")
    tool.add_argument("--tool-config", help="sam2: model config, e.g. configs/sam2.1/sam2.1_hiera_t.yaml; "
                      "sam: model type vit_b/vit_l/vit_h")
    tool.add_argument("--tool-option", action="append", default=[], metavar="KEY=VALUE",
                      help="extra option for the tool builder (repeatable)")
    if device:
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


def tool_options(args: argparse.Namespace, name: Optional[str] = None) -> Dict[str, object]:
    """The builder options `tool_arguments`' options give the tool ``name`` (default: the
    ``--segmenter`` 2D tool; a 3D model tool takes the same ones)."""
    name = name or args.segmenter
    tool: Dict[str, object] = {}
    if name in MODEL_TOOLS:
        tool.update(device=args.device)
        if args.tool_checkpoint:
            tool.update(checkpoint=args.tool_checkpoint)
        if args.tool_config and name == "sam2":
            tool.update(config=args.tool_config)
        elif args.tool_config and name == "sam":
            tool.update(model_type=args.tool_config)
    tool.update(parse_pairs(args.tool_option))
    return tool


def spec_from_args(args: argparse.Namespace) -> EngineSpec:
    """The engine `add_engine_arguments`' options name; ValueError when a policy lacks what it
    needs (qwen's checkpoint, openai's URL)."""
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
    return EngineSpec(args.segmenter, tool_options(args), args.policy, policy)


#: The 3D tools that work each clicked slice with a 2D tool: name -> their option naming that
#: tool (``--segmenter``, whose ``--tool-option`` s pass through to it).
SLICE_WISE_TOOLS = {"slice2d": "tool", "propagation3d": "segmenter"}


def build_volume_tool(name: Optional[str] = None, options: Optional[Dict[str, Any]] = None,
                      slice_tool: Union[str, Segmenter] = DEFAULT_SEGMENTER):
    """The 3D click tool ``name`` (`ibisagent.segmenters.VOLUME_SEGMENTERS`; None: the default,
    `ibisagent.segmenters.DEFAULT_VOLUME_SEGMENTER`) built with ``options``. A slice-wise tool
    (`SLICE_WISE_TOOLS`) works each slice with ``slice_tool``: a 2D tool's name (built with the
    same ``options``) or a built 2D tool, used as it is (the Slicer logic's engine's)."""
    from .segmenters import DEFAULT_VOLUME_SEGMENTER, build_volume_segmenter

    name = name or DEFAULT_VOLUME_SEGMENTER
    options = dict(options or {})
    wrapped = SLICE_WISE_TOOLS.get(name)
    if wrapped is not None:
        options[wrapped] = slice_tool
    return build_volume_segmenter(name, **options)


def volume_tool_from_args(args: argparse.Namespace):
    """The 3D click tool ``--segmenter3d`` names (`build_volume_tool`), configured by the same
    tool options as a 2D tool: a slice-wise tool gets the ``--segmenter`` 2D tool and its
    options, a model tool (sam2) its device, checkpoint and config, every tool its
    ``--tool-option`` s."""
    name = args.segmenter3d
    if name in SLICE_WISE_TOOLS:
        return build_volume_tool(name, tool_options(args), args.segmenter)
    return build_volume_tool(name, tool_options(args, name))


def parse_window(text: Optional[str]) -> Window:
    """``--window``: None, a CT preset name (checked where it is used), or "LOW,HIGH"."""
    if text is None:
        return None
    if "," in text:
        low, high = text.split(",", 1)
        try:
            return float(low), float(high)
        except ValueError:
            raise ValueError(f"--window {text!r}: give a preset name or two numbers LOW,HIGH, e.g. -125,1000.") from None
    return text
