"""Propagating a segment through the slices of a volume, the agent checking every slice.

The MRML side of ``ibisagent.volume_episode.VolumeEpisode``: the engine decides which slice
comes next, carries the mask and runs the agent's loop; this module gives it the volume's slices
(one window for the whole volume) and writes each slice it keeps into the segment, in the
segment's own grid (`slice_labelmap.SliceLabelmap`), with the slice's clicks in the segment's
click history (so each slice shows its own accepted clicks when worked on later).

`SegmentPropagation` is one propagation. It remembers every slice it touches as it was before
(the `SliceLabelmap` baseline) and the history tag, so `SegmentPropagation.restore` puts the
segment back bit-exactly: one propagation is one undo step. Only slices the propagation reached
inside its range change. Two ways to drive it:

- run through (`run`): every slice in turn; ``should_cancel`` is asked between slices (and a
  wait the user cancels ends it too): the slices done so far stay. Any other failure restores
  the segment as it was and raises;
- review (`open_next`, then the usual worked-slice flow, then `finish_current` or `stop_here`):
  each slice opens as a `worked_slice.WorkedSlice` with the carried mask written in, so its
  proposals, edits and undo work exactly as for "Continue my mask".

`PropagationLogic` is the part of `IBISAgentLogic` that drives it from the console and the
panel (`propagate`, `startPropagation`, `nextPropagatedSlice`, `stopPropagationHere`,
`finishPropagation`, `undoPropagation`).

Directions follow the view: "up" is the way the view's slice offset increases (Page Up in
Slicer); ``first``/``last`` are slice indices along the view's normal axis of the volume.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional

import numpy as np

from ibisagent.errors import Cancelled

from . import proposal_markups, segment_masks
from .agent_sessions import close_quietly
from .slice_geometry import SliceGeometry, display_window, find_slice_node, slice_geometry, vtk_matrix_to_numpy
from .slice_labelmap import SliceLabelmap
from .worked_slice import WorkedSlice, step_record

#: call(what, function) -> function's result; raises AgentStepError.
AgentCall = Callable[[str, Callable[[], object]], object]


def display_stack(array_kji: np.ndarray, geometry: SliceGeometry) -> np.ndarray:
    """Every slice along ``geometry``'s normal axis as [index, row, col(, component)], each in
    display order (``stack[k]`` equals the slice ``geometry`` with slice_index k extracts). A
    view of ``array_kji``, not a copy."""
    array = np.asarray(array_kji)
    ijk = array.transpose((2, 1, 0) + tuple(range(3, array.ndim)))
    stack = ijk.transpose((geometry.normal_axis, geometry.row_axis, geometry.col_axis) + tuple(range(3, array.ndim)))
    if geometry.col_sign < 0:
        stack = stack[:, :, ::-1]
    if geometry.row_sign > 0:
        stack = stack[:, ::-1, :]
    return stack


def volume_slices(volume_node, geometry: SliceGeometry):
    """The volume's slices along ``geometry``'s normal as `ibisagent.volume_slices.RGBSlices`,
    through the display node's window (else one percentile window for the whole volume). The
    voxels are copied once, so the worker thread never reads a live MRML array."""
    from slicer.util import arrayFromVolume

    from ibisagent.volume_slices import RGBSlices

    array = np.array(arrayFromVolume(volume_node), copy=True)
    window = display_window(volume_node) if array.ndim == 3 else None
    return RGBSlices(display_stack(array, geometry), window)


def offset_step(geometry: SliceGeometry, scene=None) -> int:
    """+1 when raising the view's slice offset raises the slice index, else -1."""
    slice_node = find_slice_node(geometry.view, scene)
    normal = vtk_matrix_to_numpy(slice_node.GetSliceToRAS())[:3, 2]
    return 1 if float(np.dot(geometry.ijk_to_ras[:3, geometry.normal_axis], normal)) > 0 else -1


def outcome_record(outcome, written: bool) -> dict:
    """One slice's result as the console and the panel show it (JSON-ready)."""
    return {
        "index": outcome.index, "neighbour": outcome.neighbour, "direction": outcome.direction,
        "start_pixels": outcome.start_pixels, "mask_pixels": outcome.mask_pixels, "kept": outcome.kept,
        "written": written, "end": outcome.end, "stop_reason": outcome.stop_reason, "answer": outcome.answer,
        "faded": outcome.faded, "steps": [step_record(step) for step in outcome.steps],
        "seconds": round(outcome.seconds, 4),
    }


