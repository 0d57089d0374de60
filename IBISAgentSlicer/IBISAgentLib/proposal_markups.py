"""Proposed and accepted clicks as markups control points, and each segment's click history.

Two point lists (vtkMRMLMarkupsFiducialNode), both in RAS (mm):

- **Proposals** ("IBISAgent proposals"): editable. The agent's proposed click is added here; the
  user may drag it, flip its polarity, delete it, or place more points. `read_clicks` returns
  exactly what is on screen.
- **Accepted** ("IBISAgent clicks"): locked, a different glyph, dimmer colours. Shows the
  clicks already applied to the worked slice.

Polarity is the control point's *Selected* flag: selected = positive, drawn in the display
node's SelectedColor (green); not selected = negative, drawn in its Color (red). One node per
list keeps the user's editing in one place, and the Markups module's "selected" checkbox (or
`flip`) flips polarity. Labels ("+" / "-") follow the flag; the flag is the truth.

Origins: a point added by `show_proposal` remembers the agent's original pixel and polarity in
its description. On reading, an unchanged point is ``agent``; a moved or flipped one is
``user-moved``; any point without that description is ``user``.

Click history: every applied step is appended to a JSON list stored as a tag of the segment
(`HISTORY_TAG`), so it travels with the segment through segment switching and scene or
.seg.nrrd saving. Each click is stored with its voxel (IJK) and RAS position.
"""

from __future__ import annotations

import json
import re
from typing import Callable, List, Optional, Sequence


from ibisagent.clicks import AGENT, USER, USER_MOVED, Click

from .slice_geometry import SliceGeometry

PROPOSALS_NODE_NAME = "IBISAgent proposals"
ACCEPTED_NODE_NAME = "IBISAgent clicks"
#: Segment tag holding the click history (JSON list of steps).
HISTORY_TAG = "IBISAgent.ClickHistory"
#: Node attribute marking our point lists so they can be found again after a scene reload.
ROLE_ATTRIBUTE = "IBISAgent.Role"

POSITIVE_COLOR = (0.0, 1.0, 0.0)
NEGATIVE_COLOR = (1.0, 0.0, 0.0)
ACCEPTED_POSITIVE_COLOR = (0.13, 0.55, 0.13)
ACCEPTED_NEGATIVE_COLOR = (0.6, 0.1, 0.1)

_AGENT_DESCRIPTION = re.compile(r"^IBISAgent proposal col=(\d+) row=(\d+) (positive|negative)$")


def _label(positive: bool) -> str:
    return "+" if positive else "-"


def _get_or_create_node(scene, name: str, role: str):
    nodes = scene.GetNodesByClass("vtkMRMLMarkupsFiducialNode")
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if node.GetAttribute(ROLE_ATTRIBUTE) == role:
            return node
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    node.SetAttribute(ROLE_ATTRIBUTE, role)
    node.CreateDefaultDisplayNodes()
    return node


def _style(node, positive_color, negative_color, glyph: str, scale: float, opacity: float) -> None:
    display = node.GetDisplayNode()
    if display is None:
        return
    display.SetSelectedColor(*positive_color)
    display.SetColor(*negative_color)
    display.SetGlyphTypeFromString(glyph)
    display.SetGlyphScale(scale)
    display.SetTextScale(scale)
    display.SetOpacity(opacity)


