"""The lines the panel's history list and status line show, from the logic's records.

Pure functions of the dicts and records `IBISAgentLogic` returns (``state()``, ``finish()``, a
proposal, a step, a propagated slice's record, ``propagate()``'s summary), so the panel's words
are the same whichever way the work was done, and testable without Qt. A state of the whole
segment (``workOn`` "volume") speaks of voxels and views where a slice's speaks of pixels and
its view.

The ``on_*`` functions (and `RunThrough` for a run-through propagation) say everything the
panel shows after one event as a `Shown`: the history `Row` s to add, oldest first, and the new
status line (None: it stays). The widget only turns a `Shown` into list items and a label.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple


class Row(NamedTuple):
    """One history entry: ``title`` ("Step 2: click...", "Undo"), ``text`` (may be empty),
    ``bold`` for the agent's answers and a propagation's end."""

    title: str
    text: str = ""
    bold: bool = False

    @property
    def label(self) -> str:
        """The list's line."""
        return f"{self.title}: {self.text}" if self.text else self.title

    @property
    def tooltip(self) -> str:
        return self.text or self.title

    @property
    def details(self) -> str:
        """The entry in full (the box under the list shows it when the row is selected)."""
        return f"{self.title}\n\n{self.text}"


class Shown(NamedTuple):
    """What the panel shows after one event: history ``rows`` to add and the ``status`` line
    (None: unchanged)."""

    rows: Tuple[Row, ...] = ()
    status: Optional[str] = None


#: A proposal deleted without applying it.
SKIPPED = Shown((Row("Skipped", "Proposal deleted."),))
#: One change of the episode undone.
UNDONE = Shown((Row("Undo", "Last change undone; the segment is back as it was."),))
#: A whole propagation undone.
PROPAGATION_UNDONE = Shown((Row("Undo", "The propagation was undone; every slice is back as it was."),))
#: Why the episode ended when the user cancelled a wait.
CANCELLED = ("Cancelled: the agent session ended; the segment keeps the steps applied before. "
             "Press Continue my mask to go on.")


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


# -- what the panel shows after each event ---------------------------------------------------------
def on_start(state: dict) -> Shown:
    """An episode opened (`start`)."""
    return Shown((Row("Start", start(state)),))


def on_proposal(agent_proposal, stop_reason: Optional[str]) -> Shown:
    """An ``ibisagent.session.Proposal`` (and the agent's answer, if it gave one) with its
    status line."""
    rows = (Row(*proposal(agent_proposal)),)
    if agent_proposal.answer:
        rows += (Row("Answer", str(agent_proposal.answer), bold=True),)
    return Shown(rows, proposal_status(agent_proposal, stop_reason))


def on_flip(index: int) -> Shown:
    """Proposed point ``index`` (0-based) flipped."""
    return Shown((), f"Proposed point {index + 1} flipped; press Accept to apply the points on screen.")


def on_finish(result: dict) -> Shown:
    """Finish: the agent's answer, if any, and what the segment holds (`finished`)."""
    rows = (Row("Answer", str(result["answer"]), bold=True),) if result.get("answer") else ()
    return Shown(rows + (Row("Finished", finished(result)),))


def on_ended(title: str, reason: str, status: Optional[str] = None) -> Shown:
    """An episode ended for ``reason`` (not by Finish): one row, and ``status`` (default: the
    reason)."""
    return Shown((Row(title, reason),), reason if status is None else status)


def on_slice_opened(opened: dict, asking: bool) -> Shown:
    """Review opened a slice (``opened``: `nextPropagatedSlice`'s dict): the slice just left,
    if any, and the new one; ``asking``: the agent is asked on it next (its proposal then says
    the status), else the carried mask waits for the user (`carried_slice`)."""
    left = opened.get("finished")
    rows = (Row(f"Slice {left['index']}", propagated_slice(left)),) if left else ()
    rows += (Row(f"Slice {opened['slice']}", start(opened["state"])),)
    return Shown(rows, None if asking else carried_slice(opened))


def on_stop_here(state: Optional[dict]) -> Shown:
    """Review's "Stop here" (``state``: `propagationState()` before it): the open slice goes
    back as it was."""
    if state is None or state["open"] is None:
        return Shown()
    return Shown((Row(f"Slice {state['open']}", "The target ends here; the slice is back as it was."),))


def on_propagation_end(summary: dict) -> Shown:
    """A propagation ended (`propagation_end`), and how to take it back."""
    title, text = propagation_end(summary)
    return Shown((Row(title, text, bold=True),), f"{title}: {text} Undo propagation takes it back.")


class RunThrough:
    """A run-through propagation's lines as its slices come in: counts the slices written."""

    def __init__(self) -> None:
        self.written = 0

    def on_slice(self, record: dict) -> Shown:
        """One slice done (``record``: `propagated_slice`'s)."""
        self.written += int(record["written"])
        index = record["index"]
        return Shown((Row(f"Slice {index}", propagated_slice(record)),),
                     f"Propagating: {self.written} slice(s) written, slice {index} done. Cancel keeps them.")