class SegmentPropagation:
    """One propagation of ``segment_id`` from the slice ``geometry`` (see the module docstring).
    ``episode``: the `VolumeEpisode` over this volume's slices along ``geometry``'s normal, with
    "up" meaning increasing slice index. MRML is touched on the calling thread only."""

    def __init__(self, volume, segmentation, segment_id: str, geometry: SliceGeometry, episode, call: AgentCall,
                 log: Callable[[str], None] = lambda message: None, client=None) -> None:
        self.volume = volume
        self.segmentation = segmentation
        self.segment_id = segment_id
        self.geometry = geometry
        self.episode = episode
        self.client = client
        self._call = call
        self._log = log
        self.initial_history = proposal_markups.read_history(segmentation, segment_id)
        self._labelmaps: Dict[int, SliceLabelmap] = {}
        self.records: List[dict] = []
        self.cancelled = False
        self.worked: Optional[WorkedSlice] = None
        self.closed = False
        segment_masks.save_scene_undo_state(segmentation)  # Slicer's Edit > Undo: the whole propagation

    # -- slices ---------------------------------------------------------------------------------
    def geometry_of(self, index: int) -> SliceGeometry:
        return dataclasses.replace(self.geometry, slice_index=int(index))

    def _labelmap(self, index: int) -> SliceLabelmap:
        """The slice's labelmap, bound before its first change (its baseline is the slice as it
        was before the propagation)."""
        if index not in self._labelmaps:
            self._labelmaps[index] = SliceLabelmap(self.segmentation, self.segment_id, self.volume,
                                                   self.geometry_of(index))
        return self._labelmaps[index]

    @property
    def touched(self) -> List[int]:
        """The slices this propagation has changed at some point, in order."""
        return sorted(self._labelmaps)

    def _keep(self, outcome) -> None:
        """Write a kept slice and its clicks; note every slice's outcome."""
        if outcome.kept:
            self._labelmap(outcome.index).write(self.episode.masks[outcome.index])
            self._add_history(outcome.index, outcome.steps)
        self.records.append(outcome_record(outcome, outcome.kept))

    def _add_history(self, index: int, steps) -> None:
        if not steps:
            return
        history = proposal_markups.read_history(self.segmentation, self.segment_id)
        geometry = self.geometry_of(index)
        for step in steps:
            history.append(proposal_markups.history_entry(geometry, step.clicks, len(history) + 1,
                                                          step.proposal.reasoning if step.proposal else ""))
        proposal_markups.write_history(self.segmentation, self.segment_id, history)

    # -- run through --------------------------------------------------------------------------
    def run(self, decide=None, on_slice: Optional[Callable[[dict], None]] = None,
            should_cancel: Optional[Callable[[], bool]] = None) -> List[dict]:
        """Every slice in turn (see the module docstring). ``decide`` runs on the agent's thread
        and must not touch MRML; ``on_slice`` gets each slice's record on this thread."""
        should_cancel = should_cancel or (lambda: False)
        try:
            while True:
                if should_cancel():
                    self.cancelled = True
                    self.episode.cancel()
                    break
                try:
                    outcome = self._call("Propagating to the next slice", lambda: self.episode.step_slice(decide))
                except Cancelled:  # the user cancelled the wait: keep what is written (the cancelled
                    self.cancelled = True  # call may still be running: leave the engine alone)
                    break
                if outcome is None:
                    break
                self._keep(outcome)
                if on_slice is not None:
                    on_slice(self.records[-1])
        except BaseException:
            self.restore()
            raise
        finally:
            self.close()
        if self.cancelled:
            self._log(f"Propagation cancelled; the {len(self.written)} slice(s) done so far stay.")
        return self.records

    @property
    def written(self) -> List[int]:
        return [record["index"] for record in self.records if record["written"]]

    # -- review -------------------------------------------------------------------------------
    def open_next(self) -> Optional[WorkedSlice]:
        """Carry into the next slice, write the carried mask there and open it as a worked
        slice; None when every front has ended."""
        session = self._call("Carrying the mask to the next slice", self.episode.next_slice)
        if session is None:
            return None
        index = self.episode.current_index
        geometry = self.geometry_of(index)
        try:
            segment_masks.save_scene_undo_state(self.segmentation)
            self._labelmap(index).write(session.mask)
            labelmap = SliceLabelmap(self.segmentation, self.segment_id, self.volume, geometry)
            self.worked = WorkedSlice(self.volume, self.segmentation, self.segment_id, geometry, labelmap, session,
                                      None, self._call, self._log)
        except BaseException:
            self._labelmap(index).write(self._labelmap(index).baseline)
            self.episode.stop_here()
            raise
        return self.worked

    def finish_current(self) -> dict:
        """Keep the open slice as it now stands (hand edits included) unless an end rule fires;
        a slice that is not kept goes back to how it was before the propagation."""
        worked = self._require_open()
        final = worked.labelmap.read()
        outcome = self._call("Checking the slice", lambda: self.episode.finish_slice(final))
        return self._close_worked(worked, outcome)

    def stop_here(self) -> dict:
        """The target ends at the open slice: put it back as it was; its front ends."""
        worked = self._require_open()
        return self._close_worked(worked, self.episode.stop_here())

    def _require_open(self) -> WorkedSlice:
        if self.worked is None:
            raise RuntimeError("No propagated slice is open; press Next slice first.")
        return self.worked

    def _close_worked(self, worked: WorkedSlice, outcome) -> dict:
        self.worked = None
        worked.close()
        if not outcome.kept:
            labelmap = self._labelmap(outcome.index)
            labelmap.write(labelmap.baseline)
            proposal_markups.write_history(self.segmentation, self.segment_id, worked.initial_history)
        self.records.append(outcome_record(outcome, outcome.kept))
        return self.records[-1]

    # -- undo and end ---------------------------------------------------------------------------
    def restore(self) -> None:
        """Every slice this propagation touched back to how it was, bit-exactly, and the click
        history too."""
        if self.worked is not None:
            self.worked.close()
            self.worked = None
        if not self.alive():
            return
        for index in self.touched:
            labelmap = self._labelmaps[index]
            labelmap.write(labelmap.baseline)
        proposal_markups.write_history(self.segmentation, self.segment_id, self.initial_history)

    def alive(self) -> bool:
        return segment_masks.nodes_alive(self.volume, self.segmentation, self.segment_id)

    def close(self) -> None:
        """Release the engine's stack and the client; the segment stays as it is."""
        if self.closed:
            return
        self.closed = True
        episode, client = self.episode, self.client
        close_quietly(episode, client)

    def summary(self) -> dict:
        return {
            "view": self.geometry.view, "start": self.geometry.slice_index, "slices": list(self.records),
            "written": self.written, "ends": [end.to_dict() for end in self.episode.ends],
            "clicks": sum(len(step["clicks"]) for record in self.records for step in record["steps"]),
            "cancelled": self.cancelled,
        }


