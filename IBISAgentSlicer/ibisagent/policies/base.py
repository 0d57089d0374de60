"""The interface every policy implements: look at the current observation, answer in the
IBISAgent grammar (see `ibisagent.actions`).

Every policy, including the weight-free and simulated ones, returns raw model-style text. The
episode parses it with the same parser a real checkpoint's output goes through, so all policies
are held to one contract.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from ..clicks import Click


class PolicyError(RuntimeError):
    """The policy could not get an answer from its model (server down, timeout, bad reply).
    Raised by `Policy.respond`; the episode is left unchanged, so the caller may retry."""


@dataclass(frozen=True)
class Observation:
    """What a policy sees at one step.

    ``image``: RGB uint8 (H, W, 3) at the original resolution, in display orientation.
    ``mask``: bool (H, W), the current mask (all False before the first click).
    ``request``: the user's words, e.g. "Segment the white matter."
    ``step``: zero-based index of the step about to be proposed.
    ``clicks``: every click applied so far, oldest first.
    ``preview``: look-ahead through the episode's segmentation tool: given candidate clicks, the
    mask the tool would return if they were applied now (bool (H, W)); nothing is changed. None
    where no tool is at hand (a policy must then work without it).
    """

    image: np.ndarray
    mask: np.ndarray
    request: str
    step: int
    clicks: Tuple[Click, ...] = field(default_factory=tuple)
    preview: Optional[Callable[[Sequence[Click]], np.ndarray]] = field(default=None, compare=False, repr=False)


class Policy(abc.ABC):
    name = "base"
    #: One line shown to users in logs and reports, e.g. which checkpoint made the proposals.
    description = ""

    @abc.abstractmethod
    def respond(self, observation: Observation) -> str:
        """Return the model's raw text for this observation."""

    def close(self) -> None:
        """Release models or connections; safe to call twice."""
