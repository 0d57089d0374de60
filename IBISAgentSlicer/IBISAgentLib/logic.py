"""IBISAgentLogic: "continue my mask" on one slice of a Slicer segment, step by step or in one go.

Usable from Slicer's Python console, from the module widget and in batch, with no Qt::

    logic = IBISAgentLogic()                       # in-process engine (heuristic + graphcut)
    logic.connect("http://127.0.0.1:8765", token)  # or: an agent server
    logic.startLocalServer(); logic.waitForLocalServer()   # or: one started here (stopLocalServer)
    result = logic.continueMask(volume, segmentation, segmentId, "segment the tumour", view="Red")

The panel configures it from its saved settings (`configure`, `applySettings`), asks `actions`
what the user may do now (and why not) and `labels` for the words that follow, lets it list and
install the packages the chosen agent needs (`localEnginePackages`, `localServerPackages`,
`ensurePackages` after one question) and runs the local server through it; nothing of that
needs the panel.

Step-wise (the widget): `startEpisode`, then repeatedly `proposeNext` (shows the proposal as a
markup point), the user edits points, `acceptProposal` (applies exactly the points on screen) or
`skipProposal`; `undo`; `finish` (`finishQuietly` never raises). `runSteps` accepts what is on
screen for several steps; `startPlacingPoint` / `stopPlacingPoint` let the user place a point.
`flipProposal` flips a proposed point; `pingServer` and `serverInfo` check the agent.
``startEpisode(..., workOn="volume")`` (`actions.WORK_ON`) opens one 3D session on the whole
segment instead (`volume_session_logic.VolumeSessionLogic`, also `startVolumeSession`): points
placed in any of the Red, Yellow and Green views are voxels of that session, a proposal appears
on its slice and the view moves there, and the same step methods act on it; `continueVolume`
runs it until the agent stops.

Volumes (`propagation.PropagationLogic`): `propagate` carries the mask of the view's slice
through the volume, the agent checking every slice; `startPropagation` / `nextPropagatedSlice` /
`stopPropagationHere` / `finishPropagation` review it slice by slice; `undoPropagation` takes a
whole propagation back.

Recording for training (off by default): `setTrainingRecord(folder)` records every step the user
applies (accepted or edited) into a local folder, one trajectory record per episode, finished
when the episode ends; skipped proposals leave no trace and undone steps are removed
(`training_record`). ``recordedSteps`` counts them.

State: the running episode is ``logic.workedSlice`` (`worked_slice.WorkedSlice`) or, on the
whole segment, ``logic.volumeSession`` (`volume_session_logic.WorkedVolume`), never both
(`activeEpisode`); its agent session owns mask, clicks, steps and undo; `state` reports it. It
ends by itself when its volume, segmentation or segment is removed or the scene closes, and
`startEpisode` always starts afresh.

Guarantees:
- Only the worked slice of the chosen segment changes (on the whole segment: only the voxels the
  3D tool changes), in the segment's own grid.
- Every agent call goes through ``self.callAgent(function)``; by default it runs inline. The
  widget replaces it with one that runs ``function`` on its worker thread and waits, so MRML is
  only touched by the thread that calls the logic. Sessions are closed through
  ``self.startAgentCall(function)``, which need not wait (the widget queues it on the worker).
- A failure in any step leaves the segment exactly as it was and raises `AgentStepError`
  (``kind`` says why, the message says what to do); input problems raise `SliceGeometryError`,
  `SegmentError` or ValueError. `continueMask` is all-or-nothing: on failure the slice and its
  click history return to where they were before the call.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, List, Optional, Sequence

from ibisagent.clicks import Click
from ibisagent.errors import InvalidOutputError
from ibisagent.session import Decide, Proposal, Step, run_until_stop

from . import export, segment_masks
from .actions import SLICE, VOLUME, WORK_ON, ActionsLogic
from .agent_sessions import AgentLogic, AgentStepError, close_quietly
from .local_server import LocalServerLogic
from .propagation import PropagationLogic
from .proposal_markups import PointPlacement, leave_place_mode
from .settings import LOCAL, AgentSettings
from .volume_session_logic import VolumeSessionLogic
from .slice_geometry import slice_geometry, slice_rgb
from .slice_labelmap import SliceLabelmap
from .training_record import TrainingRecord, end_recording
from .worked_slice import WorkedSlice, step_record

try:  # Inside Slicer: behave like any scripted module logic.
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic as _LogicBase
except ImportError:  # PyPI slicer-core, plain Python
    _LogicBase = object

logger = logging.getLogger("IBISAgent")


class IBISAgentLogic(AgentLogic, PropagationLogic, VolumeSessionLogic, LocalServerLogic, ActionsLogic, _LogicBase):
    """All computation of the IBISAgent module. MRML only; no Qt; no dialogs. Its parts: the
    agent and its sessions (`agent_sessions.AgentLogic`), propagation through the slices
    (`propagation.PropagationLogic`), the 3D session on the whole segment
    (`volume_session_logic.VolumeSessionLogic`), the local server (`local_server.LocalServerLogic`) and
    what the user may do now (`actions.ActionsLogic`)."""

    def __init__(self, log: Optional[Callable[[str], None]] = None) -> None:
        if _LogicBase is not object:
            _LogicBase.__init__(self)
        self.logCallback = log
        self.callAgent: Callable[[Callable], object] = lambda function: function()
        self.startAgentCall: Callable[[Callable], None] = lambda function: function()
        #: The panel's choices (`configure`); the console's logic runs the in-process engine.
        self.settings = AgentSettings(mode=LOCAL)
        self.serverUrl: Optional[str] = None
        self.token: Optional[str] = None
        self.timeout = 60.0
        self.local = True
        self.agentProblem = ""
        #: The in-process engine (``ibisagent.engine.Engine``), built once on first use.
        self.engine = None
        self._engineRecipe: tuple = ()
        self.workedSlice: Optional[WorkedSlice] = None
        #: A run-through propagation is in progress (`propagate`).
        self.propagating = False
        #: While recording for training is on: where and how (see `setTrainingRecord`).
        self.trainingRecord: Optional[TrainingRecord] = None
        #: Called with a one-line reason when the episode ends by itself (its nodes went away).
        self.episodeEndedCallback: Optional[Callable[[str], None]] = None
        #: The point the user is placing (`startPlacingPoint`), until `stopPlacingPoint`.
        self.placement: Optional[PointPlacement] = None

    def log(self, message: str) -> None:
        """Progress: to Python logging and to ``logCallback`` (the widget's text box)."""
        logger.info(message)
        if self.logCallback is not None:
            self.logCallback(message)

    # -- step by step ------------------------------------------------------------------------------
    @property
    def activeEpisode(self):
        """The running episode: the worked slice, the 3D session, or None."""
        return self.workedSlice or self.volumeSession

    def startEpisode(self, volumeNode, segmentationNode, segmentId, request: str = "", view="Red",
                     maxSteps: int = 20, workOn: str = SLICE) -> dict:
        """Open an agent session on the slice shown in ``view``, starting from the segment's
        current mask there (or from nothing); with ``workOn="volume"``, one 3D session on the
        whole segment, the agent looking at that slice first (`startVolumeSession`). Ends any
        episode still running first. Changes no voxel. Returns `state()`."""
        if workOn not in WORK_ON:
            raise ValueError(f"Work on {workOn!r}? Choose one of: {', '.join(WORK_ON)}.")
        if workOn == VOLUME:
            return self.startVolumeSession(volumeNode, segmentationNode, segmentId, request, view, maxSteps)
        self._endWorkedSlice()
        self._endVolumeSession()
        self._checkAgent()
        if volumeNode is None or volumeNode.GetScene() is None:
            raise ValueError("No volume is selected (or it was removed); choose a volume first.")
        segment_masks.check_segment(segmentationNode, segmentId)
        geometry = slice_geometry(volumeNode, view, volumeNode.GetScene())
        image = slice_rgb(volumeNode, geometry)
        labelmap = SliceLabelmap(segmentationNode, segmentId, volumeNode, geometry)
        mask = labelmap.read()
        self.log(f"Working on slice {geometry.slice_index} of the {geometry.view} view "
                 f"({geometry.shape[1]}x{geometry.shape[0]} pixels, {int(mask.sum())} already in the segment).")
        client, session = self._agent(
            "Opening an agent session", lambda: self._openSession(image, request, mask if mask.any() else None, maxSteps)
        )
        self.workedSlice = WorkedSlice(volumeNode, segmentationNode, segmentId, geometry, labelmap, session, client,
                                       self._agent, self.log)
        self.workedSlice.watch(self._onWorkedSliceGone)
        if self.trainingRecord is not None:
            try:
                self.trainingRecord.start_recording(self.workedSlice, client)
            except Exception as error:  # noqa: BLE001 - never an unrecorded episode behind the user's back
                self._endWorkedSlice()
                raise ValueError(f"The training record could not be started in {self.trainingRecord.folder} ({error}); "
                                 "turn off Record for training or choose another folder.") from error
        return self.state()

    def finishIfElsewhere(self, segmentationNode, segmentId: str, workOn: Optional[str] = None) -> str:
        """End the running episode (its mask stays) when it works on another segment than
        ``segmentId`` of ``segmentationNode``, or, given ``workOn``, on the other of a slice and
        the whole segment (a propagation's slice under review is left to the propagation).
        Returns why it ended, or "" when it goes on (or could not finish: `finishQuietly`)."""
        worked = self.activeEpisode
        if worked is None:
            return ""
        if worked.segmentation is not segmentationNode or worked.segment_id != segmentId:
            reason = "Another segment was chosen."
        elif workOn == SLICE and self.volumeSession is not None:
            reason = "Work on: slice was chosen."
        elif workOn == VOLUME and self.workedSlice is not None and self.propagation is None:
            reason = "Work on: the whole segment (3D) was chosen."
        else:
            return ""
        return reason if self.finishQuietly() else ""

    def _onWorkedSliceGone(self) -> None:
        reason = ("The volume, segmentation or segment of the running episode was removed (or the scene "
                  "closed); the episode ended.")
        self.log(reason)
        self._endWorkedSlice()
        if self.episodeEndedCallback is not None:
            self.episodeEndedCallback(reason)

    def _endWorkedSlice(self) -> None:
        """End the running episode without reading MRML: remove its proposal points if they are
        still there and close its session and client without waiting. Never raises."""
        worked, self.workedSlice = self.workedSlice, None
        if worked is None:
            return
        worked.close()
        end_recording(worked, log=self.log)
        try:
            self.startAgentCall(lambda: close_quietly(worked.session, worked.client))
        except Exception:  # noqa: BLE001 - ending must never fail
            close_quietly(worked.session, worked.client)

    def _requireEpisode(self):
        """The running episode, of either kind (`activeEpisode`), still alive."""
        return self._requireVolume() if self.volumeSession is not None else self._require()

    def _require(self) -> WorkedSlice:
        worked = self.workedSlice
        if worked is None:
            raise RuntimeError("No episode is running; call startEpisode(...) or press 'Continue my mask' first.")
        if not worked.alive():
            self._endWorkedSlice()
            raise segment_masks.SegmentError(
                "The volume, segmentation or segment of the episode was removed; press 'Continue my mask' to start again."
            )
        return worked

    def proposeNext(self) -> Proposal:
        """Ask the agent for its next action and show a proposed click as an editable point.

        Returns the `ibisagent.session.Proposal` (``reasoning``, ``action``, ``click``,
        ``answer``...; the stop reason is in `state`). A terminate proposal shows no point; an
        unreadable model answer raises AgentStepError(kind="invalid-output"). Changes no voxel.
        """
        if self.volumeSession is not None:
            return self._proposeVolume()
        worked = self._require()
        proposal = worked.call(worked.session.propose)
        if proposal.error:
            self.log(f"The model's answer could not be read: {proposal.error}")
            raise AgentStepError("The model's answer could not be read", InvalidOutputError(proposal.error, proposal))
        self.log(f"Agent: {proposal.action.to_text()} - {proposal.reasoning.strip()}")
        return proposal

    def onScreenClicks(self) -> List[Click]:
        """The proposal points exactly as they now stand on screen (moved, flipped, added); on the
        whole segment, as ``VolumeClick`` s, each on the slice of the view that shows it."""
        if self.volumeSession is not None:
            return self._requireVolume().read_clicks()
        return self._require().markups.read_clicks()

    def acceptProposal(self, clicks: Optional[Sequence[Click]] = None) -> Step:
        """Apply the proposal points exactly as they now stand on screen, or ``clicks`` if
        given, and write the new mask into the slice (on the whole segment: the 3D tool's new
        mask). Returns the `Step`. On failure the segment is unchanged."""
        if self.volumeSession is not None:
            return self._acceptVolume(clicks)
        worked = self._require()
        clicks = list(worked.markups.read_clicks() if clicks is None else clicks)
        if not clicks:
            raise ValueError("There is no click to apply; place a point, or press Skip or Finish.")
        step = worked.call(worked.session.apply, clicks)
        self.log(f"Step {step.index}: {len(clicks)} click(s) applied; the slice mask has {step.mask_pixels} pixels.")
        return step

    def flipProposal(self, index: Optional[int] = None) -> int:
        """Flip the polarity of proposal point ``index``; by default the point under the mouse
        in a view (the list's active point), else the newest one. Returns the index flipped.
        Changes no voxel; raises ValueError when there is no such point."""
        markups = self._requireEpisode().markups
        count = markups.proposals.GetNumberOfControlPoints()
        if count == 0:
            raise ValueError("There is no proposed point to flip; press Next step or place a point.")
        if index is None:
            display = markups.proposals.GetDisplayNode()
            active = display.GetActiveControlPoint() if display is not None else -1
            index = active if 0 <= active < count else count - 1
        if not 0 <= index < count:
            raise ValueError(f"There is no proposed point {index}; the list has {count}.")
        markups.flip(index)
        return index

    def startPlacingPoint(self, positive: bool, onPlaced: Optional[Callable[[], None]] = None) -> PointPlacement:
        """Prepare one point to be placed by the user into the proposal list with polarity
        ``positive`` (ending a placement still going); ``onPlaced()`` is called when it is
        placed. The panel then enters Slicer's place mode; `stopPlacingPoint` ends it. On the
        whole segment the point may be placed in any slice view. Returns ``self.placement``."""
        self.stopPlacingPoint()
        self.placement = PointPlacement(self._requireEpisode().markups, positive, onPlaced)
        return self.placement

    def stopPlacingPoint(self, leavePlaceMode: bool = True) -> None:
        """End the placement, if any: the user's own active list is back, and with
        ``leavePlaceMode`` Slicer's mouse mode goes back from placing to viewing. Safe to call
        twice; the panel calls it before any other action."""
        placement, self.placement = self.placement, None
        if placement is None:
            return
        placement.end()
        if leavePlaceMode:
            import slicer

            leave_place_mode(slicer.mrmlScene)

    def segmentEditorSelection(self) -> tuple:
        """(volume, segmentation, segment id) the Segment Editor has selected (None and "" for
        what it lacks)."""
        import slicer

        editor = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentEditorNode")
        if editor is None:
            return None, None, ""
        volume = editor.GetSourceVolumeNode() if hasattr(editor, "GetSourceVolumeNode") else None
        return volume, editor.GetSegmentationNode(), editor.GetSelectedSegmentID() or ""

    def skipProposal(self) -> None:
        """Drop the shown proposal without changing the mask."""
        if self.volumeSession is not None:
            self._requireVolume().skip()
            return
        worked = self._require()
        worked.call(worked.session.skip)

    def undo(self) -> bool:
        """Undo the last change of the slice (a step, or a hand edit), bit-exactly, with its
        click history. False if there is nothing to undo. A hand edit not sent yet is sent
        first, as the session's last change, so this undoes it. On the whole segment: the
        last change of the segment, bit-exactly in its own grid."""
        if self.volumeSession is not None:
            undone = self._requireVolume().undo()
        else:
            worked = self._require()
            undone = worked.call(worked.session.undo)
        if undone:
            self.log("Undone.")
        return undone

    def runSteps(self, count: int, decide: Optional[Decide] = None,
                 onStep: Optional[Callable[[Step], None]] = None,
                 onProposal: Optional[Callable[[Proposal], None]] = None) -> str:
        """Run up to ``count`` more steps (never past the episode's step limit) with the one run
        loop (`ibisagent.session.run_until_stop`). Points already on screen are applied first, as
        the first of them. ``decide(proposal)`` returns the clicks (default: the points on
        screen), ``[]`` to skip, None to stop. Returns the stop reason."""
        worked = self._requireEpisode()
        placed = self.onScreenClicks()
        if placed:
            step = self.acceptProposal(placed)
            count -= 1
            if onStep is not None:
                onStep(step)
        # A 3D session's MRML side is itself the session (its calls go through the agent call).
        session, call = (worked, None) if worked is self.volumeSession else (worked.session, worked.call)
        return run_until_stop(session, None, decide or (lambda _proposal: self.onScreenClicks()), onStep,
                              onProposal, more=max(0, count), call=call)

    def state(self) -> dict:
        """Where the episode stands: slice, steps, pending proposal, stop reason, answer,
        whether undo can change anything, and the statistics of the slice as it is now. On the
        whole segment (``workOn`` "volume"): steps, clicks, voxels and mm3 instead of the slice
        (`volume_session_logic.VolumeSessionLogic._volumeState`)."""
        if self.volumeSession is not None:
            return self._volumeState()
        worked = self._require()
        session = worked.session
        return {
            "workOn": SLICE,
            "view": worked.geometry.view,
            "slice_index": worked.geometry.slice_index,
            "shape": list(worked.geometry.shape),
            "steps": [step_record(step) for step in session.steps],
            "proposal": session.pending.to_dict() if session.pending else None,
            "stop_reason": session.stop_reason,
            "answer": session.answer,
            "can_undo": worked.can_undo,
            "statistics": segment_masks.mask_statistics(worked.labelmap.read(), worked.geometry),
        }

    def finish(self) -> dict:
        """End the episode: close the session, remove proposal points; the mask stays. Returns
        the final `state()`."""
        summary = self.state()
        if summary["workOn"] == VOLUME:
            self._endVolumeSession()
            self.log(f"Finished: {summary['mask_voxels']} voxels in the segment.")
            return summary
        self._endWorkedSlice()
        self.log(f"Finished: {summary['statistics']['pixels']} pixels on slice {summary['slice_index']}.")
        return summary

    def finishQuietly(self) -> bool:
        """`finish` for endings that must not fail (Cancel, another segment chosen): never
        raises. True when an episode was running and finished; False when none was, or when it
        could not be read any more (its nodes went away: it has ended all the same)."""
        if self.activeEpisode is None:
            return False
        try:
            self.finish()
        except Exception:  # noqa: BLE001 - it ends either way
            logger.debug("The episode ended without its final state.", exc_info=True)
            return False
        return True

    def _abandon(self) -> None:
        """Put the slice and its history back as they were at startEpisode, then end."""
        worked = self.workedSlice
        if worked is None:
            return
        end_recording(worked, keep=False, log=self.log)  # none of its steps is kept in the segment
        try:
            if worked.alive():
                worked.restore_initial()
        finally:
            self._endWorkedSlice()

    # -- recording for training ------------------------------------------------------------------
    def setTrainingRecord(self, folder: Optional[str], source: str = "console") -> None:
        """Record for training into ``folder`` (a folder on this computer, created if needed), or
        stop recording (None or ""). Every step the user applies is written at once (accepted
        or edited proposals, the user's own clicks), with the exact image and mask the model was
        shown; a skipped proposal leaves no trace and an undone step is removed. Each episode's
        record is finished against the mask kept when the episode ends. ``source``: "panel" or
        "console", kept in each record. Nothing is ever sent anywhere.

        A running episode follows at once: its record so far is finished, and recording into
        the new folder (if any) starts from its current mask. Setting the same folder again
        changes nothing, and so does turning off what is off. Raises ValueError (one sentence)
        for a folder that cannot be used."""
        folder = str(folder or "").strip()
        current = self.trainingRecord
        if not folder and current is None:
            return
        if folder and current is not None and current.source == source and (
                os.path.abspath(os.path.expanduser(folder)) == current.folder):
            return
        record = TrainingRecord(folder, source) if folder else None
        worked = self.workedSlice
        if worked is not None:
            end_recording(worked, log=self.log)
        self.trainingRecord = record
        if record is None:
            self.log("Recording for training is off.")
            return
        self.log(f"Recording every applied step for training in {record.folder} "
                 f"({record.folder_steps} step(s) there so far).")
        if worked is not None:
            record.start_recording(worked, worked.client)

    @property
    def recordedSteps(self) -> int:
        """Steps recorded for training since recording was turned on (undone ones removed)."""
        return self.trainingRecord.recorded_steps if self.trainingRecord is not None else 0

    @property
    def recordFolderSteps(self) -> int:
        """Steps in the whole record folder (0 while recording is off)."""
        return self.trainingRecord.folder_steps if self.trainingRecord is not None else 0

    # -- in one go ----------------------------------------------------------------------------
    def continueMask(self, volumeNode, segmentationNode, segmentId, request: str = "", view="Red",
                     maxSteps: int = 20, decide: Optional[Decide] = None) -> dict:
        """Run the agent on the slice shown in ``view`` until it stops or ``maxSteps`` steps.

        ``decide(proposal)`` gets each `ibisagent.session.Proposal` and returns the clicks to
        apply (default: the proposed point as shown), ``[]`` to skip, or None to stop. An
        unreadable model answer ends the run (stop reason "unparseable") and keeps the steps so
        far. Any other failure restores the slice and its click history and raises. Returns
        `finish()`'s dict plus ``proposals`` (dicts).
        """
        self.startEpisode(volumeNode, segmentationNode, segmentId, request, view, maxSteps)
        worked = self.workedSlice
        try:
            run_until_stop(worked.session, maxSteps, decide or (lambda _proposal: self.onScreenClicks()),
                           call=worked.call)
            proposals = [proposal.to_dict() for proposal in worked.session.proposals]
            result = self.finish()
        except BaseException:
            self._abandon()
            raise
        result["proposals"] = proposals
        return result

    # -- files ------------------------------------------------------------------------------
    def saveSegment(self, segmentationNode, segmentId, path: str, referenceVolumeNode, overwrite: bool = True) -> List[str]:
        """Save one segment: .seg.nrrd, a labelmap (.nii.gz/.nii/.nrrd), or both when ``path``
        has neither ending. Never over a file the volume or the segmentation was loaded from;
        an existing file is replaced (atomically) only with ``overwrite``. Returns the files written."""
        inputs = export.node_files(referenceVolumeNode) + export.node_files(segmentationNode)
        files = export.save_segment(segmentationNode, segmentId, path, referenceVolumeNode, inputs, overwrite)
        self.log("Saved " + ", ".join(files))
        return files

    def runBatch(self, imageFiles: Sequence[str], maskFiles: Optional[Sequence[Optional[str]]] = None,
                 outputFolder: Optional[str] = None, request: str = "", view: str = "Red", maxSteps: int = 20,
                 sliceIndex: Optional[int] = None, decide: Optional[Decide] = None, overwrite: bool = False) -> List[dict]:
        """Run `continueMask` on each image file (optionally starting from a mask file) and write
        ``<case>.nii.gz`` and ``<case>.seg.nrrd`` into ``outputFolder``: by default a new folder
        beside the first image (``ibisagent-batch``, ``ibisagent-batch-2``...). The folder may
        not be one the images or masks are in; it is checked before any case runs (writable,
        no earlier batch there unless ``overwrite``, none of the user's files named like an
        output) and only ever holds what the batch wrote (`batch_io.batch_folder`).

        The slice is ``sliceIndex`` along the ``view``'s normal (default: the slice with the
        most starting-mask voxels, else the middle slice). Files are loaded into the current
        scene, worked on with a private slice node, and removed again. A failing case (missing
        or damaged file, mask on another grid, a tool failure) is reported in its dict
        (``error``) and the batch goes on; each finished case's two files appear together.
        """
        from .batch_io import BatchCase, batch_folder

        if maskFiles is not None and len(maskFiles) != len(imageFiles):
            raise ValueError(f"Got {len(imageFiles)} image files but {len(maskFiles)} mask files.")
        folder = batch_folder(imageFiles, maskFiles, outputFolder, overwrite)
        self.log(f"Writing the results to {folder.folder}")
        results = []
        for index, image_file in enumerate(imageFiles):
            mask_file = maskFiles[index] if maskFiles is not None else None
            self.log(f"[{index + 1}/{len(imageFiles)}] {image_file}")
            case = None
            try:
                case = BatchCase(image_file, mask_file, view, sliceIndex)
                result = self.continueMask(case.volume, case.segmentation, case.segment_id, request,
                                           case.slice_node, maxSteps, decide)
                result["files"] = case.save(folder)
            except Exception as error:  # noqa: BLE001 - one bad case must not stop the batch
                self.log(f"{image_file}: {error}")
                result = {"error": str(error) or type(error).__name__}
            finally:
                if case is not None:
                    case.remove()
            result["image"] = image_file
            results.append(result)
        folder.finish(remove_stale=False)
        return results
