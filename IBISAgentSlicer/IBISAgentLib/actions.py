"""What the user may do now, and why not: the one place the panel's enabled states come from.

`ACTIONS` lists every action the panel offers: its name, the .ui widget that triggers it and
what it does (the tooltip while it is enabled); `IN_3D` says it again for the actions that do
something else on the whole segment; `FAILED` says what the panel's error display says first
when an action fails (the error's own message follows). `ActionsLogic.actions` (a part of `IBISAgentLogic`) gives
each action an `ActionState`: whether it can run now and the tooltip (why not, in one
sentence, else what it does); the widget enables each widget and sets its tooltip from that,
and the console can ask the same question. `ActionsLogic.labels` gives the words of the
controls that follow the logic's state (Start/Stop local server, the recording counts).

The 2D and 3D ways of working (`WORK_ON`: the view's slice, or the whole segment as one 3D
session) share every button and shortcut: Continue my mask, Next step, Accept, Skip, Undo,
Flip, Add positive/negative, Auto-run and Finish act on whichever episode runs. The choice is
the scene's (the panel's parameter node) and is passed in by the caller. Qt-free.
"""

from __future__ import annotations

from typing import Dict, NamedTuple

#: "Work on" choices: the view's slice (a 2D episode), or the whole segment (one 3D session).
SLICE, VOLUME = "slice", "volume"
WORK_ON = (SLICE, VOLUME)

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

#: action -> the first sentence of the error display when it fails (the panel's one error path).
FAILED = {
    "testConnection": "Cannot reach the agent.",
    "continue": "Could not start the agent.",
    "next": "The agent could not propose a step.",
    "accept": "The step could not be applied; the segment is unchanged.",
    "skip": "Could not skip the proposal.",
    "undo": "Could not undo.",
    "flip": "Could not flip the point.",
    "addPositive": "Could not start placing a point.",
    "addNegative": "Could not start placing a point.",
    "autoRun": "Auto-run stopped on an error; completed steps are kept.",
    "finish": "Could not finish; the segment is unchanged.",
    "save": "Could not save the mask.",
    "propagate": "The propagation stopped; the segment is as it was before it.",
    "nextSlice": "Could not go to the next slice; this slice is kept as it is.",
    "stopHere": "Could not stop here.",
    "finishPropagation": "Could not finish the propagation.",
    "undoPropagation": "Could not undo the propagation.",
    "localServer": "Could not start or stop the local server.",
}

#: What an action does on the whole segment, where that differs from `ACTIONS`.
IN_3D = {
    "continue": "Start from the whole segment: the agent looks at the view's slice first, then where the outline "
                "jumps between slices; points in any view belong to this one 3D session.",
    "next": "Ask the agent where to look next and what to do; its point appears on its slice and that view moves "
            "there.",
    "accept": "Apply the points on screen, in any view; the 3D tool updates the mask around them.",
    "addPositive": "Place a positive point in any slice view (Red, Yellow or Green).",
    "addNegative": "Place a negative point in any slice view (Red, Yellow or Green).",
    "finish": "Keep the 3D mask in the segment and end the session.",
}

BUSY = "Wait for the agent to answer (or press Stop)."
#: Why the whole segment cannot be worked on with an agent server (one sentence, also raised).
REMOTE_3D = ("The whole segment (3D) is worked on inside Slicer for now: choose Local (no server) under Server, "
             "or Work on: slice.")
COLOUR_3D = "3D clicks need a grey volume; this one has colour components (Work on: slice works on it)."


class ActionState(NamedTuple):
    """One action now: ``reason`` why it cannot run ("" when it can) and the ``tooltip`` to
    show: the reason, else what it does."""

    reason: str
    tooltip: str

    @property
    def enabled(self) -> bool:
        return not self.reason


class ActionsLogic:
    """The `actions` method of `IBISAgentLogic` (a mixin: it reads the logic's episode,
    propagation, agent configuration, settings and local server)."""

    def actions(self, volumeNode=None, segmentationNode=None, segmentId: str = "", busy: bool = False,
                workOn: str = SLICE) -> Dict[str, ActionState]:
        """{action: `ActionState`} for every action of `ACTIONS`, given the chosen volume,
        segmentation and segment, whether an action is running (``busy``: the panel's, while it
        waits for the agent) and what to work on (``workOn``, one of `WORK_ON`). The running
        episode's steps act on it whatever ``workOn`` says; the choice decides what Continue my
        mask and Auto-run start."""
        busy_ = BUSY if busy else ""
        missing = self._missingInputs(volumeNode, segmentationNode, segmentId)
        worked = self.activeEpisode
        no_episode = "" if worked is not None else "Press Continue my mask first."
        in_3d = self.volumeSession is not None or (worked is None and workOn == VOLUME)
        no_start = missing or (self._volumeProblem(volumeNode) if workOn == VOLUME else "")
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
        no_server = ("Not needed: the agent runs inside Slicer (Local mode)."
                     if self.settings.local and not self.localServerRunning else "")
        no_folder = "" if self.settings.recordFolder else "Choose the record folder first."
        reasons = {
            "continue": busy_ or no_start,
            "next": busy_ or missing or no_episode,
            "accept": busy_ or missing or no_episode,
            "skip": busy_ or no_episode or no_proposal,
            "undo": busy_ or no_episode or no_undo,
            "flip": busy_ or no_episode or no_points,
            "addPositive": busy_ or no_episode,
            "addNegative": busy_ or no_episode,
            "autoRun": busy_ or (missing if worked is not None else no_start),
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
        return {name: ActionState(reason, reason or (in_3d and IN_3D.get(name)) or ACTIONS[name][1])
                for name, reason in reasons.items()}

    def labels(self) -> Dict[str, str]:
        """{.ui widget: its text} for the controls whose words follow the logic's state: the
        local server button, the record folder button and the recording counts."""
        recorded = (f"Recording: {self.recordedSteps} step(s) recorded, {self.recordFolderSteps} in the folder."
                    if self.trainingRecord is not None else "Not recording.")
        return {
            "startServerButton": ("Stop" if self.localServerRunning else "Start") + " local server",
            "recordFolderButton": self.settings.recordFolder or "Choose a folder...",
            "recordedStepsLabel": recorded,
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

    def _volumeProblem(self, volumeNode) -> str:
        """Why the whole segment cannot be worked on in 3D with this agent and volume, or ""."""
        if not self.local:
            return REMOTE_3D
        image = volumeNode.GetImageData() if volumeNode is not None else None
        if image is not None and image.GetNumberOfScalarComponents() > 1:
            return COLOUR_3D
        return ""
