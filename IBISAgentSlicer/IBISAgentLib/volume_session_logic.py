"""3D "Continue my mask" in Slicer: one agent session on the whole segment, clicks in any view.

The MRML side of ``ibisagent.volume_session.VolumeSession``. The session owns the 3D mask, the
clicks, the steps and the undo stack; `WorkedVolume` makes MRML follow it:

- the volume is seen through the Red, Yellow and Green views (each aligned view is one plane of
  the session's `ibisagent.volume_views.VolumeViews`, laid out by `slice_geometry`, the one
  owner of coordinate conversion), so the agent's slices look exactly as the views show them;
- every change of the session's mask is written into the segment, in the segment's own grid
  (`segment_volume.SegmentVolume`): only the voxels that changed, never another segment;
- a proposal appears as an editable point on its slice, and that view moves to the slice;
  points the user drags, flips, deletes or adds, in any view, are read back as voxels (RAS ->
  IJK through `slice_geometry`) and belong to the one session; applied clicks show as locked
  points and are added to the segment's click history tag;
- a hand edit of the segment (Segment Editor) is noticed before each agent call and sent as the
  session's `replace_mask`, one entry of the same undo stack.

`VolumeSessionLogic` is the part of `IBISAgentLogic` that drives it (a mixin, as
`propagation.PropagationLogic`): `startVolumeSession` opens it, the logic's step methods
(the same for a slice and for the whole segment, so the panel's buttons and shortcuts mean the
same in both) act on it, and `continueVolume` runs it until the agent stops. The 3D session runs
in this process (the local engine); with an agent server it is refused (`actions.REMOTE_3D`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ibisagent.clicks import AGENT, USER_MOVED
from ibisagent.errors import InvalidOutputError
from ibisagent.session import Decide, EpisodeResult, Step, run_until_stop

from . import proposal_markups, segment_masks
from .actions import VOLUME
from .agent_sessions import AgentStepError, close_quietly
from .segment_volume import SegmentVolume
from .slice_geometry import (VIEW_NAMES, SliceGeometry, SliceGeometryError, display_window, set_view_to_slice,
                             slice_geometry)
from .worked_slice import unwatch_nodes, watch_nodes

#: call(what, function) -> function's result; raises AgentStepError.
AgentCall = Callable[[str, Callable[[], object]], object]


def view_geometries(volume, scene=None, names: Sequence[str] = VIEW_NAMES, log=lambda message: None
                    ) -> Dict[str, SliceGeometry]:
    """The slice geometry of every standard view aligned with ``volume`` (a view scrolled off the
    volume counts, at its nearest slice); oblique or missing views are left out, saying so."""
    geometries = {}
    for name in names:
        try:
            geometries[name] = slice_geometry(volume, name, scene, clamp=True)
        except SliceGeometryError as error:
            log(f"The {name} view is not used for 3D clicks: {error}")
    if not geometries:
        raise SliceGeometryError("No slice view is aligned with the volume; reset a view's orientation to Axial, "
                                 "Sagittal or Coronal and try again.")
    return geometries


def volume_views(geometries: Dict[str, SliceGeometry]):
    """The `ibisagent.volume_views.VolumeViews` of the views, one plane per view name."""
    from ibisagent.volume_views import VolumeViews

    first = next(iter(geometries.values()))
    return VolumeViews(tuple(reversed(first.dimensions)), {name: g.plane_axes() for name, g in geometries.items()})


def history_entry(step: Step, number: int, geometries: Dict[str, SliceGeometry]) -> dict:
    """One applied 3D step as stored in the segment's click history: each click with its view,
    slice, pixel, IJK and RAS; ``slice`` is the first click's slice (as a 2D entry has)."""
    entry = {"step": int(number), "volume": True, "reasoning": step.proposal.reasoning if step.proposal else "",
             "clicks": []}
    for click in step.clicks:
        geometry = dataclasses.replace(geometries[click.plane], slice_index=click.index)
        entry.setdefault("slice", geometry.to_dict())
        ijk = (click.i, click.j, click.k)
        entry["clicks"].append({**click.to_dict(), "ijk": list(ijk),
                                "ras": [round(float(v), 4) for v in geometry.ijk_to_ras_point(ijk)]})
    return entry


