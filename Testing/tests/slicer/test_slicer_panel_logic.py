"""What the panel reads from the logic, checked as behaviour on real MRML (slicer-core): which
actions are possible and why not (`IBISAgentLogic.actions`, the panel's only source of enabled
states and tooltips), the saved settings object, configuring the agent from it (never falling
back to the in-process engine), recording, placing a point of a chosen polarity, auto-run taking
the points on screen first, and ending an episode that works on another segment."""

from __future__ import annotations

import numpy as np
import pytest
import slicer

from slicer_agents import DiskSegmenter, ScriptedPolicy, point
from test_slicer_logic import local_logic, make_case

from IBISAgentLib import history_text
from IBISAgentLib.actions import ACTIONS, BUSY
from IBISAgentLib.logic import IBISAgentLogic
from IBISAgentLib.settings import (DEFAULT_SERVER_URL, FIELDS, GROUP, KEYS, LOCAL, MODES, PROPERTIES, SERVER,
                                   AgentSettings)
from ibisagent.clicks import USER, Click


class Store:
    """What AgentSettings needs of QSettings: value(key, default) and setValue(key, value)."""

    def __init__(self, values=None) -> None:
        self.values = dict(values or {})

    def value(self, key, default=None):
        return self.values.get(key, default)

    def setValue(self, key, value) -> None:
        self.values[key] = value


def enabled(states):
    return {name for name, state in states.items() if state.enabled}


def reasons(logic, *inputs, **options):
    """{action: why it cannot run now ("" when it can)}."""
    return {name: state.reason for name, state in logic.actions(*inputs, **options).items()}


def test_every_action_has_a_state_and_nothing_runs_without_inputs():
    logic = IBISAgentLogic()
    states = logic.actions()
    assert set(states) == set(ACTIONS)
    assert states["continue"].reason == "Select a volume." and states["stop"].reason == "Nothing is running."
    assert states["localServer"].reason.startswith("Not needed")  # the in-process engine needs no server
    assert states["record"].reason == "Choose the record folder first."
    assert enabled(states) == {"testConnection", "recordFolder"}
    assert all(state.tooltip == (state.reason or ACTIONS[name][1]) for name, state in states.items())


def test_states_follow_the_episode(scene):
    volume, segmentation, ids, _truth = make_case(scene, "lps", "Red")
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5), point(0.3, 0.3)]))
    inputs = (volume, segmentation, ids[0])
    assert reasons(logic, volume, segmentation, "no such segment")["continue"].startswith("Select a segment")
    states = logic.actions(*inputs)
    assert {"continue", "autoRun", "save", "propagate"} <= enabled(states)
    assert states["next"].reason == states["finish"].reason == "Press Continue my mask first."
    logic.startEpisode(*inputs, view="Red")
    assert reasons(logic, *inputs)["skip"] == "No proposal on screen: press Next step."
    assert reasons(logic, *inputs)["undo"] == "Nothing to undo in this episode."
    logic.proposeNext()
    assert {"next", "accept", "skip", "flip", "finish", "addPositive"} <= enabled(logic.actions(*inputs))
    logic.acceptProposal()
    states = reasons(logic, *inputs)
    assert not states["undo"] and states["flip"] == "No proposed point on screen."
    busy = reasons(logic, *inputs, busy=True)
    assert busy["undo"] == busy["continue"] == BUSY and busy["stop"] == ""
    assert busy["cancel"] == "No propagation is running."  # Cancel belongs to a run-through
    logic.finish()
    assert reasons(logic, *inputs)["undo"] == "Press Continue my mask first."