class ProposalMarkups:
    """The two point lists for one worked slice (`geometry`). MRML only; main thread only.

    A list the user deleted (Data module) is made again the next time it is needed.
    """

    def __init__(self, geometry: SliceGeometry, scene=None) -> None:
        if scene is None:
            import slicer

            scene = slicer.mrmlScene
        self.geometry = geometry
        self.scene = scene
        self._nodes = {}
        for role, name in (("proposals", PROPOSALS_NODE_NAME), ("accepted", ACCEPTED_NODE_NAME)):
            self._node(role, name)  # make (or find) and style both lists now

    def _node(self, role: str, name: str):
        node = self._nodes.get(role)
        if node is None or node.GetScene() is None:
            node = _get_or_create_node(self.scene, name, role)
            if role == "proposals":
                _style(node, POSITIVE_COLOR, NEGATIVE_COLOR, "StarBurst2D", 3.0, 1.0)
                node.SetLocked(False)
            else:
                _style(node, ACCEPTED_POSITIVE_COLOR, ACCEPTED_NEGATIVE_COLOR, "Circle2D", 2.0, 0.7)
                node.SetLocked(True)
            self._nodes[role] = node
        return node

    @property
    def proposals(self):
        """The editable list ("IBISAgent proposals")."""
        return self._node("proposals", PROPOSALS_NODE_NAME)

    @property
    def accepted(self):
        """The locked list of applied clicks ("IBISAgent clicks")."""
        return self._node("accepted", ACCEPTED_NODE_NAME)

    # -- proposals -------------------------------------------------------------------------------
    def _add_point(self, node, click: Click, description: str = "") -> int:
        return _add_ras(node, self.geometry.pixel_to_ras(click.x, click.y), click.positive, description)

    def show_proposal(self, click: Click) -> int:
        """Add the agent's proposed ``click`` (pixel coordinates) as an editable point."""
        polarity = "positive" if click.positive else "negative"
        return self._add_point(self.proposals, click, f"IBISAgent proposal col={click.x} row={click.y} {polarity}")

    def add_user_point(self, col: int, row: int, positive: bool) -> int:
        """Add a point placed by the user (console or widget) at pixel (col, row)."""
        return self._add_point(self.proposals, Click(int(col), int(row), bool(positive), USER))

    def flip(self, index: int) -> None:
        """Flip the polarity of proposal point ``index``."""
        positive = not self.proposals.GetNthControlPointSelected(index)
        self.proposals.SetNthControlPointSelected(index, positive)
        self.proposals.SetNthControlPointLabel(index, _label(positive))

    def clear_proposals(self) -> None:
        self.proposals.RemoveAllControlPoints()

    def read_clicks(self) -> List[Click]:
        """The proposal points exactly as they now stand, as pixel clicks with their origin.

        Raises slice_geometry.SliceGeometryError (saying which point to fix) for points off the
        worked slice or outside the image.
        """
        clicks = []
        position = [0.0, 0.0, 0.0]
        for index in range(self.proposals.GetNumberOfControlPoints()):
            self.proposals.GetNthControlPointPosition(index, position)
            col, row = self.geometry.ras_to_pixel(position)
            positive = bool(self.proposals.GetNthControlPointSelected(index))
            self.proposals.SetNthControlPointLabel(index, _label(positive))
            origin = point_origin(self.proposals.GetNthControlPointDescription(index), col, row, positive)
            clicks.append(Click(int(col), int(row), positive, origin))
        return clicks

    # -- accepted ------------------------------------------------------------------------------
    def show_accepted(self, clicks: Sequence[Click]) -> None:
        """Replace the locked list with ``clicks`` (pixel coordinates on the worked slice)."""
        self.show_accepted_at([(self.geometry.pixel_to_ras(c.x, c.y), c.positive, c.origin) for c in clicks])

    def show_accepted_at(self, points) -> None:
        """Replace the locked list with ``points``: (RAS, positive, origin) each, on any slice."""
        self.accepted.RemoveAllControlPoints()
        for ras, positive, origin in points:
            index = _add_ras(self.accepted, ras, positive, origin)
            self.accepted.SetNthControlPointLocked(index, True)

    def clear_proposals_if_present(self) -> None:
        """Remove the proposal points, unless the list (or the scene) is already gone; for
        ending a worked slice whose nodes may have been removed."""
        node = self._nodes.get("proposals")
        if node is not None and node.GetScene() is not None:
            node.RemoveAllControlPoints()


def _add_ras(node, ras, positive: bool, description: str = "") -> int:
    index = node.AddControlPoint(float(ras[0]), float(ras[1]), float(ras[2]), _label(positive))
    node.SetNthControlPointSelected(index, bool(positive))
    node.SetNthControlPointDescription(index, description)
    return index


def point_origin(description: Optional[str], col: int, row: int, positive: bool) -> str:
    """Who made a proposal point now at pixel (``col``, ``row``) of its slice with polarity
    ``positive``: ``agent`` when it is the agent's proposal unchanged, ``user-moved`` when it was
    the agent's and was moved or flipped, else ``user``."""
    match = _AGENT_DESCRIPTION.match(description or "")
    if match is None:
        return USER
    unchanged = (int(match.group(1)), int(match.group(2)), match.group(3) == "positive") == (col, row, positive)
    return AGENT if unchanged else USER_MOVED


class PlacementTarget:
    """Make the proposal list the one Slicer's place mode adds points to, and give the user's
    own active list back afterwards (otherwise later placements from the Markups toolbar would
    land in the proposals and be applied by Accept). Uses the scene's selection node, which is
    what ``vtkSlicerMarkupsLogic.SetActiveList`` sets."""

    def __init__(self, node) -> None:
        scene = node.GetScene()
        self._selection = scene.GetNodeByID("vtkMRMLSelectionNodeSingleton") if scene is not None else None
        self._previous = None
        if self._selection is not None:
            self._previous = (self._selection.GetActivePlaceNodeClassName(), self._selection.GetActivePlaceNodeID())
            self._selection.SetReferenceActivePlaceNodeClassName(node.GetClassName())
            self._selection.SetReferenceActivePlaceNodeID(node.GetID())

    def restore(self) -> None:
        """Put the user's active list (or none) back; safe to call twice."""
        if self._selection is None or self._previous is None:
            return
        class_name, node_id = self._previous
        self._previous = None
        if class_name:
            self._selection.SetReferenceActivePlaceNodeClassName(class_name)
        self._selection.SetReferenceActivePlaceNodeID(node_id)