class WorkedVolume:
    """``session`` (a `VolumeSession` started from ``segment.read()``) bound to the segment; see
    the module docstring. Implements ``ibisagent.session.Session`` (the run loop drives it)."""

    def __init__(self, volume, segmentation, segment_id: str, geometries: Dict[str, SliceGeometry],
                 segment: SegmentVolume, session, call: AgentCall, log: Callable[[str], None] = lambda m: None) -> None:
        self.volume = volume
        self.segmentation = segmentation
        self.segment_id = segment_id
        self.geometries = geometries
        self.segment = segment
        self.session = session
        self._call = call
        self._log = log
        self.initial_history = proposal_markups.read_history(segmentation, segment_id)
        self.markups = proposal_markups.ProposalMarkups(next(iter(geometries.values())), volume.GetScene())
        self.markups.clear_proposals()
        self._observed: List[tuple] = []
        self._show_accepted()

    # -- the session's state (read, never copied) --------------------------------------------------
    @property
    def max_steps(self) -> int:
        return self.session.max_steps

    @property
    def mask(self) -> np.ndarray:
        return self.session.mask

    @property
    def steps(self) -> List[Step]:
        return self.session.steps

    @property
    def proposals(self):
        return self.session.proposals

    @property
    def pending(self):
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
        return self.session.can_undo or self.has_hand_edit()

    def geometry_of(self, plane: str, index: int) -> SliceGeometry:
        return dataclasses.replace(self.geometries[plane], slice_index=int(index))

    # -- the session interface -------------------------------------------------------------------
    def propose(self):
        """Ask for the next proposal; show its click on its slice and move that view there."""
        self.sync_hand_edit()
        proposal = self._call("Asking the agent where to look and what to do", self.session.propose)
        self.markups.clear_proposals()
        if proposal.voxel is not None:
            geometry = self.geometry_of(proposal.plane, proposal.index)
            proposal_markups.ProposalMarkups(geometry, self.volume.GetScene()).show_proposal(proposal.click)
            set_view_to_slice(geometry, proposal.plane, self.volume.GetScene())
        return proposal

    def apply(self, clicks: Sequence) -> Step:
        """Apply ``clicks`` and write the new mask into the segment; on any failure the segment
        and the session are as they were."""
        clicks = list(clicks)
        self.sync_hand_edit()
        step = self._call("Applying the clicks", lambda: self.session.apply(clicks))
        try:
            self._write()
        except Exception as error:
            try:  # the segment put its slices back; the session follows
                self._call("Taking the step back", self.session.undo)
            except AgentStepError:
                pass  # the segment is unchanged; report the write error
            raise AgentStepError("Writing the new mask into the segment", error) from error
        self.markups.clear_proposals()
        return step

    def skip(self) -> None:
        self._call("Skipping the proposal", self.session.skip)
        self.markups.clear_proposals()

    def undo(self) -> bool:
        """Undo the last change (a hand edit not sent yet, else the session's last step or mask
        replacement); the segment and its history follow bit-exactly."""
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
        """Stop watching and remove the proposal points; the caller closes the session."""
        self.unwatch()
        self.markups.clear_proposals_if_present()

    # -- points on screen ------------------------------------------------------------------------
    def read_clicks(self):
        """The proposal points as they now stand, in any view, as `VolumeClick` s with their
        origin: a point stays on the proposal's slice when it is there, else it belongs to the
        view whose slice shows it (else to the proposal's view)."""
        from ibisagent.volume_session import VolumeClick

        node, clicks = self.markups.proposals, []
        views, pending = self.session.views, self.session.pending
        first = next(iter(self.geometries.values()))
        position = [0.0, 0.0, 0.0]
        for index in range(node.GetNumberOfControlPoints()):
            node.GetNthControlPointPosition(index, position)
            voxel = first.ras_to_voxel(position)
            positive = bool(node.GetNthControlPointSelected(index))
            description = node.GetNthControlPointDescription(index)
            plane = self._plane_of(voxel, pending)
            where, x, y = views.to_slice(plane, voxel)
            on_proposal_slice = pending is not None and (plane, where) == (pending.plane, pending.index)
            origin = proposal_markups.point_origin(description, x, y, positive)
            if origin == AGENT and not on_proposal_slice:
                origin = USER_MOVED
            clicks.append(VolumeClick(plane, where, x, y, *voxel, positive, origin))
        return clicks

    def _plane_of(self, voxel, pending) -> str:
        views = self.session.views
        if pending is not None and views.to_slice(pending.plane, voxel)[0] == pending.index:
            return pending.plane
        for name in self.geometries:
            try:
                shown = slice_geometry(self.volume, name, self.volume.GetScene()).slice_index
            except SliceGeometryError:
                continue
            if views.to_slice(name, voxel)[0] == shown:
                return name
        return pending.plane if pending is not None else next(iter(self.geometries))

    # -- MRML following the session ----------------------------------------------------------------
    def has_hand_edit(self) -> bool:
        return self.segment.edited() and not np.array_equal(self.segment.read(), self.session.mask)

    def sync_hand_edit(self) -> bool:
        """Send a hand edit of the segment to the session (as replace_mask); True if there was one."""
        if not self.segment.edited():
            return False
        current = self.segment.read()
        self.segment.accept(current)
        if np.array_equal(current, self.session.mask):
            return False
        self._log("The segment was edited by hand; the agent continues from the edited mask.")
        self._call("Sending the edited mask", lambda: self.session.replace_mask(current))
        self._write()
        return True

    def history(self) -> List[dict]:
        start = len(self.initial_history)
        return self.initial_history + [history_entry(step, start + number, self.geometries)
                                       for number, step in enumerate(self.steps, 1)]

    def _write(self) -> None:
        if not np.array_equal(self.segment.written, self.session.mask):
            segment_masks.save_scene_undo_state(self.segmentation)
            self.segment.write(self.session.mask)
        history = self.history()
        if history != proposal_markups.read_history(self.segmentation, self.segment_id):
            proposal_markups.write_history(self.segmentation, self.segment_id, history)
        self._show_accepted()

    def _show_accepted(self) -> None:
        points = []
        for step in self.steps:
            for click in step.clicks:
                ijk = (click.i, click.j, click.k)
                points.append((self.geometry_of(click.plane, click.index).ijk_to_ras_point(ijk), click.positive,
                               click.origin))
        self.markups.show_accepted_at(points)

    def restore_initial(self) -> None:
        """The segment (exactly, in its own grid) and its history back as they were at the start."""
        self.segment.restore()
        proposal_markups.write_history(self.segmentation, self.segment_id, self.initial_history)
        self.markups.clear_proposals()
        self.markups.show_accepted_at([])

    # -- life cycle ------------------------------------------------------------------------------------
    def alive(self) -> bool:
        return segment_masks.nodes_alive(self.volume, self.segmentation, self.segment_id)

    def watch(self, on_gone: Callable[[], None]) -> None:
        self._observed = watch_nodes(self.volume, self.segmentation, self.alive, self.unwatch, on_gone)

    def unwatch(self) -> None:
        unwatch_nodes(self._observed)
        self._observed = []


