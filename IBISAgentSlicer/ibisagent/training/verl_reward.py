"""verl's custom reward entry: ``custom_reward_function.path=<this file>`` (name: compute_score).

verl loads this file by its path (not as a package module), so it imports only absolute names
from the installed ``ibisagent`` package. Choose the segmentation tool with reward kwargs
(``+custom_reward_function.reward_kwargs.segmenter=sam2`` and
``+custom_reward_function.reward_kwargs.tool_options='{"checkpoint": "...", "config": "..."}'``)
or the environment (``IBISAGENT_REWARD_SEGMENTER``, ``IBISAGENT_REWARD_TOOL_OPTIONS`` as JSON);
the default is this product's default tool. One tool is built per reward process and reused.

Returns verl's dict form: ``score`` (the mean of the five terms) and each term, which verl logs.
Rows whose ``data_source`` is not "med-seg" are refused with a clear error.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple

from ibisagent.segmenters import DEFAULT_SEGMENTER
from ibisagent.training.scoring import RewardScorer

DATA_SOURCE = "med-seg"
_scorers: Dict[Tuple[str, str], RewardScorer] = {}


def scorer(segmenter: Optional[str] = None, tool_options: Any = None) -> RewardScorer:
    """The process's scorer for that tool (built on first use)."""
    name = segmenter or os.environ.get("IBISAGENT_REWARD_SEGMENTER") or DEFAULT_SEGMENTER
    if tool_options is None:
        tool_options = os.environ.get("IBISAGENT_REWARD_TOOL_OPTIONS") or "{}"
    if isinstance(tool_options, str):
        try:
            tool_options = json.loads(tool_options)
        except ValueError:
            raise ValueError(f"The reward's tool options {tool_options!r} are not JSON.") from None
    options = dict(tool_options)
    key = (name, json.dumps(options, sort_keys=True))
    if key not in _scorers:
        _scorers[key] = RewardScorer(segmenter_name=name, **options)
    return _scorers[key]


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: Optional[dict] = None,
                  segmenter: Optional[str] = None, tool_options: Any = None, **_ignored: Any) -> Dict[str, float]:
    """verl's reward signature. ``ground_truth`` (the expert's action) is not needed: the
    rewards measure the mask the response leads to, as the reference's did."""
    if data_source != DATA_SOURCE:
        raise ValueError(f"This reward scores {DATA_SOURCE!r} rows, not {data_source!r}.")
    if not extra_info:
        raise ValueError("The RL row has no extra_info; export it with 'ibisagent export-training --format verl'.")
    return scorer(segmenter, tool_options).score(solution_str, extra_info).to_dict()