def test_propagation_review_and_its_undo(scene):
    volume, segmentation, ids, truth = make_case(scene, "lps", "Red")
    slicer.util.updateSegmentBinaryLabelmapFromArray(truth, segmentation, ids[0], volume)
    logic = local_logic(ScriptedPolicy([]), DiskSegmenter())
    inputs = (volume, segmentation, ids[0])
    assert reasons(logic, *inputs)["nextSlice"].startswith("No propagation is under review")
    assert reasons(logic, *inputs)["undoPropagation"] == "No propagation to undo."
    logic.startPropagation(*inputs, view="Red", direction="up", maxSlices=1, stepsPerSlice=0)
    assert {"nextSlice", "stopHere", "finishPropagation", "undoPropagation"} <= enabled(logic.actions(*inputs))
    logic.finishPropagation()
    states = logic.actions(*inputs)
    assert not states["nextSlice"].enabled and "undoPropagation" in enabled(states)


def test_settings_round_trip_and_keep_the_keys_of_earlier_versions(tmp_path):
    assert AgentSettings.load(Store()) == AgentSettings()  # defaults: the server on this machine
    earlier = Store({f"{GROUP}/AgentMode": "local", f"{GROUP}/ServerURL": "http://127.0.0.1:9000",
                     f"{GROUP}/Token": "t0ken", f"{GROUP}/RecordForTraining": "on",
                     f"{GROUP}/TrainingRecordFolder": str(tmp_path)})
    settings = AgentSettings.load(earlier)
    assert settings.local and settings.serverUrl == "http://127.0.0.1:9000" and settings.token == "t0ken"
    assert settings.record and settings.recordFolder == str(tmp_path)
    store = Store()
    settings.save(store)
    assert AgentSettings.load(store) == settings
    assert store.values[f"{GROUP}/{KEYS['record']}"] == "on" and set(store.values) == {f"{GROUP}/{k}" for k in
                                                                                       KEYS.values()}
    assert AgentSettings(mode=SERVER).serverUrl == DEFAULT_SERVER_URL


def test_settings_go_to_the_panels_fields_and_back(tmp_path):
    settings = AgentSettings(LOCAL, "http://127.0.0.1:9000", " t0ken ", "/opt/python", "--policy qwen", True,
                             str(tmp_path))
    shown = settings.to_fields()
    assert shown["mode"] == MODES.index(LOCAL) == 1 and set(shown) == set(FIELDS) == set(PROPERTIES) | {
        "serverUrl", "token", "serverPython", "serverArguments"}
    assert AgentSettings.from_fields(shown) == settings
    assert "recordFolder" not in AgentSettings().to_fields()  # the button keeps its own until one is chosen
    typed = dict(shown, serverUrl=" http://127.0.0.1:9000 \n", serverPython=" /opt/python", mode=0)
    read = AgentSettings.from_fields(typed)
    assert (read.mode, read.serverUrl, read.serverPython, read.token) == (SERVER, "http://127.0.0.1:9000",
                                                                        "/opt/python", " t0ken ")


@pytest.mark.parametrize("url", ["", "not a url", "127.0.0.1:8765"])
def test_a_server_mode_without_a_usable_url_leaves_no_agent_and_says_why(scene, url):
    volume, segmentation, ids, _truth = make_case(scene, "lps", "Red")
    logic = IBISAgentLogic()
    logic.configure(AgentSettings(mode=SERVER, serverUrl=url))
    assert not logic.local and logic.serverUrl is None
    reason = reasons(logic, volume, segmentation, ids[0])["continue"]
    assert "must look like http://127.0.0.1:8765" in reason and reason == logic.agentProblem
    with pytest.raises(ValueError, match="must look like"):
        logic.startEpisode(volume, segmentation, ids[0], view="Red")
    logic.configure(AgentSettings(mode=LOCAL))
    assert logic.local and not logic.agentProblem and logic.actions(volume, segmentation, ids[0])["continue"].enabled


