"""Policies by name, imported only when built (the qwen policy pulls in torch/transformers)."""

from __future__ import annotations

from ..registry import build_named
from .base import Observation, Policy, PolicyError

#: name -> "module:builder". Builders take keyword options and return a Policy.
POLICIES = {
    "heuristic": "ibisagent.policies.heuristic:build",
    "simulated": "ibisagent.policies.simulated:build",
    "qwen": "ibisagent.policies.qwen:build",
    "openai": "ibisagent.policies.openai_api:build",
}

#: The weight-free default: it needs no checkpoint and says so in its description.
DEFAULT_POLICY = "heuristic"


def build_policy(name: str = DEFAULT_POLICY, **options) -> Policy:
    """Build the policy called ``name``; unknown names or options are a clear ValueError."""
    return build_named(POLICIES, "policy", name, options)


__all__ = ["Observation", "Policy", "PolicyError", "POLICIES", "DEFAULT_POLICY", "build_policy"]
