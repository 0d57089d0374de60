"""The panel's .ui file against the tables the widget is wired from (`IBISAgentLib.actions.ACTIONS`,
`IBISAgentLib.settings.FIELDS`, `IBISAgentLib.shortcuts.SHORTCUTS`), and the shortcut rules.

The widget finds its controls through those tables, so a control missing from the .ui, or one
of the wrong kind, shows up here without Slicer; that every action has a state, and that the
logic behind each one behaves, is checked on real MRML in Testing/tests/slicer; the in-Slicer
self-test clicks through the real panel."""

import os
import sys
import xml.etree.ElementTree as ET

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODULE_DIR = os.path.join(REPO, "IBISAgentSlicer")
UI_FILE = os.path.join(MODULE_DIR, "Resources", "UI", "IBISAgent.ui")
if MODULE_DIR not in sys.path:
    sys.path.insert(0, MODULE_DIR)

from IBISAgentLib.actions import ACTIONS, IN_3D, WORK_ON  # noqa: E402
from IBISAgentLib.settings import FIELDS, AgentSettings  # noqa: E402
from IBISAgentLib.shortcuts import SHORTCUTS, help_rows, live_shortcuts  # noqa: E402

#: What each kind of control must be for the way the widget uses it.
CLICKABLE = {"QPushButton", "QCheckBox", "ctkDirectoryButton"}


@pytest.fixture(scope="module")
def ui():
    return ET.parse(UI_FILE)


def widgets(tree):
    return {w.get("name"): w.get("class") for w in tree.iter("widget")}


def test_the_ui_is_a_slicer_panel_with_declared_widgets(ui):
    root = ui.getroot()
    assert root.tag == "ui" and root.findtext("class") == "IBISAgent"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "IBISAgent"
    declared = {c.findtext("class"): c for c in root.iter("customwidget")}
    for cls in {w.get("class") for w in root.iter("widget")}:
        if not cls.startswith("Q"):
            assert cls in declared and declared[cls].findtext("header") == cls + ".h", cls
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml = {name for name, cls in widgets(ui).items() if cls.startswith("qMRML") and name != "IBISAgent"}
    assert mrml <= receivers, f"MRML widgets without a scene: {mrml - receivers}"
    names = [w.get("name") for w in ui.iter("widget")]
    assert len(names) == len(set(names))


def test_every_action_has_its_control(ui):
    found = widgets(ui)
    for name, (control, what) in ACTIONS.items():
        assert found.get(control) in CLICKABLE, f"action {name}: {control} is {found.get(control)}"
        assert what.endswith(".")


def test_every_setting_has_its_field(ui):
    found = widgets(ui)
    kinds = {"mode": "QComboBox", "serverUrl": "QLineEdit", "token": "QLineEdit", "serverPython": "QLineEdit",
             "serverArguments": "QLineEdit", "record": "QCheckBox", "recordFolder": "ctkDirectoryButton"}
    assert set(FIELDS) == set(kinds) == set(AgentSettings.__dataclass_fields__)
    assert {name: found.get(control) for name, control in FIELDS.items()} == kinds
    modes = [item.findtext("property/string") for item in
             next(w for w in ui.iter("widget") if w.get("name") == FIELDS["mode"]).iter("item")]
    assert modes == ["Agent server", "Local (no server)"]  # the order of settings.MODES


def test_the_scene_keeps_the_inputs_and_the_settings_keep_the_agent(ui):
    """The .ui binds the scene's choices to the parameter node; the server URL is a remembered
    setting only (one owner), not a scene parameter."""
    bound = {w.get("name"): prop.findtext("string") for w in ui.iter("widget") for prop in w.findall("property")
             if prop.get("name") == "SlicerParameterName"}
    assert {"inputVolume", "segmentation", "view", "workOn", "request", "maxSteps", "autoSteps"} <= set(bound.values())
    assert not set(bound) & set(FIELDS.values())


def test_work_on_offers_a_slice_and_the_whole_segment(ui):
    """The "Work on" choice lists `WORK_ON` in its order (the parameter node's Choice), and the
    actions that do something else on the whole segment say so."""
    combo = next(w for w in ui.iter("widget") if w.get("name") == "workOnComboBox")
    assert tuple(item.findtext("property/string") for item in combo.iter("item")) == WORK_ON
    assert set(IN_3D) <= set(ACTIONS) and all(text.endswith(".") for text in IN_3D.values())


def test_shortcuts_are_actions_and_the_help_lists_each():
    rows = help_rows()
    for name, key, what in SHORTCUTS:
        assert name in ACTIONS and f"<b>{key}</b>: {what}" in rows


def test_single_key_shortcuts_give_typing_widgets_their_keys():
    everything = {name for name, _key, _what in SHORTCUTS}
    in_a_view = lambda name: name in ("QWidget", "QVTKOpenGLNativeWidget")  # noqa: E731
    in_a_tree = lambda name: name in ("QWidget", "QAbstractItemView", "QTreeView")  # noqa: E731
    in_a_combo = lambda name: name in ("QWidget", "QComboBox")  # noqa: E731
    assert live_shortcuts(True, in_a_view) == everything
    assert live_shortcuts(True, None) == everything
    assert live_shortcuts(True, in_a_tree) == live_shortcuts(True, in_a_combo) == {"undo", "finish"}
    assert live_shortcuts(False, in_a_view) == frozenset()