def test_configure_records_as_the_settings_say_and_keeps_one_engine(tmp_path):
    logic = IBISAgentLogic()
    logic.configure(AgentSettings(mode=LOCAL, record=True, recordFolder=str(tmp_path / "records")))
    assert logic.trainingRecord is not None and logic.trainingRecord.source == "panel"
    assert logic.actions()["record"].enabled
    engine = logic.localEngine()
    logic.configure(AgentSettings(mode=LOCAL))  # the same agent again: the engine is kept
    assert logic.trainingRecord is None and logic.localEngine() is engine
    assert logic.serverInfo()["policy"] == engine.policy.name and logic.localEngine() is engine
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        logic.configure(AgentSettings(mode=LOCAL, record=True, recordFolder=str(tmp_path / "file")))
    settings = AgentSettings(mode=LOCAL, record=True, recordFolder=str(tmp_path / "file"))
    assert "is a file" in logic.applySettings(settings)  # the panel's way: recording off, saying why
    assert not settings.record and logic.trainingRecord is None and logic.settings is settings
    assert logic.applySettings(AgentSettings(mode=LOCAL, record=True, recordFolder=str(tmp_path / "records"))) == ""
    assert logic.trainingRecord is not None


def test_a_placed_point_gets_the_chosen_polarity_and_the_users_list_comes_back(scene):
    volume, segmentation, ids, _truth = make_case(scene, "lps", "Red")
    logic = local_logic(ScriptedPolicy([]))
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    mine = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "my points")
    selection = scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    selection.SetReferenceActivePlaceNodeClassName(mine.GetClassName())
    selection.SetReferenceActivePlaceNodeID(mine.GetID())
    placed = []
    placement = logic.startPlacingPoint(False, lambda: placed.append(True))
    assert selection.GetActivePlaceNodeID() == placement.node.GetID()
    geometry = logic.workedSlice.geometry
    placement.node.AddControlPoint(*[float(v) for v in geometry.pixel_to_ras(4, 5)])
    placement.end()
    placement.end()
    assert selection.GetActivePlaceNodeID() == mine.GetID()
    assert not placement.node.GetNthControlPointSelected(0) and placement.node.GetNthControlPointLabel(0) == "-"
    assert logic.onScreenClicks() == [Click(4, 5, False, USER)]


def test_auto_run_applies_the_points_on_screen_first(scene):
    volume, segmentation, ids, _truth = make_case(scene, "lps", "Red")
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5), point(0.3, 0.3), point(0.7, 0.6)]))
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    shown = logic.proposeNext()
    logic.flipProposal()
    steps = []
    assert logic.runSteps(2, onStep=steps.append) == "step-limit"
    assert len(steps) == 2 and steps[0].clicks[0].positive is not shown.click.positive  # the edited point, first


def test_an_episode_on_another_segment_ends_and_keeps_its_mask(scene):
    volume, segmentation, ids, _truth = make_case(scene, "lps", "Red")
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5)]))
    logic.startEpisode(volume, segmentation, ids[0], view="Red")
    logic.proposeNext()
    logic.acceptProposal()
    kept = logic.workedSlice.labelmap.read().copy()
    assert not logic.finishIfElsewhere(segmentation, ids[0]) and logic.workedSlice is not None
    labelmap = logic.workedSlice.labelmap
    assert logic.finishIfElsewhere(segmentation, ids[1]) and logic.workedSlice is None
    assert np.array_equal(labelmap.read(), kept)


def test_the_panels_lines_come_from_the_logics_records(scene):
    logic = IBISAgentLogic()
    info = logic.serverInfo()
    assert history_text.connection(info) == (f"In Slicer (no server): policy {info['policy']}, tool "
                                             f"{info['segmenter']}, API {info['api_version']}")
    assert history_text.connection({"policy": "qwen", "records_sessions": True}).startswith("Connected: policy qwen")
    assert "Next slice ends" in history_text.carried_slice({"faded": True})
    volume, segmentation, ids, _truth = make_case(scene, "lps", "Red")
    logic = local_logic(ScriptedPolicy([point(0.5, 0.5)]))
    state = logic.startEpisode(volume, segmentation, ids[0], view="Red")
    assert history_text.start(state).startswith(f"Slice {state['slice_index']} of the Red view")
    assert history_text.placing(logic.state(), False) == "Click in the Red view to place a negative point."
    proposal = logic.proposeNext()
    assert history_text.proposal_status(proposal, None).startswith("Proposal on screen")
    assert history_text.step(logic.acceptProposal()).endswith("pixels in the mask.")
