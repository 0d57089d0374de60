"""One IBISAgent episode in this process: one 2D image, one target, a sequence of observe ->
propose -> decide -> segment steps.

`Episode` implements `ibisagent.session.Session` with the policy and the tool in this process,
and is the one authority for its state: the mask, the tool's prior, every click with its
origin, the steps, and a stack of snapshots so `undo` returns exactly to the previous state
(on an agent server, the server's episode is that authority for its client). Whoever follows it
(a training record, a Slicer slice) listens to its changes (`add_listener`). The person (or a batch
decision callback) stays in charge: the policy only *proposes*; `apply` takes whatever clicks
were decided, any number per step.

Stop rules follow the reference: the policy terminates, its output cannot be parsed, it proposes
the same action three times in a row (`ibisagent.session.stop_rule_of`, shared with the 3D
session), or the step limit is reached. Each sets `stop_reason`.
Stops are advice to the person: applying clicks afterwards is allowed and clears the stop.

The records (`Proposal`, `Step`, `EpisodeResult`), the stop reasons, the listeners and the run
loop live in `ibisagent.session` (shared with the client) and are re-exported here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .actions import parse_response
from .clicks import AGENT, Click
from .imaging import check_mask
from .policies.base import Observation, Policy
from .segmenters.base import Prediction, Segmenter
from .session import (  # noqa: F401 - re-exported: the engine's public names
    ACCEPTED,
    APPLIED,
    EDITED,
    MASK_REPLACED,
    PROPOSED,
    SKIPPED,
    STOP_REPEATED,
    STOP_STEP_LIMIT,
    STOP_TERMINATED,
    STOP_UNPARSEABLE,
    STOP_USER,
    UNDONE,
    USER_ONLY,
    Decide,
    EpisodeResult,
    Proposal,
    SessionEvents,
    Step,
    decision_of,
    run_until_stop,
    stop_rule_of,
)


@dataclass
class _Snapshot:
    mask: np.ndarray
    prior_state: Optional[np.ndarray]
    clicks: tuple
    steps: tuple
    recent_actions: tuple
    stop_reason: Optional[str]
    answer: Optional[str]


class Episode(SessionEvents):
    """The state machine of one interactive segmentation.

    ``image``: RGB uint8 (H, W, 3), display orientation. ``initial_mask``: the user's mask to
    continue from (bool-like (H, W)), or None to start from nothing. The segmenter's image is
    set here once; every later step reuses its embedding.
    """

    def __init__(
        self,
        image: np.ndarray,
        segmenter: Segmenter,
        policy: Optional[Policy] = None,
        request: str = "",
        initial_mask: Optional[np.ndarray] = None,
        max_steps: int = 20,
        repeat_limit: int = 3,
        image_is_set: bool = False,
    ) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1; got {max_steps}.")
        super().__init__()
        self.image = np.asarray(image)
        if not image_is_set:
            segmenter.set_image(self.image)
        self.segmenter = segmenter
        self.policy = policy
        self.request = request
        self.max_steps = max_steps
        self.repeat_limit = repeat_limit
        shape = self.image.shape[:2]
        if initial_mask is None:
            self.mask = np.zeros(shape, dtype=bool)
        else:
            self.mask = check_mask(initial_mask, shape, "starting mask").copy()
        self.initial_mask = self.mask.copy()
        self.prior_state: Optional[np.ndarray] = None
        self.clicks: List[Click] = []
        self.steps: List[Step] = []
        self.proposals: List[Proposal] = []
        self.pending: Optional[Proposal] = None
        self.stop_reason: Optional[str] = None
        self.answer: Optional[str] = None
        self._recent_actions: List[str] = []
        self._history: List[_Snapshot] = []
        #: The last preview: (its clicks as `_click_key`, the mask and prior state it was made
        #: from, its prediction), for `apply` to reuse.
        self._previewed: Optional[Tuple[tuple, np.ndarray, object, Prediction]] = None

    # -- asking the policy ---------------------------------------------------------------------
    def observation(self) -> Observation:
        return Observation(self.image, self.mask.copy(), self.request, len(self.steps), tuple(self.clicks),
                           preview=self.preview)

    def preview(self, clicks: Sequence[Click]) -> np.ndarray:
        """The mask that applying ``clicks`` now would give, bool (H, W); the episode is not
        changed. Lets a policy try a click through the tool before proposing it. The last
        preview is kept: applying the same clicks next (the proposal accepted) reuses it instead of
        running the tool again, which the tool's determinism makes exact."""
        everything = self.clicks + list(clicks)
        prediction = self.segmenter.predict(everything, self.mask, self.prior_state)
        self._previewed = (_click_key(everything), self.mask, self.prior_state, prediction)
        return prediction.mask.copy()

    def propose(self) -> Proposal:
        """Ask the policy for the next action; applies nothing. Sets `stop_reason` when a stop
        rule fires (terminate, unparseable output, the same action repeated)."""
        if self.policy is None:
            raise RuntimeError("This episode has no policy; give one to Episode(...) to get proposals.")
        self.stop_reason = None
        started = time.perf_counter()
        raw = self.policy.respond(self.observation())
        seconds = time.perf_counter() - started
        parsed = parse_response(raw)
        click, clamped = None, False
        if parsed.action is not None and parsed.action.is_point:
            rows, cols = self.mask.shape
            x, y, clamped = parsed.action.to_pixel(cols, rows)
            click = Click(x, y, parsed.action.kind == "positive", AGENT)
        proposal = Proposal(
            len(self.steps), self.policy.name, parsed.raw, parsed.reasoning, parsed.action,
            parsed.answer, parsed.error, click, clamped, seconds,
        )
        self.proposals.append(proposal)
        self.pending = proposal
        self._check_stop(proposal)
        self._notify(PROPOSED, proposal=proposal)
        return proposal

    def _check_stop(self, proposal: Proposal) -> None:
        self.stop_reason = stop_rule_of(proposal, self._recent_actions, self.repeat_limit)
        if self.stop_reason == STOP_TERMINATED:
            self.answer = proposal.answer

    # -- changing the mask ---------------------------------------------------------------------
    def apply(self, clicks: Sequence[Click]) -> Step:
        """Add the decided clicks (one or more) and run the segmentation tool once.

        The pending proposal, if any, is recorded with the step; the decision says whether it
        was accepted unchanged or edited. On any error the episode is left unchanged.
        """
        clicks = list(clicks)
        if not clicks:
            raise ValueError("No clicks to apply; to pass on a proposal, call skip() instead.")
        started = time.perf_counter()
        previewed, self._previewed = self._previewed, None
        if (previewed is not None and previewed[0] == _click_key(self.clicks + clicks)
                and previewed[1] is self.mask and previewed[2] is self.prior_state):
            prediction = previewed[3]
        else:
            prediction = self.segmenter.predict(self.clicks + clicks, self.mask, self.prior_state)
        seconds = time.perf_counter() - started
        proposal = self.pending
        before, chain_start = self.mask, not self.clicks
        self._push()
        self.clicks.extend(clicks)
        self.mask = prediction.mask
        self.prior_state = prediction.state
        step = Step(len(self.steps) + 1, clicks, decision_of(proposal, clicks), proposal, int(prediction.mask.sum()),
                    float(prediction.score), seconds)
        self.steps.append(step)
        self.pending = None
        self.stop_reason = None
        self._notify(APPLIED, step=step, mask_before=before, chain_start=chain_start)
        return step

    def skip(self) -> None:
        """Drop the pending proposal without applying anything."""
        self.pending = None
        self._notify(SKIPPED)

    def replace_mask(self, mask: np.ndarray) -> None:
        """Start again from a mask the user edited by hand; earlier clicks no longer apply.
        Undo brings the previous mask and clicks back."""
        new_mask = check_mask(mask, self.mask.shape, "new mask").copy()
        self._push()
        self.mask = new_mask
        self.prior_state = None
        self.clicks = []
        self.pending = None
        self.stop_reason = None
        self._notify(MASK_REPLACED)

    def undo(self) -> bool:
        """Return exactly to the state before the last `apply` or `replace_mask`. False if
        there is nothing to undo."""
        if not self._history:
            return False
        self._previewed = None
        snap = self._history.pop()
        self.mask = snap.mask
        self.prior_state = snap.prior_state
        self.clicks = list(snap.clicks)
        self.steps = list(snap.steps)
        self._recent_actions = list(snap.recent_actions)
        self.stop_reason = snap.stop_reason
        self.answer = snap.answer
        self.pending = None
        self._notify(UNDONE)
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    def _push(self) -> None:
        self._previewed = None
        self._history.append(
            _Snapshot(
                self.mask, self.prior_state, tuple(self.clicks), tuple(self.steps),
                tuple(self._recent_actions), self.stop_reason, self.answer,
            )
        )

    def close(self) -> None:
        """Nothing to release (the tool and the policy belong to the caller); safe to call twice."""


def _click_key(clicks: Sequence[Click]) -> tuple:
    """What the tool sees of ``clicks``: positions and labels (not who made them)."""
    return tuple((click.x, click.y, click.positive) for click in clicks)
