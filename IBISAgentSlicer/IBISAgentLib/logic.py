"""IBISAgentLogic: "continue my mask" on one slice of a Slicer segment, step by step or in one go.

Usable from Slicer's Python console, from the module widget and in batch, with no Qt::

    logic = IBISAgentLogic()                       # in-process engine (heuristic + sitk)
    logic.connect("http://127.0.0.1:8765", token)  # or: an agent server
    result = logic.continueMask(volume, segmentation, segmentId, "segment the tumour", view="Red")

Step-wise (the widget): `startEpisode`, then repeatedly `proposeNext` (shows the proposal as a
markup point), the user edits points, `acceptProposal` (applies exactly the points on screen) or
`skipProposal`; `undo`; `finish`. `flipProposal` flips a proposed point; `pingServer` and
`serverInfo` check the agent.

Guarantees:
- Only the worked slice of the chosen segment changes (see `segment_masks.write_slice_mask`).
- Every agent call goes through ``self.callAgent(function)``; by default it runs inline. The
  widget replaces it with one that runs ``function`` on its worker thread and waits, so MRML is
  only touched by the thread that calls the logic.
- A failure in any step leaves the segment exactly as it was and raises `AgentStepError`
  (``kind`` says why, the message says what to do); input problems raise `SliceGeometryError` or
  `SegmentError`. `continueMask` is all-or-nothing: on failure the slice and its click history
  return to where they were before the call.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, List, Optional, Sequence

import numpy as np

from ibisagent.clicks import Click

from . import export, proposal_markups, segment_masks
from .agent_sessions import AgentStepError, LocalSession, classify, close_quietly, open_remote_session
from .slice_geometry import slice_geometry, slice_rgb
from .undo import SliceUndoStack

try:  # Inside Slicer: behave like any scripted module logic.
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic as _LogicBase
except ImportError:  # PyPI slicer-core, plain Python
    _LogicBase = object

logger = logging.getLogger("IBISAgent")

#: decide(proposal) -> clicks to apply, [] to skip the proposal, None to stop (see continueMask).
Decide = Callable[[dict], Optional[Sequence[Click]]]

#: What the in-process engine (heuristic policy + sitk tool) needs beyond numpy: import name ->
#: pip requirement. Slicer ships SimpleITK; scipy may need installing.
LOCAL_ENGINE_REQUIREMENTS = {
    "scipy": "scipy>=1.8",  # the sitk tool's mask clean-up
    "SimpleITK": "SimpleITK>=2.2",  # Slicer's own copy is kept when present
    "PIL": "pillow>=9.0",  # the engine's imaging (overlay, model view)
}
#: What a local agent server needs on top: installed only after one confirmation, never at load.
SERVER_REQUIREMENTS = {
    "fastapi": "fastapi>=0.110",
    "uvicorn": "uvicorn>=0.27",
    "pydantic": "pydantic>=2.5",
    **LOCAL_ENGINE_REQUIREMENTS,
    "nrrd": "pynrrd>=1.0",
}


def missingRequirements(requirements: dict) -> List[str]:
    """The pip requirements of ``requirements`` (import name -> requirement) that this Python
    cannot import; empty when everything is there. Imports nothing."""
    import importlib.util

    return [req for name, req in requirements.items() if importlib.util.find_spec(name) is None]


def serverArguments(port: int, host: str = "127.0.0.1", extra: Sequence[str] = ()) -> List[str]:
    """Python arguments that run ``ibisagent serve`` on ``host``:``port`` (for a child process)."""
    return ["-c", "import sys; from ibisagent.cli import main; sys.exit(main())",
            "serve", "--host", host, "--port", str(int(port))] + list(extra)


class _EpisodeState:
    """Everything one worked slice needs; held by the logic between calls."""

    def __init__(self, volume, segmentation, segment_id, geometry, session, client, request):
        self.volume = volume
        self.segmentation = segmentation
        self.segment_id = segment_id
        self.geometry = geometry
        self.session = session
        self.client = client
        self.request = request
        self.undo = SliceUndoStack()
        self.markups = proposal_markups.ProposalMarkups(geometry, volume.GetScene())
        self.proposal: Optional[dict] = None
        self.steps: List[dict] = []
        self.proposals: List[dict] = []
        self.stop_reason: Optional[str] = None
        self.answer: Optional[str] = None
        self.initial_mask = segment_masks.read_slice_mask(segmentation, segment_id, volume, geometry)
        self.initial_history = proposal_markups.read_history(segmentation, segment_id)


class IBISAgentLogic(_LogicBase):
    """All computation of the IBISAgent module. MRML only; no Qt; no dialogs."""

    def __init__(self, log: Optional[Callable[[str], None]] = None) -> None:
        if _LogicBase is not object:
            _LogicBase.__init__(self)
        self.logCallback = log
        self.callAgent: Callable[[Callable], object] = lambda function: function()
        self.serverUrl: Optional[str] = None
        self.token: Optional[str] = None
        self.timeout = 60.0
        self.policy = "heuristic"
        self.segmenter = "sitk"
        self.policyOptions: dict = {}
        self.segmenterOptions: dict = {}
        self.episode: Optional[_EpisodeState] = None

    # -- set-up ----------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        """Progress: to Python logging and to ``logCallback`` (the widget's text box)."""
        logger.info(message)
        if self.logCallback is not None:
            self.logCallback(message)

    def connect(self, url: str, token: Optional[str] = None, timeout: float = 60.0) -> None:
        """Use the agent server at ``url`` for the next episodes."""
        self.serverUrl, self.token, self.timeout = url, token, float(timeout)

    def useLocalEngine(self, policy="heuristic", segmenter="sitk", policyOptions=None, segmenterOptions=None) -> None:
        """Run the agent in this process (no server). ``policy``/``segmenter``: registry names
        or ready objects (e.g. a simulated policy for tests)."""
        self.serverUrl = None
        self.policy, self.segmenter = policy, segmenter
        self.policyOptions, self.segmenterOptions = dict(policyOptions or {}), dict(segmenterOptions or {})

    def pingServer(self, timeout: float = 3.0) -> bool:
        """True when the agent answers: the server's /health, or always for the in-process
        engine. Never raises. Runs in the calling thread, not through ``callAgent``, and touches
        no MRML, so the widget may poll it from its worker thread."""
        if not self.serverUrl:
            return True
        try:
            from ibisagent.client import AgentClient

            wait = min(self.timeout, float(timeout))
            with AgentClient(self.serverUrl, self.token, timeout=wait, connect_timeout=wait) as client:
                return bool(client.ping())
        except Exception:  # noqa: BLE001 - a ping answers yes or no, whatever went wrong
            return False

    def serverInfo(self) -> dict:
        """What the agent runs: the server's /info (``version``, ``api_version``, ``policy``,
        ``segmenter``, ``device``, ``capabilities``...), or for the in-process engine the policy
        and tool names after building both once (``local``: True). Goes through ``callAgent``;
        raises AgentStepError (``unavailable``, ``authentication``, ``incompatible``, ``engine``
        for a local engine that cannot load)."""
        if self.serverUrl:
            return self._agent("Asking the agent server what it runs", self._remote_info)
        return self._agent("Loading the in-process agent", self._local_info)

    def _remote_info(self) -> dict:
        from ibisagent.client import AgentClient

        with AgentClient(self.serverUrl, self.token, self.timeout) as client:
            return dict(client.info(refresh=True))

    def _local_info(self) -> dict:
        from ibisagent import __version__, protocol
        from ibisagent.policies import build_policy
        from ibisagent.segmenters import build_segmenter

        policy = build_policy(self.policy, **self.policyOptions) if isinstance(self.policy, str) else self.policy
        tool = build_segmenter(self.segmenter, **self.segmenterOptions) if isinstance(self.segmenter, str) else self.segmenter
        return {"local": True, "version": __version__, "api_version": protocol.API_VERSION,
                "policy": getattr(policy, "name", type(policy).__name__),
                "segmenter": getattr(tool, "name", type(tool).__name__), "device": "cpu"}

    def _open_session(self, image, request, mask, maxSteps):
        if self.serverUrl:
            return open_remote_session(self.serverUrl, self.token, self.timeout, image, request, mask, maxSteps)
        session = LocalSession(image, request, mask, maxSteps, self.policy, self.segmenter,
                               self.policyOptions, self.segmenterOptions)
        return None, session

    def _agent(self, what: str, function, episode: Optional[_EpisodeState] = None):
        """Run one agent call through ``callAgent``; turn any failure into AgentStepError."""
        try:
            return self.callAgent(function)
        except AgentStepError:
            raise
        except Exception as error:  # noqa: BLE001 - every agent failure becomes one typed error
            kind = classify(error)
            self.log(f"{what} failed ({kind}): {error}")
            raise AgentStepError(what, kind, error) from error

    # -- step by step ------------------------------------------------------------------------------
    def startEpisode(self, volumeNode, segmentationNode, segmentId, request: str = "", view="Red", maxSteps: int = 20) -> dict:
        """Open an agent session on the slice shown in ``view``, starting from the segment's
        current mask there (or from nothing). Changes no voxel. Returns `state()`."""
        if self.episode is not None:
            self.finish()
        segment_masks.check_segment(segmentationNode, segmentId)
        geometry = slice_geometry(volumeNode, view, volumeNode.GetScene())
        image = slice_rgb(volumeNode, geometry)
        mask = segment_masks.read_slice_mask(segmentationNode, segmentId, volumeNode, geometry)
        self.log(f"Working on slice {geometry.slice_index} of the {geometry.view} view "
                 f"({geometry.shape[1]}x{geometry.shape[0]} pixels, {int(mask.sum())} already in the segment).")
        client, session = self._agent(
            "Opening an agent session", lambda: self._open_session(image, request, mask if mask.any() else None, maxSteps)
        )
        self.episode = _EpisodeState(volumeNode, segmentationNode, segmentId, geometry, session, client, request)
        self.episode.markups.clear_proposals()
        history = proposal_markups.read_history(segmentationNode, segmentId)
        self.episode.markups.show_accepted(proposal_markups.clicks_on_slice(history, geometry))
        return self.state()

    def _require(self) -> _EpisodeState:
        if self.episode is None:
            raise RuntimeError("No episode is running; call startEpisode(...) or press 'Continue my mask' first.")
        return self.episode

    def _sync_user_edits(self, episode: _EpisodeState) -> None:
        """If the user edited the slice by hand since the last step, continue from their mask."""
        current = segment_masks.read_slice_mask(episode.segmentation, episode.segment_id, episode.volume, episode.geometry)
        if np.array_equal(current, np.asarray(episode.session.mask, dtype=bool)):
            return
        self.log("The slice was edited by hand; the agent continues from the edited mask.")
        self._agent("Sending the edited mask", lambda: episode.session.replace_mask(current))
        episode.undo.push(current, len(proposal_markups.read_history(episode.segmentation, episode.segment_id)), "hand edit")

    def proposeNext(self) -> dict:
        """Ask the agent for its next action and show a proposed click as an editable point.

        Returns the proposal dict (``reasoning``, ``action``, ``click``, ``answer``,
        ``stop_reason``...). A terminate proposal shows no point; an unreadable model answer
        raises AgentStepError(kind="invalid-output"). Changes no voxel.
        """
        episode = self._require()
        self._sync_user_edits(episode)
        proposal = self._agent("Asking the agent for the next step", episode.session.propose)
        episode.proposals.append(proposal)
        episode.stop_reason = proposal.get("stop_reason")
        if proposal.get("answer"):
            episode.answer = proposal["answer"]
        episode.markups.clear_proposals()
        if proposal.get("error"):
            episode.proposal = None
            self.log(f"The model's answer could not be read: {proposal['error']}")
            raise AgentStepError("The model's answer could not be read", "invalid-output",
                                 ValueError(proposal["error"]), proposal)
        episode.proposal = proposal
        if proposal.get("click"):
            click = Click.from_dict(proposal["click"])
            episode.markups.show_proposal(Click(click.x, click.y, click.positive, "agent"))
        self.log(f"Agent: {proposal.get('action')} - {proposal.get('reasoning', '').strip()}")
        return proposal

    def acceptProposal(self, clicks: Optional[Sequence[Click]] = None) -> dict:
        """Apply the proposal points exactly as they now stand on screen (moved, flipped,
        deleted, added), or ``clicks`` if given, and write the new mask into the slice.
        Returns the step dict. On failure the segment is unchanged."""
        episode = self._require()
        if clicks is None:
            clicks = episode.markups.read_clicks()
        clicks = list(clicks)
        if not clicks:
            raise ValueError("There is no click to apply; place a point, or press Skip or Finish.")
        self._sync_user_edits(episode)
        before = np.asarray(episode.session.mask, dtype=bool).copy()
        step = self._agent("Applying the clicks", lambda: episode.session.apply(clicks))
        new_mask = np.asarray(episode.session.mask, dtype=bool).copy()
        history = proposal_markups.read_history(episode.segmentation, episode.segment_id)
        try:
            segment_masks.save_scene_undo_state(episode.segmentation)
            segment_masks.write_slice_mask(episode.segmentation, episode.segment_id, episode.volume, episode.geometry, new_mask)
        except Exception as error:
            try:
                self.callAgent(episode.session.undo)
            except Exception:  # noqa: BLE001 - the segment is already restored; report the write error
                pass
            raise AgentStepError("Writing the new mask into the segment", "engine", error) from error
        episode.undo.push(before, len(history), f"step {len(episode.steps) + 1}")
        reasoning = (episode.proposal or {}).get("reasoning", "")
        history.append(proposal_markups.history_entry(episode.geometry, clicks, len(history) + 1, reasoning))
        proposal_markups.write_history(episode.segmentation, episode.segment_id, history)
        record = {
            "index": len(episode.steps) + 1,
            "reasoning": reasoning,
            "action": (episode.proposal or {}).get("action"),
            "proposed_click": (episode.proposal or {}).get("click"),
            "clicks": [c.to_dict() for c in clicks],
            "decision": step.get("decision"),
            "mask_pixels": int(new_mask.sum()),
        }
        episode.steps.append(record)
        episode.proposal = None
        episode.stop_reason = None
        episode.markups.clear_proposals()
        episode.markups.show_accepted(proposal_markups.clicks_on_slice(history, episode.geometry))
        self.log(f"Step {record['index']}: {len(clicks)} click(s) applied; the slice mask has {record['mask_pixels']} pixels.")
        return record

    def flipProposal(self, index: Optional[int] = None) -> int:
        """Flip the polarity of proposal point ``index``; by default the point under the mouse
        in a view (the list's active point), else the newest one. Returns the index flipped.
        Changes no voxel; raises ValueError when there is no such point."""
        markups = self._require().markups
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

    def skipProposal(self) -> None:
        """Drop the shown proposal without changing the mask."""
        episode = self._require()
        self._agent("Skipping the proposal", episode.session.skip)
        episode.proposal = None
        episode.markups.clear_proposals()

    def undo(self) -> bool:
        """Return the slice (bit-exact), its click history and the agent to the state before
        the last step. False if there is nothing to undo."""
        episode = self._require()
        snapshot = episode.undo.peek()
        if snapshot is None:
            return False
        self._agent("Undoing the last step", episode.session.undo)
        if not np.array_equal(np.asarray(episode.session.mask, dtype=bool), snapshot.mask):
            # The server rebuilt the session (its undo history is gone): give it the mask back.
            self._agent("Undoing the last step", lambda: episode.session.replace_mask(snapshot.mask))
        episode.undo.pop()
        segment_masks.write_slice_mask(episode.segmentation, episode.segment_id, episode.volume, episode.geometry, snapshot.mask)
        history = proposal_markups.read_history(episode.segmentation, episode.segment_id)[: snapshot.history_length]
        proposal_markups.write_history(episode.segmentation, episode.segment_id, history)
        if episode.steps and snapshot.label.startswith("step"):
            episode.steps.pop()
        episode.proposal = None
        episode.markups.clear_proposals()
        episode.markups.show_accepted(proposal_markups.clicks_on_slice(history, episode.geometry))
        self.log("Undone.")
        return True

    def state(self) -> dict:
        """Where the episode stands: slice, steps, stop reason, answer, mask statistics."""
        episode = self._require()
        mask = segment_masks.read_slice_mask(episode.segmentation, episode.segment_id, episode.volume, episode.geometry)
        return {
            "view": episode.geometry.view,
            "slice_index": episode.geometry.slice_index,
            "shape": list(episode.geometry.shape),
            "steps": list(episode.steps),
            "proposal": episode.proposal,
            "stop_reason": episode.stop_reason,
            "answer": episode.answer,
            "can_undo": episode.undo.can_undo,
            "statistics": segment_masks.mask_statistics(mask, episode.geometry),
        }

    def finish(self) -> dict:
        """End the episode: close the session, remove proposal points; the mask stays. Returns
        the final `state()`."""
        episode = self._require()
        summary = self.state()
        episode.markups.clear_proposals()
        close_quietly(episode.session)
        close_quietly(episode.client)
        self.episode = None
        self.log(f"Finished: {summary['statistics']['pixels']} pixels on slice {summary['slice_index']}.")
        return summary

    def _abandon(self) -> None:
        """Put the slice and its history back as they were at startEpisode, then end."""
        episode = self.episode
        if episode is None:
            return
        try:
            segment_masks.write_slice_mask(episode.segmentation, episode.segment_id, episode.volume,
                                           episode.geometry, episode.initial_mask)
            proposal_markups.write_history(episode.segmentation, episode.segment_id, episode.initial_history)
            episode.markups.clear_proposals()
            episode.markups.show_accepted(proposal_markups.clicks_on_slice(episode.initial_history, episode.geometry))
        finally:
            close_quietly(episode.session)
            close_quietly(episode.client)
            self.episode = None

    # -- in one go ----------------------------------------------------------------------------
    def continueMask(self, volumeNode, segmentationNode, segmentId, request: str = "", view="Red",
                     maxSteps: int = 20, decide: Optional[Decide] = None) -> dict:
        """Run the agent on the slice shown in ``view`` until it stops or ``maxSteps`` steps.

        ``decide(proposal)`` returns the clicks to apply (default: the proposed click), ``[]``
        to skip, or None to stop. An unreadable model answer ends the run (stop reason
        "unparseable") and keeps the steps so far. Any other failure restores the slice and
        its click history and raises. Returns `finish()`'s dict plus ``proposals``.
        """
        self.startEpisode(volumeNode, segmentationNode, segmentId, request, view, maxSteps)
        episode = self.episode
        skipped = 0
        try:
            while len(episode.steps) < maxSteps:
                try:
                    proposal = self.proposeNext()
                except AgentStepError as error:
                    if error.kind != "invalid-output":
                        raise
                    episode.stop_reason = "unparseable"
                    break
                if proposal.get("stop_reason") and not proposal.get("click"):
                    break
                if proposal.get("stop_reason") == "repeated":
                    break
                clicks = episode.markups.read_clicks() if decide is None else decide(proposal)
                if clicks is None:
                    episode.stop_reason = "stopped-by-user"
                    break
                if not list(clicks):
                    self.skipProposal()
                    skipped += 1
                    if skipped >= maxSteps:
                        episode.stop_reason = "stopped-by-user"
                        break
                    continue
                self.acceptProposal(clicks)
            else:
                episode.stop_reason = episode.stop_reason or "step-limit"
            proposals = list(episode.proposals)
            result = self.finish()
        except BaseException:
            self._abandon()
            raise
        result["proposals"] = proposals
        return result

    # -- files ------------------------------------------------------------------------------
    def saveSegment(self, segmentationNode, segmentId, path: str, referenceVolumeNode) -> List[str]:
        """Save one segment: .seg.nrrd, a labelmap (.nii.gz/.nii/.nrrd), or both when ``path``
        has neither ending. Returns the files written."""
        files = export.save_segment(segmentationNode, segmentId, path, referenceVolumeNode)
        self.log("Saved " + ", ".join(files))
        return files

    def runBatch(self, imageFiles: Sequence[str], maskFiles: Optional[Sequence[Optional[str]]] = None,
                 outputFolder: str = ".", request: str = "", view: str = "Red", maxSteps: int = 20,
                 sliceIndex: Optional[int] = None, decide: Optional[Decide] = None) -> List[dict]:
        """Run `continueMask` on each image file (optionally starting from a mask file) and write
        ``<case>.nii.gz`` and ``<case>.seg.nrrd`` into ``outputFolder``.

        The slice is ``sliceIndex`` along the ``view``'s normal (default: the slice with the
        most starting-mask voxels, else the middle slice). Files are loaded into the current
        scene, worked on with a private slice node, and removed again. A failing case is
        reported in its dict (``error``) and the batch goes on.
        """
        from .batch_io import BatchCase

        if maskFiles is not None and len(maskFiles) != len(imageFiles):
            raise ValueError(f"Got {len(imageFiles)} image files but {len(maskFiles)} mask files.")
        os.makedirs(outputFolder, exist_ok=True)
        results = []
        for index, image_file in enumerate(imageFiles):
            mask_file = maskFiles[index] if maskFiles is not None else None
            self.log(f"[{index + 1}/{len(imageFiles)}] {image_file}")
            case = None
            try:
                case = BatchCase(image_file, mask_file, view, sliceIndex)
                result = self.continueMask(case.volume, case.segmentation, case.segment_id, request,
                                           case.slice_node, maxSteps, decide)
                base = os.path.join(outputFolder, case.name)
                result["files"] = self.saveSegment(case.segmentation, case.segment_id, base, case.volume)
            except Exception as error:  # noqa: BLE001 - one bad case must not stop the batch
                self.log(f"{image_file}: {error}")
                result = {"error": str(error)}
            finally:
                if case is not None:
                    case.remove()
            result["image"] = image_file
            results.append(result)
        return results
