"""One agent session bound to one slice of one Slicer segment.

`WorkedSlice` implements ``ibisagent.session.Session`` over MRML. The agent session inside it
(an in-process ``Episode`` or a ``RemoteSession``) is the one owner of the episode's state: mask,
clicks, steps, proposals, stop reason and the undo stack. This object keeps none of its own; it
makes MRML follow the session:

- every change of the session's mask is written into the worked slice of the segment, in the
  segment's own grid (`slice_labelmap.SliceLabelmap`);
- the segment's click history tag is the history it had at the start plus the session's steps;
- proposals are shown as editable points, applied clicks as locked points (`proposal_markups`);
- a hand edit of the slice (Segment Editor) is noticed before each agent call and sent as the
  session's `replace_mask`, one entry of the same undo stack as the steps.

Agent calls go through ``call(what, function)``: the logic's, which runs them where the widget
wants (its worker thread) and turns failures into `AgentStepError`. MRML is touched only here,
on the calling thread. `watch` reports, through a callback, when the volume, the segmentation
or the segment goes away (node removed, segment removed, scene closed).
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np

from ibisagent.clicks import Click
from ibisagent.session import Decide, EpisodeResult, Proposal, Step, run_until_stop

from . import proposal_markups, segment_masks
from .agent_sessions import AgentStepError
from .slice_geometry import SliceGeometry
from .slice_labelmap import SliceLabelmap

#: call(what, function) -> function's result; raises AgentStepError.
AgentCall = Callable[[str, Callable[[], object]], object]


def step_record(step: Step) -> dict:
    """A step as the console and the panel show it (JSON-ready)."""
    proposal = step.proposal
    return {
        "index": step.index,
        "reasoning": proposal.reasoning if proposal else "",
        "action": proposal.action.to_text() if proposal and proposal.action else None,
        "proposed_click": proposal.click.to_dict() if proposal and proposal.click else None,
        "clicks": [c.to_dict() for c in step.clicks],
        "decision": step.decision,
        "mask_pixels": step.mask_pixels,
    }


class WorkedSlice:
    """``session`` on the slice ``geometry`` of segment ``segment_id``; see the module docstring.

    ``labelmap`` must be bound to the same slice, and ``session`` must have started from
    ``labelmap.read()``. ``client`` (or None) is closed with the session.
    """

    def __init__(self, volume, segmentation, segment_id: str, geometry: SliceGeometry, labelmap: SliceLabelmap,
                 session, client, call: AgentCall, log: Callable[[str], None] = lambda message: None) -> None:
        self.volume = volume
        self.segmentation = segmentation
        self.segment_id = segment_id
        self.geometry = geometry
        self.labelmap = labelmap
        self.session = session
        self.client = client
        self._call = call
        self._log = log
        self.initial_history = proposal_markups.read_history(segmentation, segment_id)
        self.markups = proposal_markups.ProposalMarkups(geometry, volume.GetScene())
        self.markups.clear_proposals()
        self._show_accepted(self.initial_history)
        self._observed: List[tuple] = []

    # -- the session's state (read, never copied) --------------------------------------------------
    @property
    def max_steps(self) -> int:
        return self.session.max_steps

    @property
    def mask(self) -> np.ndarray:
        return self.session.mask

    @property
    def initial_mask(self) -> np.ndarray:
        return self.session.initial_mask

    @property
    def clicks(self) -> List[Click]:
        return self.session.clicks

    @property
    def steps(self) -> List[Step]:
        return self.session.steps

    @property
    def proposals(self) -> List[Proposal]:
        return self.session.proposals

    @property
    def pending(self) -> Optional[Proposal]:
        return self.session.pending

    @property
    def stop_reason(self) -> Optional[str]:
        return self.session.stop_reason

    @stop_reason.setter
    def stop_reason(self, reason: Optional[str]) -> None:
        self.session.stop_reason = reason

    @property
    def answer(self) -> Optional[str]:
        return self.session.answer

    @property
    def can_undo(self) -> bool:
        """The session can undo, or the slice holds a hand edit not sent yet (undo reverts it)."""
        return self.session.can_undo or self.has_hand_edit()

    def has_hand_edit(self) -> bool:
        return not np.array_equal(self.labelmap.read(), self.session.mask)

    # -- the session interface -------------------------------------------------------------------
    def propose(self) -> Proposal:
        """Ask for the next proposal and show its click as an editable point. Unreadable model
        output is returned like any proposal (``error`` set, stop reason "unparseable")."""
        self.sync_hand_edit()
        proposal = self._call("Asking the agent for the next step", self.session.propose)
        self.markups.clear_proposals()
        if proposal.click is not None:
            self.markups.show_proposal(proposal.click)
        return proposal

    def apply(self, clicks: Sequence[Click]) -> Step:
        """Apply ``clicks`` and write the new mask into the slice; on any failure the segment
        and the session are as they were."""
        clicks = list(clicks)
        self.sync_hand_edit()
        step = self._call("Applying the clicks", lambda: self.session.apply(clicks))
        try:
            self._write()
        except Exception as error:
            try:
                self._call("Taking the step back", self.session.undo)
            except AgentStepError:
                pass  # the segment is unchanged; report the write error
            raise AgentStepError("Writing the new mask into the segment", "engine", error) from error
        self.markups.clear_proposals()
        return step

    def skip(self) -> None:
        self._call("Skipping the proposal", self.session.skip)
        self.markups.clear_proposals()

    def replace_mask(self, mask: np.ndarray) -> None:
        """Continue from ``mask`` (bool (rows, cols)) and write it into the slice."""
        self._call("Sending the new mask", lambda: self.session.replace_mask(mask))
        self._write()

    def undo(self) -> bool:
        """Undo the last change of the slice: a hand edit not sent yet, else the session's last
        step or mask replacement; the slice and its history follow bit-exactly."""
        self.sync_hand_edit()
        if not self._call("Undoing the last step", self.session.undo):
            return False
        self._write()
        self.markups.clear_proposals()
        return True

    def run(self, max_steps: Optional[int] = None, decide: Optional[Decide] = None,
            on_step: Optional[Callable[[Step], None]] = None) -> EpisodeResult:
        run_until_stop(self, max_steps, decide, on_step)
        return self.result()

    def result(self) -> EpisodeResult:
        return self.session.result()

    def close(self) -> None:
        """Stop watching and remove the proposal points; the caller closes session and client."""
        self.unwatch()
        self.markups.clear_proposals_if_present()

    # -- MRML following the session ------------------------------------------------------------------
    def sync_hand_edit(self) -> bool:
        """Send a hand edit of the slice to the session (as replace_mask); True if there was one."""
        current = self.labelmap.read()
        if np.array_equal(current, self.session.mask):
            return False
        self._log("The slice was edited by hand; the agent continues from the edited mask.")
        self._call("Sending the edited mask", lambda: self.session.replace_mask(current))
        return True

    def history(self) -> List[dict]:
        """The click history the segment should carry: its earlier history, then this session's steps."""
        start = len(self.initial_history)
        return self.initial_history + [
            proposal_markups.history_entry(self.geometry, step.clicks, start + number,
                                           step.proposal.reasoning if step.proposal else "")
            for number, step in enumerate(self.steps, 1)
        ]

    def _write(self) -> None:
        if not np.array_equal(self.labelmap.read(), self.session.mask):
            segment_masks.save_scene_undo_state(self.segmentation)
            self.labelmap.write(self.session.mask)
        history = self.history()
        if history != proposal_markups.read_history(self.segmentation, self.segment_id):
            proposal_markups.write_history(self.segmentation, self.segment_id, history)
        self._show_accepted(history)

    def _show_accepted(self, history: List[dict]) -> None:
        self.markups.show_accepted(proposal_markups.clicks_on_slice(history, self.geometry))

    def restore_initial(self) -> None:
        """Put the slice (exactly, in the segment's grid) and the history back as they were
        when this worked slice began."""
        self.labelmap.write(self.labelmap.baseline)
        proposal_markups.write_history(self.segmentation, self.segment_id, self.initial_history)
        self.markups.clear_proposals()
        self._show_accepted(self.initial_history)

    # -- life cycle ------------------------------------------------------------------------------------
    def alive(self) -> bool:
        """The volume and the segmentation are in a scene and the segment still exists."""
        return (self.volume.GetScene() is not None and self.segmentation.GetScene() is not None
                and self.segmentation.GetSegmentation().GetSegment(self.segment_id) is not None)

    def watch(self, on_gone: Callable[[], None]) -> None:
        """Call ``on_gone()`` once when the scene starts closing or the volume, segmentation or
        segment is removed."""
        self._observed = watch_nodes(self.volume, self.segmentation, self.alive, self.unwatch, on_gone)

    def unwatch(self) -> None:
        unwatch_nodes(self._observed)
        self._observed = []


def watch_nodes(volume, segmentation, alive: Callable[[], bool], unwatch: Callable[[], None],
                on_gone: Callable[[], None]) -> List[tuple]:
    """Observe the scene and ``segmentation``: when the scene starts closing, or a node or segment
    is removed and ``alive()`` turns false, call ``unwatch()`` then ``on_gone()``. Returns the
    (node, tag) pairs for `unwatch_nodes`."""
    import slicer

    scene = volume.GetScene()

    def check(_caller, _event) -> None:
        if not alive():
            gone()

    def gone(_caller=None, _event=None) -> None:
        unwatch()
        on_gone()

    return [
        (scene, scene.AddObserver(scene.StartCloseEvent, gone)),
        (scene, scene.AddObserver(scene.NodeRemovedEvent, check)),
        (segmentation, segmentation.AddObserver(slicer.vtkSegmentation.SegmentRemoved, check)),
    ]


def unwatch_nodes(observed: List[tuple]) -> None:
    for node, tag in observed:
        node.RemoveObserver(tag)
