"""What a caller drives in one interactive segmentation, wherever the agent runs.

One interface, `Session`, and one authority for the episode's state in each mode:

- in process, `ibisagent.episode.Episode`: the policy and the tool are here, and the episode
  owns the mask, the tool's clicks and state, the steps and the undo stack;
- remote, `ibisagent.client.RemoteSession`: the episode runs on an agent server, which owns all
  of that; the client shows the server's last answer (the mask it follows bit-exactly, the
  steps, clicks, stop reason, whether undo can change anything) and keeps no undo of its own.

Whoever follows a session (recording for training, the Slicer slice that shows it) *listens*
to it (`SessionEvents.add_listener`) instead of wrapping it: after every change the session
calls each listener with a `Change` (proposed, applied, mask-replaced, undone, skipped, rebuilt).
A listener runs on the thread that made the change and may raise; the change stands unless the
listener itself takes it back (the training recorder undoes a step it cannot write).

This module also holds the records a session returns (`Proposal`, `Step`, `EpisodeResult`), the
one decision of how a step answered its proposal (`decision_of`), the stop rules a proposal fires
(`stop_rule_of`, shared by the 2D episode and the 3D session), and `run_until_stop`, the single
loop behind every "run until the agent stops" in the project (and its step limit).

Standard library + numpy only (it is imported by the torch-free client on Python 3.9).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence

import numpy as np

from .actions import TERMINATE, Action, parse_response
from .clicks import Click

STOP_TERMINATED = "terminated"
STOP_UNPARSEABLE = "unparseable"
STOP_REPEATED = "repeated"
STOP_STEP_LIMIT = "step-limit"
STOP_USER = "stopped-by-user"

ACCEPTED = "accepted"  # the proposed click, unchanged
EDITED = "edited"  # the proposal was moved, flipped, deleted or joined by other clicks
USER_ONLY = "user"  # clicks with no proposal pending


@dataclass
class Proposal:
    """What the policy proposed at one step, and how long it took.

    ``step``: how many steps the episode had when it was proposed. ``click``: the proposed point
    in pixels of the slice image (None for terminate and unreadable output). ``error``: why the
    model's text could not be read (then ``action`` is None).
    """

    step: int
    policy: str
    raw_text: str
    reasoning: str
    action: Optional[Action]
    answer: Optional[str]
    error: Optional[str]
    click: Optional[Click]
    clamped: bool
    seconds: float

    def to_dict(self) -> Dict[str, Any]:
        return {
            "step": self.step,
            "policy": self.policy,
            "reasoning": self.reasoning,
            "action": self.action.to_text() if self.action else None,
            "answer": self.answer,
            "error": self.error,
            "click": self.click.to_dict() if self.click else None,
            "clamped": self.clamped,
            "seconds": round(self.seconds, 6),
            "raw_text": self.raw_text,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Proposal":
        """The inverse of `to_dict` (the wire form). The action is re-read from ``raw_text``
        with the same parser the episode used, so it is exactly the action proposed."""
        raw = str(data.get("raw_text", ""))
        click = data.get("click")
        return cls(
            int(data["step"]), str(data["policy"]), raw, str(data.get("reasoning", "")),
            parse_response(raw).action if data.get("action") else None, data.get("answer"), data.get("error"),
            Click.from_dict(click) if click else None, bool(data.get("clamped", False)),
            float(data.get("seconds") or 0.0),
        )


@dataclass
class Step:
    """One applied step: the clicks decided, the proposal they answered, the tool's result.

    ``index`` counts from 1 within the episode; ``score`` is the tool's confidence (NaN when it
    has none); ``seconds`` is the time the step itself took: close to 0 when it reused the
    look-ahead preview of the proposal it accepts (the tool's time then lies in the proposal's).
    """

    index: int
    clicks: List[Click]
    decision: str
    proposal: Optional[Proposal]
    mask_pixels: int
    score: float
    seconds: float

    def to_dict(self) -> Dict[str, Any]:
        return {
            "index": self.index,
            "decision": self.decision,
            "clicks": [c.to_dict() for c in self.clicks],
            "proposal": self.proposal.to_dict() if self.proposal else None,
            "mask_pixels": self.mask_pixels,
            "score": self.score,
            "seconds": round(self.seconds, 6),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Step":
        """The inverse of `to_dict`; a null score (JSON has no NaN) becomes NaN."""
        proposal = data.get("proposal")
        score = data.get("score")
        return cls(
            int(data["index"]), [Click.from_dict(c) for c in data["clicks"]], str(data["decision"]),
            Proposal.from_dict(proposal) if proposal else None, int(data["mask_pixels"]),
            math.nan if score is None else float(score), float(data.get("seconds") or 0.0),
        )


@dataclass
class EpisodeResult:
    mask: np.ndarray
    steps: List[Step]
    stop_reason: Optional[str]
    answer: Optional[str]
    proposals: List[Proposal] = field(default_factory=list)


#: A decision callback gets the proposal and returns the clicks to apply: ``[proposal.click]`` to
#: accept, other clicks to override, ``[]`` to skip this proposal, None to stop the episode.
Decide = Callable[[Proposal], Optional[Sequence[Click]]]


def decision_of(proposal: Optional[Proposal], clicks: Sequence[Click]) -> str:
    """How the applied ``clicks`` answer the pending ``proposal``: `ACCEPTED` (exactly its
    click, agent origin), `EDITED` (moved, flipped, deleted or joined by other clicks), or
    `USER_ONLY` (no proposal was pending)."""
    if proposal is None:
        return USER_ONLY
    return ACCEPTED if proposal.click is not None and list(clicks) == [proposal.click] else EDITED


def stop_rule_of(proposal: Proposal, recent_actions: List[str], repeat_limit: int, where: str = "") -> Optional[str]:
    """The stop rule a new ``proposal`` fires (the reference loop's rules), or None:
    `STOP_UNPARSEABLE` (its text could not be read), `STOP_TERMINATED` (the caller keeps its
    answer), `STOP_REPEATED` (the same action ``repeat_limit`` times in a row). Any other action
    is appended to ``recent_actions`` (the session's own list, kept in its undo snapshots) as
    ``where`` + its text: a 3D session names the slice there, so the same point on other slices
    is not a repeat. The step limit is `run_until_stop`'s."""
    if proposal.error is not None:
        return STOP_UNPARSEABLE
    if proposal.action.kind == TERMINATE:
        return STOP_TERMINATED
    recent_actions.append(where + proposal.action.to_text())
    tail = recent_actions[-repeat_limit:]
    return STOP_REPEATED if len(tail) == repeat_limit and len(set(tail)) == 1 else None


# -- following a session ------------------------------------------------------------------------
PROPOSED = "proposed"
APPLIED = "applied"
MASK_REPLACED = "mask-replaced"
UNDONE = "undone"
SKIPPED = "skipped"
REBUILT = "rebuilt"  # a remote session the server had forgotten was opened again (see the client)


@dataclass
class Change:
    """One change of a session, as its listeners get it. ``session``: who changed. ``kind``: one
    of `PROPOSED`, `APPLIED`, `MASK_REPLACED`, `UNDONE`, `SKIPPED`, `REBUILT`. ``proposal``: the
    new proposal (proposed). ``step``: the step (applied). ``mask_before``: bool (H, W), the mask
    the step started from (applied; the session's own array, not to be changed).
    ``chain_start``: the tool had no earlier clicks when the step was applied."""

    session: Any
    kind: str
    proposal: Optional[Proposal] = None
    step: Optional[Step] = None
    mask_before: Optional[np.ndarray] = None
    chain_start: bool = False


#: A listener gets every `Change` of the session it listens to.
Listener = Callable[[Change], None]


class SessionEvents:
    """What every session shares: its listeners, and `run` / `result` over `run_until_stop`.
    Subclasses call `_notify` after each change, once their own state is complete."""

    def __init__(self) -> None:
        self.listeners: List[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(change)`` after every change from now on."""
        self.listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; a listener not added is ignored."""
        if listener in self.listeners:
            self.listeners.remove(listener)

    def _notify(self, kind: str, **details: Any) -> None:
        change = Change(self, kind, **details)
        for listener in list(self.listeners):
            listener(change)

    def run(self, max_steps: Optional[int] = None, decide: Optional[Decide] = None,
            on_step: Optional[Callable[[Step], None]] = None) -> "EpisodeResult":
        """`run_until_stop` on this session (every proposal accepted without ``decide``), then
        `result`."""
        run_until_stop(self, max_steps, decide, on_step)
        return self.result()

    def result(self) -> "EpisodeResult":
        """The mask, steps, stop reason, answer and proposals so far."""
        return EpisodeResult(self.mask.copy(), list(self.steps), self.stop_reason, self.answer, list(self.proposals))


class Session(Protocol):
    """The interface of one interactive segmentation (see the module docstring).

    ``mask``: bool (H, W), the current mask. ``initial_mask``: the mask the episode started
    from. ``clicks``: the clicks the tool currently uses (a hand edit restarts them).
    ``steps``, ``proposals``: every applied step and every proposal, oldest first.
    ``pending``: the proposal not yet applied or skipped. ``stop_reason``: set when a stop rule
    fired (cleared by the next proposal or step). ``max_steps``: the episode's step limit.
    `SessionEvents` gives every session its listeners, `run` and `result`.
    """

    max_steps: int
    mask: np.ndarray
    initial_mask: np.ndarray
    clicks: List[Click]
    steps: List[Step]
    proposals: List[Proposal]
    pending: Optional[Proposal]
    stop_reason: Optional[str]
    answer: Optional[str]

    @property
    def can_undo(self) -> bool:
        """Whether `undo` would change anything."""

    def propose(self) -> Proposal:
        """Ask the policy for the next action; applies nothing; may set ``stop_reason``."""

    def apply(self, clicks: Sequence[Click]) -> Step:
        """Apply the decided clicks (any number, at least one); one undo entry."""

    def skip(self) -> None:
        """Drop the pending proposal."""

    def replace_mask(self, mask: np.ndarray) -> None:
        """Continue from a mask edited by hand (earlier clicks no longer apply); one undo entry."""

    def undo(self) -> bool:
        """Return exactly to the state before the last `apply` or `replace_mask`; False when
        there is nothing to undo."""

    def run(self, max_steps: Optional[int] = None, decide: Optional[Decide] = None,
            on_step: Optional[Callable[[Step], None]] = None) -> EpisodeResult:
        """`run_until_stop` on this session, then `result`."""

    def result(self) -> EpisodeResult:
        """The mask, steps, stop reason, answer and proposals so far."""

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(change)`` after every change."""

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""

    def close(self) -> None:
        """Release what the session holds; safe to call twice."""


#: call(method, *args) -> method(*args), run where the caller wants (e.g. on a worker thread).
SessionCall = Callable[..., Any]


def run_until_stop(
    session: Session,
    max_steps: Optional[int] = None,
    decide: Optional[Decide] = None,
    on_step: Optional[Callable[[Step], None]] = None,
    on_proposal: Optional[Callable[[Proposal], None]] = None,
    more: Optional[int] = None,
    call: Optional[SessionCall] = None,
) -> str:
    """Propose and apply until a stop rule fires; returns the stop reason (also set as the
    session's ``stop_reason``). The one loop behind `SessionEvents.run`, the volume episode's
    slices and the Slicer logic's ``continueMask`` and auto-run.

    The step limit, decided here only: the session's own ``max_steps``, or ``max_steps`` when
    given; with ``more``, at most that many steps beyond those the session has, within the
    limit. ``call(method, *args)`` runs each session call (``propose``, ``skip``, ``apply``;
    default: directly): the Slicer logic runs them on its worker thread and keeps the scene in
    step after each.

    Each round, in this order:

    1. the session has reached the step limit: "step-limit";
    2. the policy is asked; ``on_proposal(proposal)`` is called; a stop rule that fired
       (terminated, unparseable, repeated) ends the loop with that reason;
    3. ``decide(proposal)`` (default: accept the proposed click) returns None: "stopped-by-user";
    4. it returns ``[]``: the proposal is skipped; after ``session.max_steps`` proposals in a
       row without a step: "stopped-by-user" (a callback that never accepts cannot loop forever);
    5. otherwise the clicks are applied and ``on_step(step)`` is called.

    Errors from the session or the callbacks propagate; whatever was applied before stays.
    """
    limit = session.max_steps if max_steps is None else int(max_steps)
    if more is not None:
        limit = min(limit, len(session.steps) + int(more))
    call = call or (lambda method, *args: method(*args))
    skipped = 0
    while True:
        if len(session.steps) >= limit:
            reason = STOP_STEP_LIMIT
            break
        proposal = call(session.propose)
        if on_proposal is not None:
            on_proposal(proposal)
        if session.stop_reason is not None:
            return session.stop_reason
        clicks = [proposal.click] if decide is None else decide(proposal)
        if clicks is None:
            reason = STOP_USER
            break
        clicks = list(clicks)
        if not clicks:
            call(session.skip)
            skipped += 1
            if skipped >= session.max_steps:
                reason = STOP_USER
                break
            continue
        skipped = 0
        step = call(session.apply, clicks)
        if on_step is not None:
            on_step(step)
    session.stop_reason = reason
    return reason
