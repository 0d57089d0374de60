"""The panel and the in-Slicer tests use only what IBISAgentLogic really offers.

IBISAgent.py (Qt) cannot run here, so a call to a logic method that does not exist would only
show up inside Slicer. This test reads the module and the self-test with `ast`, collects every
attribute used on the logic object (``self.logic.X``, ``widget.logic.X``, ``logic.X``, and one
level into ``logic.workedSlice`` and ``logic.workedSlice.markups``) and checks each against the real
classes: their methods and properties, and the attributes their methods assign (``self.X = ...``).
Importing IBISAgentLib.logic needs no Slicer (slicer-core is used when installed).
"""

import ast
import inspect
import os
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODULE_DIR = os.path.join(REPO, "IBISAgentSlicer")
MODULE_FILE = os.path.join(MODULE_DIR, "IBISAgent.py")
SELF_TEST_FILE = os.path.join(REPO, "Testing", "Python", "IBISAgentSelfTest.py")
if MODULE_DIR not in sys.path:
    sys.path.insert(0, MODULE_DIR)

pytest.importorskip("numpy")
from IBISAgentLib import logic as logic_module  # noqa: E402
from IBISAgentLib.proposal_markups import ProposalMarkups  # noqa: E402
from IBISAgentLib.worked_slice import WorkedSlice  # noqa: E402

#: Attribute paths below the logic whose type we know: path -> class.
KNOWN_TYPES = {
    (): logic_module.IBISAgentLogic,
    ("workedSlice",): WorkedSlice,
    ("workedSlice", "markups"): ProposalMarkups,
}


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _logic_path(node):
    """For ``<...>.logic.a.b`` (or a bare ``logic.a.b``) return ("a", "b"); else None."""
    names = []
    while isinstance(node, ast.Attribute):
        if node.attr == "logic":
            return tuple(reversed(names))
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "logic":
        return tuple(reversed(names))
    return None


def logic_uses(source):
    """{(path below the logic, line)}: every attribute read, written or called on the logic."""
    uses = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            path = _logic_path(node)
            if path:
                uses.add((path, node.lineno))
    return uses


def offered(cls):
    """Names an instance of ``cls`` has: class members plus ``self.X = ...`` in its methods."""
    names = set(dir(cls))
    for node in ast.walk(ast.parse(inspect.getsource(cls))):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and getattr(target.value, "id", None) == "self":
                    names.add(target.attr)
    return names


def missing_logic_attributes(source):
    """['line N: logic.a.b', ...] for each use that the real classes do not offer."""
    offers = {path: offered(cls) for path, cls in KNOWN_TYPES.items()}
    missing = set()
    for path, line in logic_uses(source):
        for depth in range(len(path)):
            owner = path[:depth]
            if owner not in offers:
                break  # below a type we do not model (e.g. a vtk node)
            if path[depth] not in offers[owner]:
                missing.add(f"line {line}: logic.{'.'.join(path[: depth + 1])}")
                break
    return sorted(missing)


@pytest.mark.parametrize("source", [MODULE_FILE, SELF_TEST_FILE], ids=["IBISAgent.py", "IBISAgentSelfTest.py"])
def test_every_logic_attribute_used_exists(source):
    text = _read(source)
    missing = missing_logic_attributes(text)
    assert not missing, f"{os.path.basename(source)} uses what IBISAgentLogic lacks: {missing}"


def test_the_check_catches_a_missing_method():
    """A widget calling a method the logic lacks (here the old setServer/startPlacingPoint) fails."""
    text = _read(MODULE_FILE)
    assert not missing_logic_attributes(text)
    bogus = text + (
        "\n\ndef _bogus(self):\n"
        "    self.logic.setServer('http://127.0.0.1:1', None)\n"
        "    logic.startPlacingPoint(True)\n"
        "    self.logic.workedSlice.markups.flipAll()\n"
        "    self.logic.workedSlice.markups.proposals.AnyVtkMethod()\n"
    )
    missing = missing_logic_attributes(bogus)
    assert sorted(entry.split(": ")[1] for entry in missing) == [
        "logic.setServer", "logic.startPlacingPoint", "logic.workedSlice.markups.flipAll",
    ]


def test_the_training_controls_go_through_the_logic():
    """Record for training: the panel turns recording on and off and shows the counts through
    the same logic API the Python console uses."""
    used = {path[0] for path, _line in logic_uses(_read(MODULE_FILE))}
    assert {"setTrainingRecord", "trainingRecord", "recordedSteps", "recordFolderSteps"} <= used