class VolumeSessionLogic:
    """The 3D session part of `IBISAgentLogic` (a mixin: it uses the logic's engine settings,
    its agent calls and its log; see the module docstring). `startVolumeSession` opens the
    session (the panel: `IBISAgentLogic.startEpisode` with ``workOn="volume"``); the logic's own
    step methods (``proposeNext``, ``acceptProposal``, ``skipProposal``, ``undo``,
    ``flipProposal``, ``startPlacingPoint``, ``runSteps``, ``state``, ``finish``) then act on it
    through the ``_volume...`` methods here, so 2D and 3D share every button, shortcut and
    console call; `continueVolume` runs it until the agent stops."""

    volumeSession: Optional[WorkedVolume] = None
    #: The 3D tool: a registry name (``ibisagent.segmenters.VOLUME_SEGMENTERS``) or a built tool.
    volumeTool: object = None
    volumeToolOptions: Optional[dict] = None

    def useVolumeTool(self, tool=None, options: Optional[dict] = None) -> None:
        """The 3D tool for the next 3D sessions: a registry name (None: the default,
        ``ibisagent.segmenters.DEFAULT_VOLUME_SEGMENTER``; a slice-wise tool such as ``slice2d``
        works with the logic's one 2D tool) or a built `VolumeSegmenter`."""
        self.volumeTool, self.volumeToolOptions = tool, dict(options or {})

    def _buildVolumeTool(self):
        """The 3D tool of a new session, built by ``ibisagent.engine.build_volume_tool`` (the
        one place tools are built) around the local engine's 2D tool; a built tool as given."""
        from ibisagent.engine import SLICE_WISE_TOOLS, build_volume_tool

        tool = self.volumeTool
        if tool is not None and not isinstance(tool, str):
            return tool
        if tool in SLICE_WISE_TOOLS:
            return build_volume_tool(tool, self.volumeToolOptions, self.localEngine().segmenter)
        return build_volume_tool(tool, self.volumeToolOptions)

    def startVolumeSession(self, volumeNode, segmentationNode, segmentId, request: str = "", view="Red",
                           maxSteps: int = 20, looks: Optional[int] = None, confirm: bool = True) -> dict:
        """Open a 3D session on the whole segment, starting from its mask (or from nothing), with
        the agent looking first at the slice shown in ``view``. ``looks`` (default 3) and ``confirm``:
        see ``ibisagent.volume_session.VolumeSession``. Ends any other episode first. Changes no
        voxel. Returns ``state()``."""
        from ibisagent.volume_session import DEFAULT_LOOKS, VolumeSession
        from slicer.util import arrayFromVolume

        self._endWorkedSlice()
        self._endPropagation()
        self._endVolumeSession()
        self._checkAgent()
        problem = self._volumeProblem(volumeNode)  # another agent than the local one, a colour volume
        if problem:
            raise ValueError(problem)
        if volumeNode is None or volumeNode.GetScene() is None:
            raise ValueError("No volume is selected (or it was removed); choose a volume first.")
        segment_masks.check_segment(segmentationNode, segmentId)
        scene = volumeNode.GetScene()
        geometries = view_geometries(volumeNode, scene, log=self.log)
        views = volume_views(geometries)
        array = np.array(arrayFromVolume(volumeNode), copy=True)
        segment = SegmentVolume(segmentationNode, segmentId, volumeNode, next(iter(geometries.values())))
        start = segment.baseline  # read once, as the segment's state at the start
        spacing = tuple(float(s) for s in reversed(volumeNode.GetSpacing()))
        hint = None
        name = view if isinstance(view, str) else (view.GetLayoutName() or view.GetName())
        if name in geometries:
            hint = (name, geometries[name].slice_index)
        window = display_window(volumeNode)

        def open_session():
            return VolumeSession(array, views, self._buildVolumeTool(), self.localEngine().policy, request,
                                 start if start.any() else None, spacing=spacing, window=window, max_steps=maxSteps,
                                 looks=looks or DEFAULT_LOOKS, hint=hint, confirm=confirm)

        session = self._agent("Opening the 3D session", open_session)
        worked = WorkedVolume(volumeNode, segmentationNode, segmentId, geometries, segment, session, self._agent,
                              self.log)
        worked.watch(self._onVolumeSessionGone)
        self.volumeSession = worked
        self.log(f"3D session on the whole segment ({int(start.sum())} voxels), clicks in the "
                 f"{', '.join(geometries)} view(s); tool {session.segmenter.name}.")
        if getattr(self, "trainingRecord", None) is not None:
            self.log("Record for training keeps slice episodes only; the steps of this 3D session are not recorded.")
        return self._volumeState()

    def _onVolumeSessionGone(self) -> None:
        reason = ("The volume, segmentation or segment of the 3D session was removed (or the scene closed); the "
                  "session ended.")
        self.log(reason)
        self._endVolumeSession()
        if getattr(self, "episodeEndedCallback", None) is not None:
            self.episodeEndedCallback(reason)

    def _endVolumeSession(self) -> None:
        """End the 3D session without reading MRML; never raises."""
        worked, self.volumeSession = self.volumeSession, None
        if worked is not None:
            worked.close()
            close_quietly(worked.session)

    def _requireVolume(self) -> WorkedVolume:
        worked = self.volumeSession
        if worked is None:
            raise RuntimeError("No 3D session is running; call startVolumeSession(...) first.")
        if not worked.alive():
            self._endVolumeSession()
            raise segment_masks.SegmentError("The volume, segmentation or segment of the 3D session was removed; "
                                             "start again.")
        return worked

    # -- the steps (called by the logic's step methods while a 3D session runs) --------------------
    def _proposeVolume(self):
        """The agent chooses where to look and what to do; the proposal appears as an editable
        point on its slice and that view moves there. An unreadable model answer raises
        AgentStepError (kind "invalid-output")."""
        proposal = self._requireVolume().propose()
        if proposal.error:
            self.log(f"The model's answer could not be read: {proposal.error}")
            raise AgentStepError("The model's answer could not be read", InvalidOutputError(proposal.error, proposal))
        where = f" on {proposal.plane} slice {proposal.index}" if proposal.voxel is not None else ""
        self.log(f"Agent{where}: {proposal.action.to_text()} - {proposal.reasoning.strip()}")
        return proposal

    def _acceptVolume(self, clicks: Optional[Sequence] = None) -> Step:
        """Apply the points as they stand on screen, in any view (or ``clicks``: `VolumeClick` s,
        `VoxelClick` s or 2D clicks on the proposal's slice) and write the new 3D mask into the
        segment; on failure the segment is unchanged."""
        worked = self._requireVolume()
        clicks = list(worked.read_clicks() if clicks is None else clicks)
        if not clicks:
            raise ValueError("There is no click to apply; place a point, or press Skip or Finish.")
        step = worked.apply(clicks)
        self.log(f"Step {len(worked.steps)}: {len(clicks)} click(s); {step.added} voxel(s) added, {step.removed} "
                 f"removed; the segment has {step.mask_pixels} voxels.")
        return step

    def _volumeState(self) -> dict:
        """The session's ``state`` (``ibisagent.volume_session.VolumeSession.state``) with
        ``steps`` as one record per step (as a slice episode's), plus ``workOn``, the views used
        and the segment's volume in mm3."""
        worked = self._requireVolume()
        state = worked.session.state()
        first = next(iter(worked.geometries.values()))
        voxel_mm3 = float(abs(np.linalg.det(first.ijk_to_ras[:3, :3])))
        state.update(workOn=VOLUME, can_undo=worked.can_undo, views=list(worked.geometries),
                     volume_mm3=state["mask_voxels"] * voxel_mm3, steps=[step.to_dict() for step in worked.steps])
        return state

    # -- in one go ---------------------------------------------------------------------------------
    def continueVolume(self, volumeNode, segmentationNode, segmentId, request: str = "", view="Red",
                       maxSteps: int = 20, decide: Optional[Decide] = None) -> dict:
        """Run the agent on the whole segment until it stops or ``maxSteps`` steps (the one run
        loop). ``decide(proposal)`` returns the clicks to apply (default: the points on screen),
        ``[]`` to skip, None to stop. Any failure puts the segment and its history back as they
        were and raises. Returns ``finish()``'s state plus ``proposals``."""
        self.startVolumeSession(volumeNode, segmentationNode, segmentId, request, view, maxSteps)
        worked = self.volumeSession
        try:
            run_until_stop(worked, maxSteps, decide or (lambda _proposal: worked.read_clicks()))
            proposals = [proposal.to_dict() for proposal in worked.proposals]
            state = self.finish()
        except BaseException:
            try:
                if worked.alive():
                    worked.restore_initial()
            finally:
                self._endVolumeSession()
            raise
        state["proposals"] = proposals
        return state