class PropagationLogic:
    """The propagation methods of `IBISAgentLogic` (a mixin: it uses the logic's engine
    settings, its agent calls, its log and its worked slice)."""

    propagation: Optional[SegmentPropagation] = None
    #: The last finished propagation, for `undoPropagation`.
    lastPropagation: Optional[SegmentPropagation] = None

    def _openPropagation(self, volumeNode, segmentationNode, segmentId, view, direction, first, last, maxSlices,
                         stepsPerSlice, request, minFraction, propagation) -> SegmentPropagation:
        from ibisagent.volume_episode import DIRECTIONS, VolumeEpisode

        self._endWorkedSlice()
        self._endPropagation()
        self._endVolumeSession()
        self._checkAgent()
        if volumeNode is None or volumeNode.GetScene() is None:
            raise ValueError("No volume is selected (or it was removed); choose a volume first.")
        if direction not in DIRECTIONS:
            raise ValueError(f"Unknown direction {direction!r}; choose one of: {', '.join(DIRECTIONS)}.")
        segment_masks.check_segment(segmentationNode, segmentId)
        geometry = slice_geometry(volumeNode, view, volumeNode.GetScene())
        start = SliceLabelmap(segmentationNode, segmentId, volumeNode, geometry).read()
        if not start.any():
            raise ValueError(f"The segment is empty on slice {geometry.slice_index} of the {geometry.view} view; draw "
                             "the target there (or use Continue my mask) before propagating.")
        step = offset_step(geometry, volumeNode.GetScene())
        engine_direction = direction if step > 0 or direction == "both" else {"up": "down", "down": "up"}[direction]
        slices = volume_slices(volumeNode, geometry)
        client, options = None, {}
        if not self.local:
            from ibisagent.client import AgentClient

            client = AgentClient(self.serverUrl, self.token, self.timeout)
            options["open_session"] = lambda index, image, mask, limit: client.open_session(
                image, request=request, mask=mask, max_steps=limit)
            segmenter = policy = None
        else:
            engine = self.localEngine()
            segmenter, policy = engine.segmenter, engine.policy
        try:
            episode = VolumeEpisode(slices, segmenter, policy, {geometry.slice_index: start}, request=request,
                                    direction=engine_direction, first=first, last=last, max_slices=maxSlices,
                                    steps_per_slice=stepsPerSlice, min_fraction=minFraction,
                                    propagation=propagation, **options)
        except BaseException:
            close_quietly(client)
            raise
        self.log(f"Propagating slice {geometry.slice_index} of the {geometry.view} view {direction}, at most "
                 f"{stepsPerSlice} agent step(s) per slice.")
        return SegmentPropagation(volumeNode, segmentationNode, segmentId, geometry, episode, self._agent, self.log,
                                  client)

    def propagate(self, volumeNode, segmentationNode, segmentId, view="Red", direction: str = "both",
                  first: Optional[int] = None, last: Optional[int] = None, maxSlices: Optional[int] = None,
                  stepsPerSlice: int = 3, request: str = "", minFraction: float = 0.2, propagation: str = "auto",
                  decide=None, onSlice: Optional[Callable[[dict], None]] = None,
                  shouldCancel: Optional[Callable[[], bool]] = None) -> dict:
        """Propagate the segment's mask on the slice shown in ``view`` through the volume, the
        agent refining every slice (up to ``stepsPerSlice`` steps, every proposal accepted
        unless ``decide`` says otherwise), until the target ends, the range ``first``..``last``
        (slice indices along the view's normal) or ``maxSlices`` each way.

        Returns ``slices`` (one record per slice reached: index, carried and final pixels,
        steps, the end rule that fired there, whether it was written), ``written``, ``ends``
        (where and why each direction stopped), ``clicks`` and ``cancelled``. Cancelling
        (``shouldCancel()`` true) keeps the slices done so far; any failure puts the segment
        back as it was and raises. `undoPropagation` takes the whole propagation back.
        """
        run = self._openPropagation(volumeNode, segmentationNode, segmentId, view, direction, first, last, maxSlices,
                                    stepsPerSlice, request, minFraction, propagation)
        self.propagating = True
        try:
            run.run(decide, onSlice, shouldCancel)
        finally:
            self.propagating = False
        self.lastPropagation = run
        summary = run.summary()
        self.log(f"Propagation: {len(summary['written'])} slice(s) written; "
                 + "; ".join(f"{e['direction']}: {e['reason']} at {e['at']}" for e in summary["ends"]) + ".")
        return summary

    # -- review slice by slice --------------------------------------------------------------------
    def startPropagation(self, volumeNode, segmentationNode, segmentId, view="Red", direction: str = "both",
                         first: Optional[int] = None, last: Optional[int] = None, maxSlices: Optional[int] = None,
                         stepsPerSlice: int = 3, request: str = "", minFraction: float = 0.2,
                         propagation: str = "auto") -> Optional[dict]:
        """Review mode: like `propagate`, but stop on every slice. Opens the first propagated
        slice as ``logic.workedSlice`` (propose, accept, edit, undo as for Continue my mask)
        and returns `nextPropagatedSlice`'s dict."""
        self.propagation = self._openPropagation(volumeNode, segmentationNode, segmentId, view, direction, first, last,
                                                 maxSlices, stepsPerSlice, request, minFraction, propagation)
        self.lastPropagation = self.propagation
        return self._openNextSlice()

    def nextPropagatedSlice(self) -> Optional[dict]:
        """Keep the open slice as it stands (unless an end rule fires) and open the next one;
        returns {"finished": the record of the slice just closed, "slice": index of the new
        slice, "state": `state()`} or, when every direction has ended, None (the propagation is
        then over)."""
        run = self._requirePropagation()
        worked = run.worked
        finished = run.finish_current() if worked is not None else None
        self._releaseWorkedSlice(worked)
        opened = self._openNextSlice()
        if opened is not None:
            opened["finished"] = finished
        return opened

    def stopPropagationHere(self) -> Optional[dict]:
        """The target ends on the open slice: put it back as it was, end that direction, and
        open the next slice of the other direction (None when there is none)."""
        run = self._requirePropagation()
        worked = run.worked
        if worked is not None:
            run.stop_here()
        self._releaseWorkedSlice(worked)
        return self._openNextSlice()

    def finishPropagation(self) -> dict:
        """End the review: the open slice is kept as it stands (unless an end rule fires), the
        directions not yet ended stop there. Returns `propagate`'s dict."""
        run = self._requirePropagation()
        worked = run.worked
        if worked is not None:
            run.finish_current()
        self._releaseWorkedSlice(worked)
        if not run.episode.done:
            run.episode.cancel()
        return self._endPropagation()

    def undoPropagation(self) -> bool:
        """Put every slice the last propagation touched, and the click history, back exactly as
        they were before it; False when there is nothing to undo."""
        run = self.propagation or self.lastPropagation
        if run is None or not run.touched:
            return False
        worked = run.worked
        run.restore()  # an open slice is closed without being kept
        if run is self.propagation:
            self._releaseWorkedSlice(worked)
            self._endPropagation()
        self.lastPropagation = None
        self.log(f"Propagation undone: {len(run.touched)} slice(s) back as they were.")
        return True

    def lastPropagationSummary(self) -> Optional[dict]:
        """`propagate`'s dict for the propagation under review, else the last one, or None."""
        run = self.propagation or self.lastPropagation
        return None if run is None else run.summary()

    def propagationState(self) -> Optional[dict]:
        """The review's progress (`propagate`'s dict plus the open slice), or None."""
        run = self.propagation
        if run is None:
            return None
        summary = run.summary()
        summary["open"] = run.episode.current_index
        return summary

    def _openNextSlice(self) -> Optional[dict]:
        run = self._requirePropagation()
        try:
            worked = run.open_next()
        except BaseException:
            self._endPropagation()
            raise
        if worked is None:
            self._endPropagation()
            return None
        self.workedSlice = worked
        worked.watch(self._onWorkedSliceGone)
        from .slice_geometry import set_view_to_slice

        set_view_to_slice(worked.geometry, scene=self.workedSlice.volume.GetScene())
        faded = run.episode.current_faded
        self.log(f"Slice {worked.geometry.slice_index}: {int(worked.session.mask.sum())} pixels carried from its "
                 "neighbour."
                 + (" It no longer stands out as the target did on the start slice: unless you change it, the"
                    " propagation ends here in this direction." if faded else ""))
        return {"slice": worked.geometry.slice_index, "faded": faded, "state": self.state()}

    def _releaseWorkedSlice(self, worked: Optional[WorkedSlice]) -> None:
        """The propagation closed its open slice ``worked``: it is no longer the logic's worked
        slice (its session was closed with the slice)."""
        if worked is not None and self.workedSlice is worked:
            self.workedSlice = None
            worked.unwatch()

    def _requirePropagation(self) -> SegmentPropagation:
        run = self.propagation
        if run is None:
            raise RuntimeError("No propagation is under review; press Propagate (review each slice) first.")
        if not run.alive():
            self._endPropagation()
            raise segment_masks.SegmentError("The volume, segmentation or segment of the propagation was removed.")
        if run.worked is not None and self.workedSlice is not run.worked:
            run.finish_current()  # another episode took over: the slice stays as the user left it
        return run

    def _endPropagation(self) -> Optional[dict]:
        run, self.propagation = self.propagation, None
        if run is None:
            return None
        if run.worked is not None and run.alive():
            try:
                run.finish_current()
            except Exception:  # noqa: BLE001 - ending must not fail; the slice stays as it is
                pass
        run.close()
        return run.summary()
