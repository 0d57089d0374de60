"""What the user may do now, and why not: the one place the panel's enabled states come from.

`ACTIONS` lists every action the panel offers: its name, the .ui widget that triggers it and
what it does (the tooltip while it is enabled). `ActionsLogic.actions` (a part of
`IBISAgentLogic`) says for each action whether it can run now, and if not, why, in one
sentence; the widget enables each widget and sets its tooltip from that, and the console can
ask the same question. A new kind of session (3D) adds its actions here and its rules in its
own ``actions`` override, calling this one. Qt-free.
"""

from __future__ import annotations

from typing import Dict

#: action -> (.ui widget, what it does).
ACTIONS = {
    "continue": ("continueButton", "Start from the current segment on this slice."),
    "next": ("nextButton", "Ask the agent for its next click."),
    "accept": ("acceptButton", "Apply the points on screen."),
    "skip": ("skipButton", "Delete the proposal without applying it."),
    "undo": ("undoButton", "Undo the last step or hand edit (Ctrl+Z)."),
    "flip": ("flipButton", "Flip the selected proposed point."),
    "addPositive": ("addPositiveButton", "Place a positive point in the view."),
    "addNegative": ("addNegativeButton", "Place a negative point in the view."),
    "autoRun": ("autoRunButton", "Run the agent for N steps, accepting each proposal."),
    "stop": ("stopButton", "Stop after the current step."),
    "finish": ("finishButton", "Keep the mask in the segment and end the episode."),
    "save": ("saveButton", "Save the segment as .seg.nrrd or a NIfTI labelmap."),
    "testConnection": ("testConnectionButton", "Check that the agent answers and show what it runs."),
    "localServer": ("startServerButton", "Run the agent server on this computer; it stops with Slicer."),
    "propagate": ("propagateButton", "Carry the mask of the view's slice through the volume, the agent checking "
                  "every slice."),
    "cancel": ("cancelPropagationButton", "Stop now; the slices done so far stay (Undo propagation takes them "
               "back)."),
    "nextSlice": ("nextSliceButton", "Keep this slice as it is and go to the next one."),
    "stopHere": ("stopHereButton", "The target ends here: this slice goes back as it was."),
    "finishPropagation": ("finishPropagationButton", "Keep this slice and end the propagation."),
    "undoPropagation": ("undoPropagationButton", "Put every slice of the last propagation back as it was."),
    "record": ("recordCheckBox", "Write every step you accept or edit (the image the agent saw, its proposal, your "
               "clicks) into the record folder; skipped proposals are not written, undone steps are removed. "
               "Nothing leaves this computer."),
    "recordFolder": ("recordFolderButton", "The folder the steps are recorded into."),
}

BUSY = "Wait for the agent to answer (or press Stop)."


class ActionsLogic:
    """The `actions` method of `IBISAgentLogic` (a mixin: it reads the logic's episode,
    propagation, agent configuration, settings and local server)."""

    def actions(self, volumeNode=None, segmentationNode=None, segmentId: str = "", busy: bool = False) -> Dict[str, str]:
        """{action: "" when it can run now, else one sentence saying why not} for every action
        of `ACTIONS`, given the chosen volume, segmentation and segment and whether an action is
        running (``busy``: the panel's, while it waits for the agent)."""
        busy_ = BUSY if busy else ""
        missing = self._missingInputs(volumeNode, segmentationNode, segmentId)
        worked = self.workedSlice
        no_episode = "" if worked is not None else "Press Continue my mask first."
        session = worked.session if worked is not None else None
        pending = session is not None and session.pending is not None and session.stop_reason is None
        no_proposal = "" if pending else "No proposal on screen: press Next step."
        no_points = "" if worked is not None and worked.markups.proposals.GetNumberOfControlPoints() else (
            "No proposed point on screen.")
        try:
            no_undo = "" if worked is not None and worked.can_undo else "Nothing to undo in this episode."
        except Exception:  # noqa: BLE001 - e.g. the segment's geometry changed; the next action says so
            no_undo = "Nothing to undo in this episode."
        reviewing = self.propagation is not None
        no_review = "" if reviewing else "No propagation is under review (Mode: review, then Propagate)."
        last = self.propagation or self.lastPropagation
        no_undo_propagation = "" if last is not None and last.touched else "No propagation to undo."
        server = self.localServer
        running = server is not None and server.running
        no_server = ("Not needed: the agent runs inside Slicer (Local mode)." if self.settings.local and not running
                     else "")
        no_folder = "" if self.settings.recordFolder else "Choose the record folder first."
        return {
            "continue": busy_ or missing,
            "next": busy_ or missing or no_episode,
            "accept": busy_ or missing or no_episode,
            "skip": busy_ or no_episode or no_proposal,
            "undo": busy_ or no_episode or no_undo,
            "flip": busy_ or no_episode or no_points,
            "addPositive": busy_ or no_episode,
            "addNegative": busy_ or no_episode,
            "autoRun": busy_ or missing,
            "stop": "" if busy else "Nothing is running.",
            "finish": busy_ or no_episode,
            "save": busy_ or missing,
            "testConnection": busy_,
            "localServer": busy_ or no_server,
            "propagate": busy_ or missing,
            "cancel": "" if busy and self.propagating else "No propagation is running.",
            "nextSlice": busy_ or no_review,
            "stopHere": busy_ or no_review,
            "finishPropagation": busy_ or no_review,
            "undoPropagation": busy_ or no_undo_propagation,
            "record": busy_ or no_folder,
            "recordFolder": busy_,
        }

    def _missingInputs(self, volumeNode, segmentationNode, segmentId: str) -> str:
        """One sentence saying what the agent lacks before it can start, or ""."""
        if volumeNode is None:
            return "Select a volume."
        if segmentationNode is None:
            return "Select a segmentation (or create one in the Segment Editor)."
        if not segmentId or segmentationNode.GetSegmentation().GetSegment(segmentId) is None:
            return "Select a segment (add an empty one to start from nothing)."
        return self.agentProblem
