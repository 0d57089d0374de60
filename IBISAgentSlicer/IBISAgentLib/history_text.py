"""The lines the panel's history list and status line show, from the logic's records.

Pure functions of the dicts `IBISAgentLogic` returns (``state()``, ``finish()``, a propagated
slice's record, ``propagate()``'s summary), so the panel's words are the same whichever way the
work was done, and testable without Qt.
"""

from __future__ import annotations

from typing import Tuple


def start(state: dict) -> str:
    """An episode (or a propagated slice) opened: where, and what the segment has there."""
    return (f"Slice {state['slice_index']} of the {state['view']} view, {state['statistics']['pixels']} pixels "
            "in the segment.")


def finished(result: dict) -> str:
    return f"{result['statistics']['pixels']} pixels in the mask, {len(result['steps'])} steps"


def proposal(proposal) -> Tuple[str, str]:
    """(title, text) of an ``ibisagent.session.Proposal``."""
    action = proposal.action.to_text() if proposal.action else "no action"
    return f"Step {proposal.step + 1}: {action}", proposal.reasoning or ""


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