class PointPlacement:
    """One point the user places into the proposal list with a chosen polarity. Meanwhile the
    list is the active place list (`PlacementTarget`), and each point added to it gets the
    polarity (Slicer adds placed points as selected, i.e. positive); ``on_placed()`` is called
    once the point's position is defined. `end` stops observing and gives the user's own active
    list back. ``node``: the proposal list."""

    def __init__(self, markups: ProposalMarkups, positive: bool, on_placed: Optional[Callable[[], None]] = None) -> None:
        self.node = markups.proposals
        self.positive = bool(positive)
        self._target = PlacementTarget(self.node)
        self._on_placed = on_placed
        self._tags = [self.node.AddObserver(self.node.PointAddedEvent, self._added),
                      self.node.AddObserver(self.node.PointPositionDefinedEvent, self._defined)]

    def _added(self, _caller=None, _event=None) -> None:
        index = self.node.GetNumberOfControlPoints() - 1
        if index >= 0:
            self.node.SetNthControlPointSelected(index, self.positive)
            self.node.SetNthControlPointLabel(index, _label(self.positive))

    def _defined(self, _caller=None, _event=None) -> None:
        self._added()
        if self._on_placed is not None:
            self._on_placed()

    def end(self) -> None:
        """Stop observing and give the user's active list back; safe to call twice."""
        for tag in self._tags:
            self.node.RemoveObserver(tag)
        self._tags = []
        self._target.restore()


def leave_place_mode(scene) -> None:
    """Put Slicer's mouse mode (the scene's interaction node) back from placing points to
    viewing, if it is placing; nothing else changes."""
    interaction = scene.GetNodeByID("vtkMRMLInteractionNodeSingleton") if scene is not None else None
    if interaction is not None and interaction.GetCurrentInteractionMode() == interaction.Place:
        interaction.SwitchToViewTransformMode()


# -- click history, stored with the segment -------------------------------------------------------
def read_history(segmentation_node, segment_id: str) -> List[dict]:
    """The segment's click history: a list of steps, oldest first (empty if none)."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        return []
    text = _get_tag(segment)
    if not text:
        return []
    try:
        history = json.loads(text)
    except ValueError:
        return []
    return history if isinstance(history, list) else []


def _get_tag(segment) -> Optional[str]:
    import vtk

    holder = vtk.reference("")
    if segment.GetTag(HISTORY_TAG, holder):
        return str(holder)
    return None


def write_history(segmentation_node, segment_id: str, history: List[dict]) -> None:
    """Store ``history`` as the segment's `HISTORY_TAG` (compact JSON).

    The .seg.nrrd header separates tags with "|", so "|" (possible only inside JSON strings) is
    written as the JSON escape \\u007c; ``json.loads`` turns it back into "|".
    """
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    segment.SetTag(HISTORY_TAG, json.dumps(history, separators=(",", ":")).replace("|", "\\u007c"))


def history_entry(geometry: SliceGeometry, clicks: Sequence[Click], step: int, reasoning: str = "") -> dict:
    """One applied step as stored in the history: the slice and each click's pixel, IJK, RAS."""
    entry = {"step": int(step), "slice": geometry.to_dict(), "reasoning": reasoning, "clicks": []}
    for click in clicks:
        ijk = geometry.pixel_to_ijk(click.x, click.y)
        ras = geometry.pixel_to_ras(click.x, click.y)
        entry["clicks"].append({
            **click.to_dict(),
            "ijk": [int(v) for v in ijk],
            "ras": [round(float(v), 4) for v in ras],
        })
    return entry


def clicks_on_slice(history: List[dict], geometry: SliceGeometry) -> List[Click]:
    """The clicks of ``history`` that were made on ``geometry``'s slice, oldest first."""
    clicks = []
    for entry in history:
        for item in entry.get("clicks", []):
            ijk = item.get("ijk")
            if ijk is None or int(ijk[geometry.normal_axis]) != geometry.slice_index:
                continue
            if entry.get("slice", {}).get("normal_axis") != geometry.normal_axis:
                continue
            col, row = geometry.ijk_to_pixel(ijk)
            clicks.append(Click(col, row, bool(item["positive"]), str(item.get("origin", USER))))
    return clicks
