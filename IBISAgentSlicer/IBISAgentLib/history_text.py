"""The lines the panel's history list and status line show, from the logic's records.

Pure functions of the dicts and records `IBISAgentLogic` returns (``state()``, ``finish()``, a
proposal, a step, a propagated slice's record, ``propagate()``'s summary), so the panel's words
are the same whichever way the work was done, and testable without Qt. A state of the whole
segment (``workOn`` "volume") speaks of voxels and views where a slice's speaks of pixels and
its view.
"""

from __future__ import annotations

from typing import Optional, Tuple


def _volume(state: dict) -> bool:
    return state.get("workOn") == "volume"


def start(state: dict) -> str:
    """An episode (or a propagated slice) opened: where, and what the segment has there."""
    if _volume(state):
        return (f"The whole segment (3D), {state['mask_voxels']} voxels; points in the {', '.join(state['views'])} "
                "view(s) belong to this session.")
    return (f"Slice {state['slice_index']} of the {state['view']} view, {state['statistics']['pixels']} pixels "
            "in the segment.")


def finished(result: dict) -> str:
    if _volume(result):
        return (f"{result['mask_voxels']} voxels in the segment ({result['volume_mm3']:.0f} mm3), "
                f"{len(result['steps'])} steps")
    return f"{result['statistics']['pixels']} pixels in the mask, {len(result['steps'])} steps"


def proposal(proposal) -> Tuple[str, str]:
    """(title, text) of an ``ibisagent.session.Proposal`` (a 3D one says where it looked)."""
    action = proposal.action.to_text() if proposal.action else "no action"
    return f"Step {proposal.step + 1}: {action}{_where(proposal)}", proposal.reasoning or ""


def _where(proposal) -> str:
    if getattr(proposal, "voxel", None) is None:
        return ""
    return f" on the {proposal.plane} view, slice {proposal.index}"


def proposal_status(proposal, stop_reason: Optional[str]) -> str:
    """The status line once a proposal is shown (or the agent stopped)."""
    if stop_reason:
        return f"The agent stopped ({stop_reason}). Press Finish, or add points and Accept."
    where = _where(proposal)
    if where:
        return (f"Proposal{where} (the view moved there): drag, flip, delete or add points in any view, "
                "then Accept.")
    return "Proposal on screen: drag, flip, delete or add points, then Accept."


def step(step) -> str:
    """The status line once a step is applied (a 3D step: voxels added and removed)."""
    if hasattr(step, "added"):
        return (f"Step {step.index} applied: {step.added} voxel(s) added, {step.removed} removed; "
                f"{step.mask_pixels} voxels in the segment.")
    return f"Step {step.index} applied: {step.mask_pixels} pixels in the mask."


def placing(state: dict, positive: bool) -> str:
    """The status line while the user places a point."""
    where = (f"the {', '.join(state['views'])} view(s)" if _volume(state) else f"the {state['view']} view")
    return f"Click in {where} to place a {'positive' if positive else 'negative'} point."


def connection(info: dict) -> str:
    """What "Test connection" found (``IBISAgentLogic.serverInfo``'s dict)."""
    where = "In Slicer (no server)" if info.get("local") else "Connected"
    policy, tool, api = (info.get(key, "?") for key in ("policy", "segmenter", "api_version"))
    recording = "; the server records every session for training" if info.get("records_sessions") else ""
    return f"{where}: policy {policy}, tool {tool}, API {api}{recording}"


def carried_slice(opened: dict) -> str:
    """The status line when review opens a slice and the agent is not asked on it."""
    if opened.get("faded"):
        return ("The carried mask no longer stands out as the target did: Next slice ends this direction here "
                "unless you edit it.")
    return "Carried mask on screen: edit it if needed, then Next slice."


def propagated_slice(record: dict) -> str:
    """One propagated slice: written (pixels, carried, steps) or why not."""
    if record["written"]:
        return f"{record['mask_pixels']} pixels ({record['start_pixels']} carried), {len(record['steps'])} step(s)."
    return f"Not changed: {record['end']}."


def propagation_end(summary: dict) -> Tuple[str, str]:
    """(title, text) when a propagation ends: slices written, clicks, where each direction ended."""
    ends = "; ".join(f"{e['direction']}: {e['reason']} at slice {e['at']}" for e in summary["ends"])
    what = "cancelled" if summary.get("cancelled") else "finished"
    return f"Propagation {what}", f"{len(summary['written'])} slice(s) written, {summary['clicks']} click(s); {ends}."
