"""The five rewards as a TRL ``GRPOTrainer`` reward function.

TRL calls a reward function with ``prompts``, ``completions`` (conversational: a list of
``[{"role": "assistant", "content": text}]``) and every other dataset column as a keyword list,
one entry per completion; it wants one float per completion. The GRPO dataset
(`ibisagent.training.trl_data.grpo_dataset`) carries each row's ``extra_info``, so the same
`RewardScorer` that verl uses scores here too, and each term is logged as a metric.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from .scoring import RewardScorer

TERMS = ("format", "answer", "placement", "progress", "length")


def completion_text(completion: Any) -> str:
    """The text of one TRL completion (a string, or conversational messages)."""
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content") or "") for message in completion if message.get("role") == "assistant")


def make_reward_function(scorer: RewardScorer) -> Callable[..., List[float]]:
    """A TRL reward function (named ``ibisagent_reward`` in TRL's logs) backed by ``scorer``."""

    def ibisagent_reward(prompts: List[Any], completions: List[Any], extra_info: List[dict],
                         log_metric: Optional[Callable[[str, float], None]] = None, **_columns: Any) -> List[float]:
        terms = [scorer.score(completion_text(c), info) for c, info in zip(completions, extra_info)]
        if log_metric is not None and terms:
            for name in TERMS:
                log_metric(f"ibisagent/{name}", sum(getattr(t, name) for t in terms) / len(terms))
        return [t.score for t in terms]

    return ibisagent_reward
