"""IBISAgentLib: the Slicer side of IBISAgent, MRML only (no Qt, no torch), Python 3.9+.

The layout: the panel (``IBISAgent.py``) only wires controls to `logic.IBISAgentLogic`, which
is also the Python console's API; the logic drives ``ibisagent`` sessions (in process, or on an
agent server through the torch-free client) and the MRML adapters below keep the scene in step.
One module per concern:

- `slice_geometry`: the current slice of a Red/Yellow/Green view as a 2D image in display order,
  and the only pixel <-> IJK <-> RAS mapping (oblique views refused).
- `slice_labelmap`: that slice of a segment, read and written in the segment's own grid.
- `segment_masks`: segment checks, whole-segment reads for comparison, statistics.
- `proposal_markups`: proposed/accepted clicks as markups points; click history segment tags.
- `worked_slice`: an agent session bound to one slice of one segment (MRML follows the session).
- `propagation`: a segment carried through the slices of a volume, the agent checking every slice
  (run through or slice by slice), one undo for the whole propagation.
- `segment_volume`: the whole segment as a 3D mask, read and written in the segment's own grid.
- `volume_session_logic`: a 3D session on the whole segment (points in any view are its voxels),
  driven by the same step methods of the logic as a slice.
- `agent_sessions`: which agent the logic uses (a server, or the one in-process engine), opening
  sessions on it, and the agent error type.
- `agent_worker`: the worker thread for agent calls and the GIL-friendly wait for them (a
  cancelled call is left on its old thread).
- `local_server`: ``ibisagent serve`` as a child process, and its life cycle in the logic.
- `requirements`: what the in-process engine and a local server need (from pyproject.toml), and
  installing it.
- `settings`: the panel's saved settings, one small object, and how they map to its fields.
- `actions`: what the user may do now and why not, or what it does (the panel's enabled states
  and tooltips, the words that follow the logic, what a failure says first), and the "Work on"
  choices (a slice, the whole segment).
- `shortcuts`: the panel's keyboard shortcuts and when each may take its key.
- `history_text`: the history rows and status line the panel shows after each event.
- `export`: .seg.nrrd and NIfTI labelmap files.
- `batch_io`: image/mask files loaded as batch cases.
- `training_record`: "Record for training": a recording listening to the worked slice's session.
- `logic`: `IBISAgentLogic`, used by the module widget, the Python console and batch runs.

Modules import ``slicer`` lazily where they can, so importing this package is cheap.
"""

from .agent_sessions import AgentStepError
from .segment_masks import SegmentError
from .slice_geometry import SliceGeometry, SliceGeometryError

__all__ = ["AgentStepError", "IBISAgentLogic", "SegmentError", "SliceGeometry", "SliceGeometryError"]


def __getattr__(name):  # Python 3.7+: import the logic (and its slicer imports) on first use
    if name == "IBISAgentLogic":
        from .logic import IBISAgentLogic

        return IBISAgentLogic
    raise AttributeError(name)
