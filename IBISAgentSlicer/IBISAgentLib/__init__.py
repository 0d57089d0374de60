"""IBISAgentLib: the Slicer side of IBISAgent, MRML only (no Qt, no torch), Python 3.9+.

One module per concern:

- `slice_geometry`: the current slice of a Red/Yellow/Green view as a 2D image in display order,
  and the only pixel <-> IJK <-> RAS mapping (oblique views refused).
- `segment_masks`: a segment's labelmap on that slice, read and written (that slice only).
- `proposal_markups`: proposed/accepted clicks as markups points; click history segment tags.
- `undo`: per-step snapshots of the slice mask.
- `export`: .seg.nrrd and NIfTI labelmap files.
- `agent_sessions`: the in-process session (no server) and the agent error type.
- `batch_io`: image/mask files loaded as batch cases.
- `logic`: `IBISAgentLogic`, used by the module widget, the Python console and batch runs.

Modules import ``slicer`` lazily where they can, so importing this package is cheap.
"""

from .agent_sessions import AgentStepError, LocalSession
from .segment_masks import SegmentError
from .slice_geometry import SliceGeometry, SliceGeometryError

__all__ = ["AgentStepError", "IBISAgentLogic", "LocalSession", "SegmentError", "SliceGeometry", "SliceGeometryError"]


def __getattr__(name):  # Python 3.7+: import the logic (and its slicer imports) on first use
    if name == "IBISAgentLogic":
        from .logic import IBISAgentLogic

        return IBISAgentLogic
    raise AttributeError(name)
