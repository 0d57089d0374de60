"""Propagating a mask through the slices of a volume, with the agent checking every slice.

`VolumeEpisode` is built on the 2D episode: every slice it reaches is an
`ibisagent.episode.Episode` that starts from the mask carried from its neighbour ("continue my
mask") and runs the one loop, `ibisagent.session.run_until_stop`, within a per-slice step limit.
What the volume episode adds is only the order of the slices, where each start comes from (an
`ibisagent.slice_stack.SliceStack`) and when the target has ended.

Slices are indexed along the plane's axis; "up" is increasing index, "down" decreasing. From
each start slice the episode goes up, then down (``direction`` "both"), one *front* at a time.
A front carries into the next slice, the agent refines it, then the end rules are checked on the
slice's final mask, in this order (the slice where one fires is left unchanged and the front
ends there):

- "no-target": the agent terminated saying there is no target on this slice (`says_no_target`);
- "vanished": the mask is empty;
- "shrank": the mask has fewer than ``min_fraction`` of the neighbour's pixels;
- "faded": the carried start no longer looks like the target (`SliceStack.faded`: for the
  watershed carrier, it has lost the start slices' contrast) and nobody changed it on this
  slice. A slice the agent or the user edited is their decision and is kept.

A front also ends, before carrying, at the edge of the range ("range-end"), after
``max_slices`` slices ("max-slices"), at a slice that is already final ("worked-slice": another
start or another front's slice) or when the caller cancels ("cancelled"). Every slice the
episode reaches gets a `SliceOutcome`; every front's end is a `FrontEnd`.

Two ways to drive it: `run` (run through: each slice gets ``steps_per_slice`` steps through the
``decide`` callback), or slice by slice for review: `next_slice` opens the next slice's episode
(``current``), the caller drives it (propose, apply, undo, hand edits), then `finish_slice`
checks the end rules; `stop_here` ends the current front without keeping the slice.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .episode import Episode
from .imaging import check_mask
from .policies.base import Policy
from .segmenters.base import Segmenter
from .session import STOP_TERMINATED, Decide, Proposal, Session, Step, run_until_stop
from .slice_stack import SliceStack, open_stack

END_NO_TARGET = "no-target"
END_VANISHED = "vanished"
END_SHRANK = "shrank"
END_FADED = "faded"
END_RANGE = "range-end"
END_LIMIT = "max-slices"
END_WORKED = "worked-slice"
END_CANCELLED = "cancelled"
END_USER = "stopped-by-user"
DIRECTIONS = ("up", "down", "both")

#: What a policy puts in its <answer> after Terminate to say the slice holds no target.
NO_TARGET_ANSWER = "no target"
_NO_TARGET = re.compile(r"\bno\s+target\b|\bno\s+\w+\s+(on|in)\s+this\s+slice\b|\bnot\s+(visible|present|seen)\b|"
                        r"\babsent\b", re.IGNORECASE)

#: A policy for every slice, or a function giving the policy for one slice index.
PolicyForSlice = Union[None, Policy, Callable[[int], Policy]]
#: (slice index, RGB slice, starting mask, step limit) -> the session for that slice.
OpenSession = Callable[[int, np.ndarray, np.ndarray, int], Session]


def says_no_target(answer: Optional[str]) -> bool:
    """Whether a terminating answer says the target is not on the slice ("no target", "the
    lesion is not visible", "absent", ...)."""
    return bool(answer) and _NO_TARGET.search(answer) is not None


@dataclass
class SliceOutcome:
    """One slice the episode reached. ``start_pixels``: the carried start; ``steps`` and
    ``proposals``: the agent's work on it (its click history); ``stop_reason``: why the agent's
    loop stopped; ``end``: the end rule that fired here (then ``kept`` is False and the slice
    was left unchanged), or None; ``faded``: the carried start no longer looked like the target."""

    index: int
    neighbour: int
    direction: str
    neighbour_pixels: int
    start_pixels: int
    mask_pixels: int
    steps: List[Step]
    proposals: List[Proposal]
    stop_reason: Optional[str]
    answer: Optional[str]
    end: Optional[str]
    kept: bool
    seconds: float
    carry_seconds: float = 0.0
    faded: bool = False

    @property
    def clicks(self) -> int:
        return sum(len(step.clicks) for step in self.steps)

    def to_dict(self) -> dict:
        return {
            "index": self.index, "neighbour": self.neighbour, "direction": self.direction,
            "neighbour_pixels": self.neighbour_pixels, "start_pixels": self.start_pixels,
            "mask_pixels": self.mask_pixels, "kept": self.kept, "end": self.end,
            "stop_reason": self.stop_reason, "answer": self.answer, "clicks": self.clicks,
            "steps": [step.to_dict() for step in self.steps],
            "proposals": [proposal.to_dict() for proposal in self.proposals],
            "seconds": round(self.seconds, 6), "carry_seconds": round(self.carry_seconds, 6), "faded": self.faded,
        }


@dataclass
class FrontEnd:
    """Where and why one front ended: ``start`` slice, ``direction``, ``reason``, and ``at``
    (the slice where an end rule fired, or the first slice the front did not reach)."""

    start: int
    direction: str
    reason: str
    at: int

    def to_dict(self) -> dict:
        return {"start": self.start, "direction": self.direction, "reason": self.reason, "at": self.at}


@dataclass
class VolumeResult:
    """``masks``: the final mask of every kept slice, starts included ({index: bool (H, W)})."""

    masks: Dict[int, np.ndarray]
    starts: List[int]
    outcomes: List[SliceOutcome]
    ends: List[FrontEnd]
    seconds: float = 0.0

    @property
    def propagated(self) -> List[int]:
        """Indices of the kept slices the episode reached (starts not included), in order."""
        return [o.index for o in self.outcomes if o.kept]

    @property
    def clicks(self) -> int:
        return sum(o.clicks for o in self.outcomes)


@dataclass
class _Front:
    start: int
    step: int
    last: int
    count: int = 0
    ended: bool = False

    @property
    def direction(self) -> str:
        return "up" if self.step > 0 else "down"


@dataclass
class _Open:
    index: int
    front: _Front
    episode: Session
    start: np.ndarray
    faded: bool
    started: float
    carry_seconds: float


class VolumeEpisode:
    """See the module docstring.

    ``slices``: the plane's slices, RGB uint8 (H, W, 3) each (any sequence: a lazy one is
    fine). ``starts``: {index: bool (H, W) mask} of the start slices. ``first``/``last``: the
    range (inclusive, default the whole stack); ``max_slices``: per front (default no limit).
    ``policy``: one policy, a function of the slice index, or None (slices driven by hand: the
    slice episodes then give no proposals). ``propagation``: see
    `ibisagent.slice_stack.open_stack`; or give a ready ``stack``.

    ``open_session(index, image, start_mask, max_steps)``: where each slice's session comes from
    when the agent is not in this process (e.g. an `ibisagent.client.RemoteSession` on an agent
    server; ``segmenter`` and ``policy`` are then None and the carrier must need no tool). By
    default every slice is an in-process `Episode` on the stack's tool. Sessions are closed when
    their slice is finished.
    """

    def __init__(
        self,
        slices: Sequence[np.ndarray],
        segmenter: Segmenter,
        policy: PolicyForSlice,
        starts: Dict[int, np.ndarray],
        request: str = "",
        direction: str = "both",
        first: Optional[int] = None,
        last: Optional[int] = None,
        max_slices: Optional[int] = None,
        steps_per_slice: int = 3,
        min_fraction: float = 0.2,
        propagation: str = "auto",
        stack: Optional[SliceStack] = None,
        open_session: Optional[OpenSession] = None,
    ) -> None:
        count = len(slices)
        if direction not in DIRECTIONS:
            raise ValueError(f"Unknown direction {direction!r}; choose one of: {', '.join(DIRECTIONS)}.")
        first = 0 if first is None else int(first)
        last = count - 1 if last is None else int(last)
        if not 0 <= first <= last < count:
            raise ValueError(f"The slice range {first}:{last} is not inside 0:{count - 1}.")
        if steps_per_slice < 0:
            raise ValueError(f"The step limit per slice must be 0 or more; got {steps_per_slice}.")
        if max_slices is not None and max_slices < 0:
            raise ValueError(f"The maximum number of slices must be 0 or more; got {max_slices}.")
        if not 0.0 <= min_fraction < 1.0:
            raise ValueError(f"min_fraction must be in [0, 1); got {min_fraction}.")
        if not starts:
            raise ValueError("Give at least one start slice with a mask.")
        shape = tuple(np.shape(slices[0])[:2])
        self.starts: Dict[int, np.ndarray] = {}
        for index, mask in sorted(starts.items()):
            if not first <= int(index) <= last:
                raise ValueError(f"The start slice {index} is outside the range {first}:{last}.")
            mask = check_mask(mask, shape, f"mask of start slice {index}")
            if not mask.any():
                raise ValueError(f"The start slice {index} has an empty mask; draw the target there first.")
            self.starts[int(index)] = mask.copy()
        self.slices = slices
        self.segmenter = segmenter
        self.policy = policy
        self.request = request
        self.first, self.last = first, last
        self.max_slices = max_slices
        self.steps_per_slice = int(steps_per_slice)
        self.min_fraction = float(min_fraction)
        self.open_session = open_session
        self.stack = stack if stack is not None else open_stack(segmenter, slices, propagation)
        self.masks: Dict[int, np.ndarray] = {}
        for index, mask in self.starts.items():
            self.stack.remember(index, mask)
            self.masks[index] = mask
        steps = {"up": (1,), "down": (-1,), "both": (1, -1)}[direction]
        self._fronts = [_Front(index, step, index) for step in steps for index in self.starts]
        self.outcomes: List[SliceOutcome] = []
        self.ends: List[FrontEnd] = []
        self._open: Optional[_Open] = None
        self._started = time.perf_counter()

    # -- slice by slice --------------------------------------------------------------------------
    @property
    def current(self) -> Optional[Session]:
        """The open slice's session (between `next_slice` and `finish_slice`), else None."""
        return self._open.episode if self._open else None

    @property
    def current_index(self) -> Optional[int]:
        return self._open.index if self._open else None

    @property
    def current_faded(self) -> bool:
        """Whether the open slice's carried start no longer looks like the target (the "faded"
        rule ends its front unless the slice is changed)."""
        return self._open is not None and self._open.faded

    @property
    def done(self) -> bool:
        return self._open is None and all(front.ended for front in self._fronts)

    def next_slice(self) -> Optional[Session]:
        """Carry into the next slice and open its session (also `current`; an `Episode` unless
        ``open_session`` was given); None when every front has ended. Changes nothing final:
        `finish_slice` decides whether the slice is kept."""
        if self._open is not None:
            raise RuntimeError(f"Slice {self._open.index} is still open; finish it first (finish_slice).")
        front = self._next_front()
        if front is None:
            return None
        index = front.last + front.step
        started = time.perf_counter()
        start = np.asarray(self.stack.carry(index, front.last), dtype=bool)
        carried = time.perf_counter() - started
        limit = max(1, self.steps_per_slice)
        if self.open_session is not None:
            episode = self.open_session(index, self.slices[index], start, limit)
        else:
            policy = self.policy if self.policy is None or isinstance(self.policy, Policy) else self.policy(index)
            episode = Episode(self.slices[index], self.stack.tool(index), policy, request=self.request,
                              initial_mask=start, max_steps=limit, image_is_set=True)
        self._open = _Open(index, front, episode, start, bool(self.stack.faded(index)), started, carried)
        return episode

    def _next_front(self) -> Optional[_Front]:
        for front in self._fronts:
            if front.ended:
                continue
            index = front.last + front.step
            if not self.first <= index <= self.last:
                self._end(front, END_RANGE, index)
            elif self.max_slices is not None and front.count >= self.max_slices:
                self._end(front, END_LIMIT, index)
            elif index in self.masks:
                self._end(front, END_WORKED, index)
            else:
                return front
        return None

    def _end(self, front: _Front, reason: str, at: int) -> None:
        front.ended = True
        self.ends.append(FrontEnd(front.start, front.direction, reason, at))

    def run_slice(self, decide: Optional[Decide] = None, on_step: Optional[Callable[[Step], None]] = None) -> str:
        """The agent's loop on the open slice within the per-slice step limit; returns its stop
        reason."""
        if self._open is None:
            raise RuntimeError("No slice is open; call next_slice() first.")
        return run_until_stop(self._open.episode, self.steps_per_slice, decide, on_step)

    def finish_slice(self, mask: Optional[np.ndarray] = None) -> SliceOutcome:
        """Close the open slice: its final mask is ``mask`` (a hand edit) or its episode's;
        check the end rules; keep it (later slices carry from it) or end its front there."""
        opened = self._require_open()
        episode = opened.episode
        final = episode.mask if mask is None else check_mask(mask, episode.mask.shape, "final slice mask")
        return self._close(opened, final, self._end_rule(opened, final))

    def stop_here(self) -> SliceOutcome:
        """The user says the target ends at the open slice: leave it unchanged, end its front."""
        opened = self._require_open()
        return self._close(opened, opened.episode.mask, END_USER)

    def cancel(self) -> Optional[SliceOutcome]:
        """End every front now; an open slice is left unchanged. Kept slices stay kept."""
        outcome = self._close(self._open, self._open.episode.mask, END_CANCELLED) if self._open else None
        for front in self._fronts:
            if not front.ended:
                self._end(front, END_CANCELLED, front.last + front.step)
        return outcome

    def _require_open(self) -> _Open:
        if self._open is None:
            raise RuntimeError("No slice is open; call next_slice() first.")
        return self._open

    def _end_rule(self, opened: _Open, final: np.ndarray) -> Optional[str]:
        episode, neighbour = opened.episode, self.masks[opened.front.last]
        if episode.stop_reason == STOP_TERMINATED and says_no_target(episode.answer):
            return END_NO_TARGET
        pixels = int(final.sum())
        if pixels == 0:
            return END_VANISHED
        if pixels < self.min_fraction * int(neighbour.sum()):
            return END_SHRANK
        if opened.faded and np.array_equal(final, opened.start):
            return END_FADED
        return None

    def _close(self, opened: _Open, final: np.ndarray, end: Optional[str]) -> SliceOutcome:
        front, episode = opened.front, opened.episode
        kept = end is None
        outcome = SliceOutcome(
            opened.index, front.last, front.direction, int(self.masks[front.last].sum()), int(opened.start.sum()),
            int(np.count_nonzero(final)), list(episode.steps), list(episode.proposals), episode.stop_reason,
            episode.answer, end, kept, time.perf_counter() - opened.started, opened.carry_seconds, opened.faded,
        )
        self.outcomes.append(outcome)
        self._open = None
        episode.close()
        if kept:
            final = np.asarray(final, dtype=bool).copy()
            self.stack.remember(opened.index, final)
            self.masks[opened.index] = final
            front.last = opened.index
            front.count += 1
        else:
            self._end(front, end, opened.index)
        return outcome

    # -- run through -----------------------------------------------------------------------------
    def step_slice(self, decide: Optional[Decide] = None,
                   on_step: Optional[Callable[[Step], None]] = None) -> Optional[SliceOutcome]:
        """`next_slice`, `run_slice`, `finish_slice`; None when every front has ended."""
        if self.next_slice() is None:
            return None
        self.run_slice(decide, on_step)
        return self.finish_slice()

    def run(self, decide: Optional[Decide] = None, on_slice: Optional[Callable[[SliceOutcome], None]] = None,
            should_stop: Optional[Callable[[], bool]] = None,
            on_step: Optional[Callable[[Step], None]] = None) -> VolumeResult:
        """Every slice in turn until every front has ended, or ``should_stop()`` says so before
        a slice (then the fronts end as "cancelled"; the slices kept so far stay)."""
        while not self.done:
            if should_stop is not None and should_stop():
                self.cancel()
                break
            outcome = self.step_slice(decide, on_step)
            if outcome is None:
                break
            if on_slice is not None:
                on_slice(outcome)
        return self.result()

    def result(self) -> VolumeResult:
        return VolumeResult({i: m.copy() for i, m in sorted(self.masks.items())}, sorted(self.starts),
                            list(self.outcomes), list(self.ends), time.perf_counter() - self._started)

    def close(self) -> None:
        """Release the stack (the tool and the policy belong to the caller); safe to call twice."""
        self.stack.close()
