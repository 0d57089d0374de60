"""One agent session shown on one slice of one Slicer segment.

The agent session (an in-process ``Episode`` or a ``RemoteSession``) is the one authority for
the episode's state: mask, clicks, steps, proposals, stop reason and undo. `WorkedSlice` keeps
none of it. It *listens* to the session and makes MRML follow:

- every change of the session's mask is written into the worked slice of the segment, in the
  segment's own grid (`slice_labelmap.SliceLabelmap`);
- the segment's click history tag is the history it had at the start plus the session's steps;
- proposals are shown as editable points, applied clicks as locked points (`proposal_markups`);
- a hand edit of the slice (Segment Editor) is noticed before each agent call and sent as the
  session's ``replace_mask``, one entry of the same undo stack as the steps.

Threads: agent calls run where the logic wants (its ``call(what, function)``: the widget's
worker thread), so the session's listener only queues each change; `call` writes them into MRML
on the calling thread when the agent call returns (`follow`). MRML is touched on that thread
only. `watch` reports, through a callback, when the volume, the segmentation or the segment goes
away (node removed, segment removed, scene closed).
"""

from __future__ import annotations

from typing import Callable, List

import numpy as np

from ibisagent.session import APPLIED, PROPOSED, REBUILT, SKIPPED, UNDONE, Change, Step

from . import proposal_markups, segment_masks
from .agent_sessions import AgentStepError
from .slice_geometry import SliceGeometry
from .slice_labelmap import SliceLabelmap

#: call(what, function) -> function's result; raises AgentStepError.
AgentCall = Callable[[str, Callable[[], object]], object]

#: What each session call is called in messages and the log.
CALLED = {
    "propose": "Asking the agent for the next step",
    "apply": "Applying the clicks",
    "skip": "Skipping the proposal",
    "undo": "Undoing the last step",
    "replace_mask": "Sending the edited mask",
}


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
    """``session`` shown on the slice ``geometry`` of segment ``segment_id``; see the module
    docstring.

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
        self._changes: List[Change] = []
        session.add_listener(self._queue)

    # -- agent calls -----------------------------------------------------------------------------
    def call(self, method, *args):
        """``method(*args)``, a call of the session (propose, apply, skip, undo, replace_mask),
        run through the logic's agent call, with MRML kept in step: a hand edit of the slice is
        sent first, the session's changes are written after (even when the call fails half way,
        e.g. a step taken back). The signature `ibisagent.session.run_until_stop` calls with."""
        if method.__name__ != "replace_mask":
            self.sync_hand_edit()
        try:
            return self._call(CALLED.get(method.__name__, "Calling the agent"), lambda: method(*args))
        finally:
            self.follow()

    def sync_hand_edit(self) -> bool:
        """Send a hand edit of the slice to the session (as replace_mask); True if there was one."""
        current = self.labelmap.read()
        if np.array_equal(current, self.session.mask):
            return False
        self._log("The slice was edited by hand; the agent continues from the edited mask.")
        self.call(self.session.replace_mask, current)
        return True

    def has_hand_edit(self) -> bool:
        return not np.array_equal(self.labelmap.read(), self.session.mask)

    @property
    def can_undo(self) -> bool:
        """The session can undo, or the slice holds a hand edit not sent yet (undo reverts it)."""
        return self.session.can_undo or self.has_hand_edit()

    # -- MRML following the session ------------------------------------------------------------------
    def _queue(self, change: Change) -> None:
        """The session's listener: runs on the thread of the agent call, so it only queues."""
        self._changes.append(change)

    def follow(self) -> None:
        """Write the session's queued changes into MRML (main thread). A new mask that cannot be
        written is taken back from the session (an applied step is undone) and AgentStepError
        raised, so the segment and the session still agree."""
        changes, self._changes = self._changes, []
        if not changes:
            return
        try:
            self._write()
        except Exception as error:
            if any(change.kind == APPLIED for change in changes):
                try:
                    self._call("Taking the step back", self.session.undo)
                except AgentStepError:
                    pass  # the segment is unchanged; report the write error
                self._changes = []
            raise AgentStepError("Writing the new mask into the segment", error) from error
        for change in changes:
            if change.kind == PROPOSED:
                self.markups.clear_proposals()
                if change.proposal.click is not None:
                    self.markups.show_proposal(change.proposal.click)
            elif change.kind in (APPLIED, SKIPPED, UNDONE):
                self.markups.clear_proposals()
            elif change.kind == REBUILT:
                self._log("The agent server had forgotten this session; it was opened again from the current "
                          "mask (undo reaches back to here).")

    def history(self) -> List[dict]:
        """The click history the segment should carry: its earlier history, then this session's steps."""
        start = len(self.initial_history)
        return self.initial_history + [
            proposal_markups.history_entry(self.geometry, step.clicks, start + number,
                                           step.proposal.reasoning if step.proposal else "")
            for number, step in enumerate(self.session.steps, 1)
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

    def close(self) -> None:
        """Stop listening and watching, remove the proposal points; the caller closes session
        and client."""
        self.session.remove_listener(self._queue)
        self.unwatch()
        self.markups.clear_proposals_if_present()

    # -- life cycle ------------------------------------------------------------------------------------
    def alive(self) -> bool:
        """The volume and the segmentation are in a scene and the segment still exists."""
        return segment_masks.nodes_alive(self.volume, self.segmentation, self.segment_id)

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
