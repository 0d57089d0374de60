"""IBISAgent: continue my mask, step by step, with the user in charge.

The 3D Slicer scripted module: module metadata, the parameter node, the panel (widget) and the
in-Slicer test. All computation lives in `IBISAgentLib` (`IBISAgentLogic` works from the Python
console with no panel; the local server process, the requirements, the worker thread and the
shortcut rules are there too, where tests reach them without Qt). The widget keeps the wiring
and the dialogs. Nothing here imports torch or any server dependency: the panel talks to the
agent server through the torch-free `ibisagent.client`.
"""

import contextlib
import logging
import os
import shlex
import sys
import time
import traceback
from typing import Annotated, Optional
from urllib.parse import urlsplit

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# The module folder holds the torch-free `ibisagent` package and the MRML adapters
# (`IBISAgentLib`); make both importable however Slicer found this file.
MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
if MODULE_DIR not in sys.path:
    sys.path.insert(0, MODULE_DIR)

from ibisagent import protocol
from ibisagent.errors import Cancelled
from IBISAgentLib import proposal_markups, requirements
from IBISAgentLib.agent_worker import AgentWorker, wait_for
from IBISAgentLib.local_server import LocalServer, LocalServerError, default_python
from IBISAgentLib.logic import IBISAgentLogic
from IBISAgentLib.shortcuts import SHORTCUTS, help_rows, live_shortcuts

logger = logging.getLogger("IBISAgent")

DEFAULT_SERVER_URL = f"http://{protocol.DEFAULT_HOST}:{protocol.DEFAULT_PORT}"
SETTINGS_GROUP = "IBISAgent"
#: The application settings the panel remembers (Edit > Application Settings keeps them).
SETTINGS_KEYS = ("AgentMode", "ServerURL", "Token", "ServerPython", "ServerArguments", "RecordForTraining",
                 "TrainingRecordFolder")
#: Seconds of waiting before a cancellable progress dialog appears (the wait cursor is immediate).
PROGRESS_DIALOG_DELAY_S = 2.0
#: Seconds a freshly started local server gets to answer its first ping.
SERVER_START_TIMEOUT_S = 120.0
#: Milliseconds between two looks at a starting or running local server (log, readiness).
SERVER_POLL_MS = 300
#: agentModeComboBox rows: the agent server, or the in-process engine (no server).
AGENT_MODE_SERVER, AGENT_MODE_LOCAL = 0, 1
#: The .ui property that binds a widget to a parameter (what parameterNodeWrapper looks for).
PARAMETER_PROPERTY = "SlicerParameterName"


def resourceFile(relativePath):
    """Absolute path of a resource (e.g. "UI/IBISAgent.ui").

    Installed extensions keep Resources/ next to this file (CMake copies it there); a source
    checkout keeps it at the repository top level, one folder up.
    """
    for base in (MODULE_DIR, os.path.dirname(MODULE_DIR)):
        candidate = os.path.join(base, "Resources", relativePath)
        if os.path.exists(candidate):
            return candidate
    return os.path.join(MODULE_DIR, "Resources", relativePath)


#
# IBISAgent
#


class IBISAgent(ScriptedLoadableModule):
    """Module metadata (title, category, help with the shortcuts, acknowledgement)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "IBISAgent"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations", "Markups"]
        self.parent.contributors = ["IBISAgent for 3D Slicer developers"]
        self.parent.helpText = f"""
<p>Continue a segment click by click with the IBISAgent segmentation agent. Pick a volume, a
segmentation and a segment (the Segment Editor's selection is the default), the slice view to
work in, and optionally a request such as "Segment the liver". Press <b>Continue my mask</b>:
the agent looks at the current slice and your segment and proposes a click (green: positive,
red: negative). Drag, flip, delete or add points, then <b>Accept</b>. Only the worked slice of
the chosen segment changes, and every step can be undone.</p>
<p>The agent runs in a local server on this machine (images never leave it): use <b>Start local
server</b>, or point the URL at a server you started yourself. <b>Local (no server)</b> runs the
weight-free policy and the classical tool inside Slicer instead.</p>
<p><b>Propagate</b> carries your mask from the view's slice through the volume (up, down or
both, within a slice range and a maximum number of slices), the agent refining every slice, until
the target ends (the mask vanishes or shrinks, the carried mask fades and nobody changes it, or the
agent says there is no target). <b>Review</b>
stops on every slice with the proposal shown (<b>Next slice</b>, <b>Stop here</b>); <b>Run
through</b> does every slice (Cancel keeps the slices done) and you fix any slice afterwards.
<b>Undo propagation</b> takes the whole propagation back.</p>
<p><b>Record for training</b> (Training section) writes every step you accept or edit, with the
image the agent saw, into a folder on this computer (skipped proposals are not written, undone
steps are removed); <code>ibisagent export-training</code> turns the folder into fine-tuning data.</p>
<p>Keyboard shortcuts (while this module is shown; the single letters not while you type in a
text field, list or combo box):</p><ul>{help_rows()}</ul>
<p>See the <a href="https://github.com/ibisagent/IBISAgentSlicer">project page</a>.</p>
"""
        self.parent.acknowledgementText = """
Built on the IBISAgent method (CVPR 2026, arXiv 2601.03054; code released under the MIT licence)
and on 3D Slicer's scripted module template. The classical segmentation tool uses SimpleITK.
"""


#
# IBISAgentParameterNode
#


@parameterNodeWrapper
class IBISAgentParameterNode:
    """The user's choices, saved with the scene.

    inputVolume - the volume to segment (scalar or colour).
    segmentation, segmentId - the segment to continue.
    view - the slice view to work in; its current slice is the one edited.
    request - what to segment, in words (may be empty).
    serverUrl - the agent server (the token stays in application settings, not in the scene).
    maxSteps - the agent's step limit for one episode.
    autoSteps - how many steps "Auto-run" takes without asking.
    propagateDirection, propagateMode, propagateFirst, propagateLast (-1: the volume's end),
    propagateMaxSlices (0: no limit), propagateSteps - the Propagate section's choices.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    segmentId: str = ""
    view: Annotated[str, Choice(["Red", "Yellow", "Green"])] = "Red"
    request: str = ""
    serverUrl: str = DEFAULT_SERVER_URL
    maxSteps: Annotated[int, WithinRange(1, 100)] = 20
    autoSteps: Annotated[int, WithinRange(1, 100)] = 5
    propagateDirection: Annotated[str, Choice(["up", "down", "both"])] = "both"
    propagateMode: Annotated[str, Choice(["review", "run-through"])] = "review"
    propagateFirst: Annotated[int, WithinRange(-1, 9999)] = -1
    propagateLast: Annotated[int, WithinRange(-1, 9999)] = -1
    propagateMaxSlices: Annotated[int, WithinRange(0, 9999)] = 0
    propagateSteps: Annotated[int, WithinRange(0, 100)] = 3


class _ParameterNodeSource(ScriptedLoadableModuleLogic):
    """Finds or creates the module's singleton parameter node (the agent logic does not need one)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.moduleName = "IBISAgent"

    def getParameterNode(self):
        return IBISAgentParameterNode(super().getParameterNode())


#
# IBISAgentWidget
#


class IBISAgentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: reads controls, calls the logic, shows results. No computation and no episode
    state here: what is running, what can be undone, what is on screen all come from the logic."""

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._worker = None
        self._pinger = None
        self._shortcuts = {}
        self._shown = False
        self._server = None
        self._serverReady = False
        self._serverTimer = None
        self._serverDeadline = None
        self._pinging = False
        self._busy = False
        self._cancelRequested = False
        self._stopRequested = False
        self._placing = None  # (proposal point list, positive, PlacementTarget) while placing a point
        self._propagating = False  # a run-through propagation is in progress (Cancel applies to it)
        self._propagatedSlices = 0  # slices written by the propagation in progress
        self.lastError = None  # message of the last failure, for tests and the status line

    # -- lifecycle -------------------------------------------------------------------------

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(resourceFile("UI/IBISAgent.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = IBISAgentLogic()
        # One long-lived daemon thread for every agent call, and one for pings, so a ping never
        # waits behind a slow model call. Neither touches Qt or MRML.
        self._worker = AgentWorker("IBISAgent")
        self._pinger = AgentWorker("IBISAgent-ping")
        self.logic.callAgent = self._runRemote
        self.logic.startAgentCall = lambda function: self._worker.submit(function)

        self.logic.episodeEndedCallback = self.onEpisodeEnded

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.ui.fromSegmentEditorButton.connect("clicked()", self.onFromSegmentEditor)
        # Settings are saved on the user's own edits only ("activated", "editingFinished"), so
        # tests and scripts that set the fields never overwrite what the user chose.
        self.ui.agentModeComboBox.connect("currentIndexChanged(int)", lambda _index: self._onServerFieldsChanged())
        self.ui.agentModeComboBox.connect("activated(int)", lambda _index: self._saveSettings())
        for field in (self.ui.tokenLineEdit, self.ui.serverUrlLineEdit, self.ui.serverPythonLineEdit,
                      self.ui.serverArgumentsLineEdit):
            field.connect("editingFinished()", self._saveSettings)
        self.ui.serverUrlLineEdit.connect("textChanged(QString)", lambda _text: self._onServerFieldsChanged())
        self.ui.testConnectionButton.connect("clicked()", self.onTestConnection)
        self.ui.startServerButton.connect("clicked()", self.onStartStopServer)
        self.ui.continueButton.connect("clicked()", self.onContinue)
        self.ui.nextButton.connect("clicked()", self.onNext)
        self.ui.acceptButton.connect("clicked()", self.onAccept)
        self.ui.skipButton.connect("clicked()", self.onSkip)
        self.ui.undoButton.connect("clicked()", self.onUndo)
        self.ui.flipButton.connect("clicked()", self.onFlip)
        self.ui.addPositiveButton.connect("clicked()", lambda: self.onPlacePoint(True))
        self.ui.addNegativeButton.connect("clicked()", lambda: self.onPlacePoint(False))
        self.ui.autoRunButton.connect("clicked()", self.onAutoRun)
        self.ui.stopButton.connect("clicked()", self.onStop)
        self.ui.finishButton.connect("clicked()", self.onFinish)
        self.ui.saveButton.connect("clicked()", self.onSave)
        self.ui.historyListWidget.connect("currentRowChanged(int)", self.onHistoryRowChanged)
        self.ui.propagateButton.connect("clicked()", self.onPropagate)
        self.ui.cancelPropagationButton.connect("clicked()", self.onCancelWait)
        self.ui.undoPropagationButton.connect("clicked()", self.onUndoPropagation)
        self.ui.nextSliceButton.connect("clicked()", self.onNextSlice)
        self.ui.stopHereButton.connect("clicked()", self.onStopHere)
        self.ui.finishPropagationButton.connect("clicked()", self.onFinishPropagation)
        # Recording follows the controls; "clicked" and "directorySelected" are the user's own edits.
        self.ui.recordCheckBox.connect("clicked(bool)", self.onRecordClicked)
        self.ui.recordFolderButton.connect("directorySelected(QString)", self.onRecordFolderSelected)

        self._createShortcuts()
        slicer.app.connect("focusChanged(QWidget*,QWidget*)", self._onFocusChanged)
        self._loadSettings()
        self._loadTrainingSettings()
        slicer.app.connect("aboutToQuit()", self.stopLocalServer)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.removeObservers()
        self.setParameterNode(None)
        if self.logic is not None:
            self.logic.setTrainingRecord(None)  # finishes the running episode's record
        slicer.app.disconnect("focusChanged(QWidget*,QWidget*)", self._onFocusChanged)
        self.stopLocalServer()
        for shortcut in self._shortcuts.values():
            shortcut.setEnabled(False)
            shortcut.setParent(None)
        self._shortcuts = {}
        for worker in (self._worker, self._pinger):
            if worker is not None:
                worker.shutdown()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()
        self._shown = True
        self._updateShortcuts()

    def exit(self) -> None:
        """Called each time the user opens a different module. The parameter node stays
        connected: one connection per parameter node, made once (see setParameterNode)."""
        self._shown = False
        self._updateShortcuts()
        self._stopPlacing()

    def onEpisodeEnded(self, reason) -> None:
        """Called by the logic when its episode ended by itself (its nodes went away)."""
        self._stopPlacing()
        if hasattr(self, "ui"):
            self._addHistory("Ended", reason)
            self._setStatus(reason)
            self._updateButtonStates()

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed (the logic ends its episode by itself)."""
        self._stopPlacing()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node --------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        """Ensure the parameter node exists, is observed, and has sensible defaults."""
        self.setParameterNode(_ParameterNodeSource().getParameterNode())
        savedUrl = self._setting("ServerURL", "")
        if savedUrl and self._parameterNode.serverUrl == DEFAULT_SERVER_URL:
            self._parameterNode.serverUrl = savedUrl  # a new scene starts from the remembered server
        if not self._parameterNode.segmentation:
            self.onFromSegmentEditor()
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.inputVolume = firstVolume

    def setParameterNode(self, inputParameterNode: Optional[IBISAgentParameterNode]) -> None:  # noqa: FA100
        """Bind the GUI to a parameter node (None unbinds); binding the same node again does
        nothing, so module enters never stack connections."""
        if inputParameterNode is not None and self._parameterNode is not None and (
            inputParameterNode.parameterNode is self._parameterNode.parameterNode
        ):
            self._onParameterNodeModified()
            return
        if self._parameterNode:
            if self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # connectParametersToGui returns the tag in every Slicer version; connectGui returns
            # None before 5.10, which made disconnectGui a no-op and stacked connections.
            self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(self._parameterWidgets())
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def _parameterWidgets(self) -> dict:
        """parameter name -> widget, for the widgets the .ui binds (what connectGui would find)."""
        widgets = {}
        for widget in vars(self.ui).values():
            name = widget.property(PARAMETER_PROPERTY) if hasattr(widget, "property") else None
            if name:
                widgets[str(name)] = widget
        return widgets

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        """Mirror the parts the wrapper cannot bind (the segment selector), then refresh buttons."""
        p = self._parameterNode
        if p:
            wasBlocked = self.ui.segmentSelector.blockSignals(True)
            self.ui.segmentSelector.setCurrentNode(p.segmentation)
            if p.segmentId and self.ui.segmentSelector.currentSegmentID() != p.segmentId:
                self.ui.segmentSelector.setCurrentSegmentID(p.segmentId)
            self.ui.segmentSelector.blockSignals(wasBlocked)
        self._updateButtonStates()

    def onSegmentationChanged(self, node) -> None:
        """The segmentation combo box changed: show its segments, and set segmentation and
        segment together. (This slot runs before the wrapper's own; setting only the segment
        here used to make the wrapper write the old segmentation back.)"""
        p = self._parameterNode
        # The same segmentation again (e.g. the wrapper writing the GUI from a loaded scene): keep
        # the chosen segment rather than the selector's first one.
        keep = ""
        if p and node is not None and node is p.segmentation and p.segmentId:
            keep = p.segmentId if node.GetSegmentation().GetSegment(p.segmentId) is not None else ""
        wasBlocked = self.ui.segmentSelector.blockSignals(True)
        self.ui.segmentSelector.setCurrentNode(node)
        if keep:
            self.ui.segmentSelector.setCurrentSegmentID(keep)
        segmentId = keep or self.ui.segmentSelector.currentSegmentID() or ""
        self.ui.segmentSelector.blockSignals(wasBlocked)
        if p and (p.segmentation is not node or p.segmentId != segmentId):
            with slicer.util.NodeModify(p):
                p.segmentation = node
                p.segmentId = segmentId
        self._endEpisodeIfElsewhere()

    def onSegmentChanged(self, segmentId) -> None:
        """The user picked another segment."""
        if self._parameterNode and self._parameterNode.segmentId != segmentId:
            self._parameterNode.segmentId = segmentId or ""
        self._endEpisodeIfElsewhere()

    def _endEpisodeIfElsewhere(self) -> None:
        """A running episode on a segment other than the selected one ends (its mask stays)."""
        worked, p = self.logic.workedSlice if self.logic else None, self._parameterNode
        if worked is None or p is None or self._busy:
            return
        if worked.segmentation is not p.segmentation or worked.segment_id != p.segmentId:
            self._finishQuietly("Finished: another segment was chosen.")

    def onFromSegmentEditor(self) -> None:
        """Take the volume, segmentation and segment that the Segment Editor has selected."""
        p = self._parameterNode
        if not p:
            return
        editorNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentEditorNode")
        if editorNode is None or editorNode.GetSegmentationNode() is None:
            return
        sourceVolume = editorNode.GetSourceVolumeNode() if hasattr(editorNode, "GetSourceVolumeNode") else None
        with slicer.util.NodeModify(p):
            p.segmentation = editorNode.GetSegmentationNode()
            if sourceVolume:
                p.inputVolume = sourceVolume
            if editorNode.GetSelectedSegmentID():
                p.segmentId = editorNode.GetSelectedSegmentID()

    # -- button states ---------------------------------------------------------------------

    def _missingInputs(self):
        """One sentence saying what is missing before the agent can start, or "" if nothing."""
        p = self._parameterNode
        if not p or not p.inputVolume:
            return "Select a volume."
        if not p.segmentation:
            return "Select a segmentation (or create one in the Segment Editor)."
        if not p.segmentId or p.segmentation.GetSegmentation().GetSegment(p.segmentId) is None:
            return "Select a segment (add an empty one to start from nothing)."
        if not self._localMode() and not self.ui.serverUrlLineEdit.text.strip():
            return "Enter the agent server URL (Server section), or choose Local (no server)."
        return ""

    def _updateButtonStates(self) -> None:
        """Enable each action only when it can run; its tooltip says what is missing. What runs,
        what can be undone and what is on screen are read from the logic."""
        if not hasattr(self, "ui"):
            return
        worked = self.logic.workedSlice if self.logic else None
        missing = self._missingInputs()
        busy = "Wait for the agent to answer (or press Stop)." if self._busy else ""
        noEpisode = "" if worked is not None else "Press Continue my mask first."
        pending = worked is not None and worked.session.pending is not None and worked.session.stop_reason is None
        noProposal = "" if pending else "No proposal on screen: press Next step."
        pointsShown = worked is not None and worked.markups.proposals.GetNumberOfControlPoints() > 0
        noPoints = "" if pointsShown else "No proposed point on screen."
        try:
            canUndo = worked is not None and not self._busy and worked.can_undo
        except Exception:  # noqa: BLE001 - e.g. the segment's geometry changed; the next action says so
            canUndo = False
        noUndo = "" if canUndo else "Nothing to undo in this episode."
        rules = {
            self.ui.continueButton: (busy or missing, "Start from the current segment on this slice."),
            self.ui.nextButton: (busy or missing or noEpisode, "Ask the agent for its next click."),
            self.ui.acceptButton: (busy or missing or noEpisode, "Apply the points on screen."),
            self.ui.skipButton: (busy or noEpisode or noProposal, "Delete the proposal without applying it."),
            self.ui.undoButton: (busy or noEpisode or noUndo, "Undo the last step or hand edit (Ctrl+Z)."),
            self.ui.flipButton: (busy or noEpisode or noPoints, "Flip the selected proposed point."),
            self.ui.addPositiveButton: (busy or noEpisode, "Place a positive point in the view."),
            self.ui.addNegativeButton: (busy or noEpisode, "Place a negative point in the view."),
            self.ui.autoRunButton: (busy or missing, "Run the agent for N steps, accepting each proposal."),
            self.ui.finishButton: (busy or noEpisode, "Keep the mask in the segment and end the episode."),
            self.ui.saveButton: (busy or missing, "Save the segment as .seg.nrrd or a NIfTI labelmap."),
            self.ui.testConnectionButton: (busy, "Check that the agent answers and show what it runs."),
        }
        rules.update(self._propagationRules(busy, missing))
        for button, (reason, tip) in rules.items():
            button.enabled = not reason
            button.toolTip = reason or tip
        self.ui.cancelPropagationButton.enabled = self._busy and self._propagating
        self.ui.cancelPropagationButton.toolTip = ("Stop now; the slices done so far stay (Undo propagation takes them "
                                                   "back)." if self._propagating else "No propagation is running.")
        self.ui.stopButton.enabled = self._busy
        self.ui.stopButton.toolTip = "Stop after the current step." if self._busy else "Nothing is running."
        running = self._serverRunning()
        self.ui.startServerButton.text = "Stop local server" if running else "Start local server"
        noServer = "Not needed: the agent runs inside Slicer (Local mode)." if self._localMode() else ""
        self.ui.startServerButton.enabled = not self._busy and not (noServer and not running)
        self.ui.startServerButton.toolTip = noServer or "Run the agent server on this computer; it stops with Slicer."
        self._showTrainingRecord()

    # -- settings --------------------------------------------------------------------------

    @staticmethod
    def _setting(key, default=""):
        value = qt.QSettings().value(f"{SETTINGS_GROUP}/{key}", default)
        return default if value is None else str(value)

    def _loadSettings(self) -> None:
        """Restore the server fields (the URL itself goes through the parameter node)."""
        wasBlocked = self.ui.agentModeComboBox.blockSignals(True)
        self.ui.agentModeComboBox.currentIndex = AGENT_MODE_LOCAL if self._setting("AgentMode") == "local" else 0
        self.ui.agentModeComboBox.blockSignals(wasBlocked)
        self.ui.tokenLineEdit.text = self._setting("Token")
        self.ui.serverPythonLineEdit.text = self._setting("ServerPython")
        self.ui.serverArgumentsLineEdit.text = self._setting("ServerArguments")
        self.ui.serverPythonLineEdit.placeholderText = default_python()
        self._onServerFieldsChanged()

    def _saveSettings(self) -> None:
        """Remember the server fields; connected to the user's own edits only."""
        settings = qt.QSettings()
        settings.beginGroup(SETTINGS_GROUP)
        settings.setValue("AgentMode", "local" if self._localMode() else "server")
        settings.setValue("ServerURL", self.ui.serverUrlLineEdit.text.strip())
        settings.setValue("Token", self.ui.tokenLineEdit.text)
        settings.setValue("ServerPython", self.ui.serverPythonLineEdit.text.strip())
        settings.setValue("ServerArguments", self.ui.serverArgumentsLineEdit.text.strip())
        settings.endGroup()
        self._onServerFieldsChanged()

    def _onServerFieldsChanged(self) -> None:
        with contextlib.suppress(ValueError):  # an unusable URL is reported by the buttons and the next action
            self._connectLogic()
        self._updateButtonStates()

    # -- recording for training ------------------------------------------------------------

    def _loadTrainingSettings(self) -> None:
        """Restore "Record for training" and its folder, and record again if it was on (the
        Training section then opens, so recording is never out of sight)."""
        wasBlocked = self.ui.recordCheckBox.blockSignals(True)
        self.ui.recordCheckBox.checked = self._setting("RecordForTraining") == "on"
        self.ui.recordCheckBox.blockSignals(wasBlocked)
        folder = self._setting("TrainingRecordFolder")
        if folder:
            wasBlocked = self.ui.recordFolderButton.blockSignals(True)
            self.ui.recordFolderButton.directory = folder
            self.ui.recordFolderButton.blockSignals(wasBlocked)
        self.ui.trainingCollapsibleButton.collapsed = not self.ui.recordCheckBox.checked
        self._applyTrainingRecord(showErrors=False)

    def onRecordClicked(self, checked) -> None:
        """The user turned "Record for training" on or off."""
        qt.QSettings().setValue(f"{SETTINGS_GROUP}/RecordForTraining", "on" if checked else "off")
        self._applyTrainingRecord()

    def onRecordFolderSelected(self, folder) -> None:
        """The user chose the record folder."""
        qt.QSettings().setValue(f"{SETTINGS_GROUP}/TrainingRecordFolder", folder)
        self._applyTrainingRecord()

    def _applyTrainingRecord(self, showErrors=True) -> None:
        """Record into the chosen folder while the box is checked, else not (the logic does it)."""
        folder = self._setting("TrainingRecordFolder")
        try:
            self.logic.setTrainingRecord(folder if folder and self.ui.recordCheckBox.checked else None, source="panel")
        except Exception as error:  # noqa: BLE001 - shown to the user; the box says recording is off
            self.ui.recordCheckBox.checked = False
            self._setStatus(f"Not recording for training: {error}")
            if showErrors:
                slicer.util.errorDisplay(f"Cannot record for training.\n\n{error}")
        self._updateButtonStates()

    def _showTrainingRecord(self) -> None:
        """The Training section: the folder, whether the box can change now, the recorded steps."""
        folder = self._setting("TrainingRecordFolder")
        reason = ("Wait for the agent to answer (or press Stop)." if self._busy
                  else "" if folder else "Choose the record folder first.")
        self.ui.recordCheckBox.enabled = not reason
        self.ui.recordCheckBox.toolTip = reason or (
            "Write every step you accept or edit (the image the agent saw, its proposal, your clicks) into the "
            "record folder; skipped proposals are not written, undone steps are removed. Nothing leaves this computer.")
        self.ui.recordFolderButton.enabled = not self._busy
        self.ui.recordFolderButton.text = folder or "Choose a folder..."
        if self.logic is None or self.logic.trainingRecord is None:
            self.ui.recordedStepsLabel.text = "Not recording."
        else:
            self.ui.recordedStepsLabel.text = (f"Recording: {self.logic.recordedSteps} step(s) recorded, "
                                               f"{self.logic.recordFolderSteps} in the folder.")

    # -- running work off the main thread --------------------------------------------------

    @contextlib.contextmanager
    def _action(self, failureMessage):
        """Wrap one user action: wait cursor at once, buttons locked, one error display."""
        self._stopPlacing()
        self._busy = True
        self._cancelRequested = False
        self._stopRequested = False
        self._updateButtonStates()
        qt.QApplication.setOverrideCursor(qt.Qt.WaitCursor)
        try:
            self._connectLogic()  # the URL may have changed through the parameter node; refuses an empty one
            yield
            self.lastError = None
        except Cancelled:
            self.lastError = None
            self._finishQuietly("Cancelled: the agent session ended; the segment keeps the steps applied before. "
                                "Press Continue my mask to go on.")
        except Exception as error:  # noqa: BLE001 - every failure is shown to the user, with details
            self.lastError = f"{failureMessage} {error}"
            logger.error(traceback.format_exc())
            self._setStatus(self.lastError)
            qt.QApplication.restoreOverrideCursor()
            slicer.util.errorDisplay(f"{failureMessage}\n\n{error}", detailedText=traceback.format_exc())
            qt.QApplication.setOverrideCursor(qt.Qt.WaitCursor)
        finally:
            qt.QApplication.restoreOverrideCursor()
            self._busy = False
            self._updateButtonStates()

    def _runRemote(self, function):
        """Run ``function`` on the worker thread and return its result, keeping the panel alive.

        Main thread only. Waits with the GIL released (`agent_worker.wait_for`), processing Qt
        events between waits; after PROGRESS_DIALOG_DELAY_S a progress dialog offers Cancel,
        which raises ``ibisagent.errors.Cancelled`` here. The cancelled call goes on on the old thread (its
        answer is dropped) and later calls get a fresh thread instead of queueing behind it.
        ``function`` must not touch Qt or MRML.
        """
        future = self._worker.submit(function)
        dialogs = []

        def showDialog():
            dialog = qt.QProgressDialog("Waiting for the agent...", "Cancel", 0, 0, slicer.util.mainWindow())
            dialog.setWindowTitle("IBISAgent")
            dialog.setWindowModality(qt.Qt.WindowModal)
            dialog.connect("canceled()", self.onCancelWait)
            dialog.show()
            dialogs.append(dialog)

        try:
            return wait_for(future, tick=slicer.app.processEvents, should_cancel=lambda: self._cancelRequested,
                            on_slow=showDialog, slow_after=PROGRESS_DIALOG_DELAY_S)
        except Cancelled:
            self._worker.shutdown()
            self._worker = AgentWorker("IBISAgent")
            raise
        finally:
            for dialog in dialogs:
                dialog.hide()
                dialog.deleteLater()

    def onCancelWait(self) -> None:
        """Cancel the current wait (the progress dialog's Cancel)."""
        self._cancelRequested = True
        self._stopRequested = True

    # -- the logic's configuration -----------------------------------------------------------

    def _localMode(self) -> bool:
        return self.ui.agentModeComboBox.currentIndex == AGENT_MODE_LOCAL

    def _connectLogic(self) -> None:
        """Point the logic at the server, or at its in-process engine in Local mode. Raises
        ValueError for an empty or malformed URL in Server mode (never runs locally instead)."""
        if self._localMode():
            self.logic.useLocalEngine()
        else:
            self.logic.connect(self.ui.serverUrlLineEdit.text, self.ui.tokenLineEdit.text or None)

    def _ensureRequirements(self, needed, who, otherwise) -> None:
        """Ask once with the full list of missing packages, then install them into Slicer's Python."""
        missing = requirements.missing(needed)
        if not missing:
            return
        if not slicer.util.confirmOkCancelDisplay(
            f"{who} needs these Python packages in Slicer's Python:\n\n" + "\n".join(missing)
            + "\n\nInstall them now? (This takes a few minutes.)"
        ):
            raise RuntimeError(f"Packages not installed: {', '.join(missing)}. {otherwise}")
        slicer.util.pip_install(missing)

    def _ensureLocalEngine(self) -> None:
        """In Local mode, make sure the in-process engine's packages are installed (asks first)."""
        if self._localMode():
            self._ensureRequirements(requirements.engine_requirements(), "The in-process agent",
                                     "Install them, or use an agent server.")

    # -- actions ---------------------------------------------------------------------------

    def onTestConnection(self) -> None:
        """Check the server and show what it runs (policy, segmenter, version)."""
        with self._action("Cannot reach the agent."):
            self._ensureLocalEngine()
            info = self.logic.serverInfo()
            where = "In Slicer (no server)" if info.get("local") else "Connected"
            policy, tool, api = (info.get(key, "?") for key in ("policy", "segmenter", "api_version"))
            recording = "; the server records every session for training" if info.get("records_sessions") else ""
            self.ui.connectionStatusLabel.text = f"{where}: policy {policy}, tool {tool}, API {api}{recording}"
            self._setStatus("Agent ready.")

    def onContinue(self) -> None:
        """Continue my mask: start an episode from the segment on the view's current slice."""
        with self._action("Could not start the agent on this slice."):
            self.ui.historyListWidget.clear()
            state = self._startEpisode()
            self._addHistory("Start", self._startText(state))
            self._proposeOnce()

    def _startEpisode(self):
        self._ensureLocalEngine()
        p = self._parameterNode
        return self.logic.startEpisode(p.inputVolume, p.segmentation, p.segmentId, request=p.request,
                                       view=p.view, maxSteps=p.maxSteps)

    def onNext(self) -> None:
        """Ask the agent for its next proposal."""
        with self._action("The agent could not propose a step."):
            self._proposeOnce()

    def onAccept(self) -> None:
        """Apply the points on screen (the proposal as edited, plus any added points)."""
        with self._action("The step could not be applied; the segment is unchanged."):
            self._showStep(self.logic.acceptProposal())

    def onSkip(self) -> None:
        """Delete the proposal without applying it."""
        with self._action("Could not skip the proposal."):
            self.logic.skipProposal()
            self._addHistory("Skipped", "Proposal deleted.")

    def onUndo(self) -> None:
        """Undo the last step (or the hand edit made since)."""
        with self._action("Could not undo."):
            if self.logic.undo():
                self._addHistory("Undo", "Last change undone; the segment is back as it was.")

    def onFlip(self) -> None:
        """Flip the polarity of the selected (or only) proposed point."""
        with self._action("Could not flip the point."):
            index = self.logic.flipProposal()
            self._setStatus(f"Proposed point {index + 1} flipped; press Accept to apply the points on screen.")

    def onAutoRun(self) -> None:
        """Accept what is on screen, then run until N steps are done, the agent stops or Stop
        is pressed (the logic's run loop)."""
        with self._action("Auto-run stopped on an error; completed steps are kept."):
            count = self._parameterNode.autoSteps
            if self.logic.workedSlice is None:
                state = self._startEpisode()
                self._addHistory("Start", self._startText(state))
            elif self.logic.workedSlice.markups.proposals.GetNumberOfControlPoints():
                self._showStep(self.logic.acceptProposal())
                count -= 1
            if count > 0:
                stop = self.logic.runSteps(count, decide=self._autoDecide, onStep=self._showStep,
                                           onProposal=self._showProposal)
                self._setStatus(f"Auto-run ended ({stop}).")

    def _autoDecide(self, proposal):
        """Auto-run's decision: what is on screen, unless Stop was pressed."""
        return None if self._stopRequested else self.logic.onScreenClicks()

    def onStop(self) -> None:
        """Stop auto-run after the current step."""
        self._stopRequested = True
        self._setStatus("Stopping after the current step...")

    def onFinish(self) -> None:
        """Keep the mask in the segment and end the episode (while reviewing a propagation: end
        the propagation)."""
        if self.logic.propagation is not None:
            self.onFinishPropagation()
            return
        with self._action("Could not finish; the segment is unchanged."):
            result = self.logic.finish()
            if result.get("answer"):
                self._addHistory("Answer", str(result["answer"]), bold=True)
            self._addHistory("Finished", self._statisticsText(result))

    def _finishQuietly(self, message) -> None:
        """End the running episode (its mask stays) and say why; never raises."""
        try:
            if self.logic.workedSlice is not None:
                self.logic.finish()
                self._addHistory("Finished", message)
        except Exception:  # noqa: BLE001 - the episode's nodes may be gone; it is ended either way
            logger.debug(traceback.format_exc())
        self._setStatus(message)

    def onSave(self, path=None) -> None:
        """Save the segment (.seg.nrrd, or a NIfTI labelmap for .nii/.nii.gz)."""
        if not path:
            path = qt.QFileDialog.getSaveFileName(
                slicer.util.mainWindow(),
                "Save mask",
                "",
                "Segmentation (*.seg.nrrd);;NIfTI labelmap (*.nii.gz *.nii)",
            )
        if not path:
            return
        with self._action("Could not save the mask."):
            p = self._parameterNode
            written = self.logic.saveSegment(p.segmentation, p.segmentId, path, referenceVolumeNode=p.inputVolume)
            self._setStatus("Saved " + ", ".join(written or [path]))

    def _proposeOnce(self) -> None:
        """One proposal, shown in the history and on screen."""
        self._showProposal(self.logic.proposeNext())

    def _showProposal(self, proposal) -> None:
        action = proposal.action.to_text() if proposal.action else "no action"
        self._addHistory(f"Step {proposal.step + 1}: {action}", proposal.reasoning or "")
        if proposal.answer:
            self._addHistory("Answer", str(proposal.answer), bold=True)
        stopReason = self.logic.workedSlice.session.stop_reason if self.logic.workedSlice else None
        if stopReason:
            self._setStatus(f"The agent stopped ({stopReason}). Press Finish, or add points and Accept.")
        else:
            self._setStatus("Proposal on screen: drag, flip, delete or add points, then Accept.")

    def _showStep(self, step) -> None:
        self._setStatus(f"Step {step.index} applied: {step.mask_pixels} pixels in the mask.")
        slicer.app.processEvents()

    # -- propagation through the slices ------------------------------------------------------

    def _propagationRules(self, busy, missing) -> dict:
        """Button -> (reason it is disabled or "", tooltip) for the Propagate section."""
        reviewing = self.logic is not None and self.logic.propagation is not None
        noReview = "" if reviewing else "No propagation is under review (Mode: review, then Propagate)."
        last = self.logic.propagation or self.logic.lastPropagation if self.logic else None
        noUndo = "" if last is not None and last.touched else "No propagation to undo."
        return {
            self.ui.propagateButton: (busy or missing, "Carry the mask of the view's slice through the volume, the "
                                      "agent checking every slice."),
            self.ui.nextSliceButton: (busy or noReview, "Keep this slice as it is and go to the next one."),
            self.ui.stopHereButton: (busy or noReview, "The target ends here: this slice goes back as it was."),
            self.ui.finishPropagationButton: (busy or noReview, "Keep this slice and end the propagation."),
            self.ui.undoPropagationButton: (busy or noUndo, "Put every slice of the last propagation back as it was."),
        }

    def _propagationArguments(self) -> dict:
        p = self._parameterNode
        return {
            "view": p.view, "direction": p.propagateDirection, "request": p.request,
            "first": None if p.propagateFirst < 0 else p.propagateFirst,
            "last": None if p.propagateLast < 0 else p.propagateLast,
            "maxSlices": p.propagateMaxSlices or None, "stepsPerSlice": p.propagateSteps,
        }

    def onPropagate(self) -> None:
        """Propagate: review each slice (stop on every slice with the proposal shown) or run
        through (progress, Cancel keeps the slices done)."""
        with self._action("The propagation stopped; the segment is as it was before it."):
            self._ensureLocalEngine()
            p = self._parameterNode
            self.ui.historyListWidget.clear()
            self._propagatedSlices = 0
            self.ui.propagateProgressBar.value = 0
            if p.propagateMode == "run-through":
                self.ui.propagateProgressBar.maximum = 0  # busy until the target ends
                self._propagating = True
                self._updateButtonStates()  # Cancel is live from now on
                try:
                    result = self.logic.propagate(p.inputVolume, p.segmentation, p.segmentId,
                                                  onSlice=self._onPropagatedSlice,
                                                  shouldCancel=lambda: self._cancelRequested,
                                                  **self._propagationArguments())
                finally:
                    self._propagating = False
                self._showPropagationEnd(result)
                return
            opened = self.logic.startPropagation(p.inputVolume, p.segmentation, p.segmentId,
                                                 **self._propagationArguments())
            self._showOpenedSlice(opened)

    def _onPropagatedSlice(self, record) -> None:
        """One slice done in a run-through: the count (the bar runs until the target ends),
        the history, the status."""
        self._propagatedSlices += int(record["written"])
        self._addHistory(f"Slice {record['index']}", self._sliceText(record))
        self._setStatus(f"Propagating: {self._propagatedSlices} slice(s) written, slice {record['index']} done. "
                        "Cancel keeps them.")
        slicer.app.processEvents()

    def onNextSlice(self) -> None:
        """Review: keep this slice as it stands and open the next one."""
        with self._action("Could not go to the next slice; this slice is kept as it is."):
            self._showOpenedSlice(self.logic.nextPropagatedSlice())

    def onStopHere(self) -> None:
        """Review: the target ends on this slice (it goes back as it was)."""
        with self._action("Could not stop here."):
            state = self.logic.propagationState()
            if state is not None and state["open"] is not None:
                self._addHistory(f"Slice {state['open']}", "The target ends here; the slice is back as it was.")
            self._showOpenedSlice(self.logic.stopPropagationHere())

    def onFinishPropagation(self) -> None:
        """Review: keep this slice and end the propagation."""
        with self._action("Could not finish the propagation."):
            self._showPropagationEnd(self.logic.finishPropagation())

    def onUndoPropagation(self) -> None:
        """Put every slice of the last propagation back as it was (one undo step)."""
        with self._action("Could not undo the propagation."):
            if self.logic.undoPropagation():
                self._addHistory("Undo", "The propagation was undone; every slice is back as it was.")
                self._setStatus("Propagation undone.")

    def _showOpenedSlice(self, opened) -> None:
        """Review: show the newly opened slice and ask the agent (or say the propagation ended)."""
        if opened is None:
            summary = self.logic.lastPropagation.summary() if self.logic.lastPropagation else None
            if summary is not None:
                self._showPropagationEnd(summary)
            return
        finished = opened.get("finished")
        if finished:
            self._propagatedSlices += int(finished["written"])
            self._addHistory(f"Slice {finished['index']}", self._sliceText(finished))
        self._addHistory(f"Slice {opened['slice']}", self._startText(opened["state"]))
        if self._parameterNode.propagateSteps > 0:
            self._proposeOnce()
        elif opened.get("faded"):
            self._setStatus("The carried mask no longer stands out as the target did: Next slice ends this "
                            "direction here unless you edit it.")
        else:
            self._setStatus("Carried mask on screen: edit it if needed, then Next slice.")

    def _showPropagationEnd(self, summary) -> None:
        written = len(summary["written"])
        self.ui.propagateProgressBar.maximum = max(written, 1)
        self.ui.propagateProgressBar.value = written
        ends = "; ".join(f"{e['direction']}: {e['reason']} at slice {e['at']}" for e in summary["ends"])
        what = "cancelled" if summary.get("cancelled") else "finished"
        text = f"{written} slice(s) written, {summary['clicks']} click(s); {ends}."
        self._addHistory(f"Propagation {what}", text, bold=True)
        self._setStatus(f"Propagation {what}: {text} Undo propagation takes it back.")

    @staticmethod
    def _sliceText(record) -> str:
        if record["written"]:
            return f"{record['mask_pixels']} pixels ({record['start_pixels']} carried), {len(record['steps'])} step(s)."
        return f"Not changed: {record['end']}."

    # -- display helpers -------------------------------------------------------------------

    @staticmethod
    def _startText(state) -> str:
        pixels = state["statistics"]["pixels"]
        return f"Slice {state['slice_index']} of the {state['view']} view, {pixels} pixels in the segment."

    @staticmethod
    def _statisticsText(result) -> str:
        return f"{result['statistics']['pixels']} pixels in the mask, {len(result['steps'])} steps"

    def _addHistory(self, title, text, bold=False) -> None:
        item = qt.QListWidgetItem(f"{title}: {text}" if text else title)
        item.setToolTip(text or title)
        item.setData(qt.Qt.UserRole, f"{title}\n\n{text}")
        if bold:
            font = item.font()
            font.setBold(True)
            item.setFont(font)
        self.ui.historyListWidget.addItem(item)
        self.ui.historyListWidget.scrollToBottom()
        self.ui.historyListWidget.setCurrentItem(item)

    def onHistoryRowChanged(self, row) -> None:
        """Show the selected history entry in full."""
        item = self.ui.historyListWidget.item(row) if row >= 0 else None
        self.ui.historyDetailsTextEdit.setPlainText(item.data(qt.Qt.UserRole) if item else "")

    def _setStatus(self, text) -> None:
        self.ui.statusLabel.text = text
        logger.info(text)

    # -- keyboard shortcuts ----------------------------------------------------------------

    def _createShortcuts(self) -> None:
        handlers = {"accept": self.onAccept, "next": self.onNext, "undo": self.onUndo, "flip": self.onFlip,
                    "finish": self.onFinish}
        buttons = {"accept": self.ui.acceptButton, "next": self.ui.nextButton, "undo": self.ui.undoButton,
                   "flip": self.ui.flipButton, "finish": self.ui.finishButton}
        for name, key, _text in SHORTCUTS:
            shortcut = qt.QShortcut(qt.QKeySequence(key), slicer.util.mainWindow())
            shortcut.setEnabled(False)

            def trigger(button=buttons[name], handler=handlers[name]):
                if button.enabled:  # same rules as the button
                    handler()

            shortcut.connect("activated()", trigger)
            # Ctrl+Z may also be bound by another enabled action; treat ambiguity as ours.
            shortcut.connect("activatedAmbiguously()", trigger)
            self._shortcuts[name] = shortcut

    def _onFocusChanged(self, old, new) -> None:
        self._updateShortcuts(new)

    def _updateShortcuts(self, focus=None) -> None:
        """Enable the shortcuts that may take their key now (`shortcuts.live_shortcuts`)."""
        focus = focus if focus is not None else qt.QApplication.focusWidget()
        live = live_shortcuts(self._shown, focus.inherits if focus is not None else None)
        for name, shortcut in self._shortcuts.items():
            shortcut.setEnabled(name in live)

    # -- placing extra points: Slicer's place mode on the proposal list (main thread) ------

    def onPlacePoint(self, positive) -> None:
        """Enter place mode for one extra point of the given polarity."""
        with slicer.util.tryWithErrorDisplay("Could not start placing a point."):
            self.startPlacingPoint(positive)

    def startPlacingPoint(self, positive) -> None:
        """Place one point into the proposal list; it gets ``positive`` as its polarity. The
        user's own active markups list comes back when the point is placed or placing stops."""
        if self.logic.workedSlice is None:
            raise RuntimeError("No episode is running; press Continue my mask first.")
        self._stopPlacing()
        proposals = self.logic.workedSlice.markups.proposals
        self._placing = (proposals, bool(positive), proposal_markups.PlacementTarget(proposals))
        # Placed points start out positive (Selected); these observers set the chosen polarity.
        self.addObserver(proposals, proposals.PointAddedEvent, self._onPlacedPointAdded)
        self.addObserver(proposals, proposals.PointPositionDefinedEvent, self._onPlacedPointDefined)
        slicer.modules.markups.logic().StartPlaceMode(False)
        kind = "positive" if positive else "negative"
        self._setStatus(f"Click in the {self._parameterNode.view} view to place a {kind} point.")

    def _onPlacedPointAdded(self, caller, event) -> None:
        if self._placing is not None:
            proposals, positive, _target = self._placing
            index = proposals.GetNumberOfControlPoints() - 1
            if index >= 0:
                proposals.SetNthControlPointSelected(index, positive)
                proposals.SetNthControlPointLabel(index, "+" if positive else "-")

    def _onPlacedPointDefined(self, caller, event) -> None:
        self._onPlacedPointAdded(caller, event)
        self._stopPlacing(leavePlaceMode=False)  # one point per press; Slicer leaves place mode
        self._updateButtonStates()

    def _stopPlacing(self, leavePlaceMode=True) -> None:
        """Stop observing the point being placed, give the user's active list back, and leave
        place mode - before any logic call."""
        if self._placing is None:
            return
        proposals, _positive, target = self._placing
        self._placing = None
        self.removeObserver(proposals, proposals.PointAddedEvent, self._onPlacedPointAdded)
        self.removeObserver(proposals, proposals.PointPositionDefinedEvent, self._onPlacedPointDefined)
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        if leavePlaceMode and interaction.GetCurrentInteractionMode() == interaction.Place:
            interaction.SwitchToViewTransformMode()
        target.restore()

    # -- local server (a child process run by IBISAgentLib.local_server) -------------------

    def _serverRunning(self) -> bool:
        return self._server is not None and self._server.running

    def onStartStopServer(self) -> None:
        """Start the local agent server as a child process, or stop it."""
        if self._serverRunning():
            self.stopLocalServer()
            return
        with slicer.util.tryWithErrorDisplay("Could not start the local server."):
            self.startLocalServer()

    def _serverPython(self) -> str:
        return self.ui.serverPythonLineEdit.text.strip() or default_python()

    @staticmethod
    def _isSlicerPython(python) -> bool:
        return os.path.basename(python).lower().startswith("pythonslicer") or python == sys.executable

    def localServer(self) -> LocalServer:
        """The local server the Server fields describe (not started)."""
        python = self._serverPython()
        url = self.ui.serverUrlLineEdit.text.strip() or DEFAULT_SERVER_URL
        port = urlsplit(url).port or protocol.DEFAULT_PORT
        extra = shlex.split(self.ui.serverArgumentsLineEdit.text.strip())
        # Slicer's own Python needs Slicer's environment; another Python gets the one Slicer started with.
        environment = dict(os.environ) if self._isSlicerPython(python) else dict(slicer.util.startupEnvironment())
        return LocalServer(python, port, protocol.DEFAULT_HOST, extra, module_dir=MODULE_DIR,
                           token=self.ui.tokenLineEdit.text or None, environment=environment)

    def startLocalServer(self) -> None:
        """Start `ibisagent serve` on loopback; its output streams into the log box."""
        if self._isSlicerPython(self._serverPython()):
            self._ensureRequirements(
                requirements.server_requirements(), "The local agent server",
                "Install them, or set 'Server Python' to an environment where IBISAgent is installed.",
            )
        server = self.localServer()
        self.ui.serverLogTextEdit.clear()
        self._appendServerLog("$ " + " ".join(shlex.quote(part) for part in server.command))
        server.start()
        self._server, self._serverReady = server, False
        self._serverDeadline = time.monotonic() + SERVER_START_TIMEOUT_S
        self._serverTimer = qt.QTimer()
        self._serverTimer.setInterval(SERVER_POLL_MS)
        self._serverTimer.connect("timeout()", self._pollServer)
        self._serverTimer.start()
        self.ui.connectionStatusLabel.text = "Local server starting..."
        self._updateButtonStates()

    def _pollServer(self) -> None:
        """Show the server's new log lines; until it is ready, ping it (on the ping thread,
        waiting with the GIL released)."""
        server = self._server
        if server is None or self._pinging:
            return
        for line in server.read_output():
            self._appendServerLog(line)
        if not server.running:
            self._serverTimer.stop()
            self._appendServerLog(f"[server exited with code {server.exit_code}]")
            self.ui.connectionStatusLabel.text = "Local server stopped."
            self._serverReady = False
            self._updateButtonStates()
            return
        if self._serverReady:
            return
        self._pinging = True
        try:
            ready = wait_for(self._pinger.submit(lambda: server.ready(1.0)), tick=slicer.app.processEvents)
        finally:
            self._pinging = False
        if ready:
            self._serverReady = True
            self.ui.connectionStatusLabel.text = "Local server ready."
            self._setStatus("Local server ready.")
        elif time.monotonic() > self._serverDeadline:
            self.ui.connectionStatusLabel.text = "Local server did not answer; see its log."

    def isServerReady(self) -> bool:
        return self._serverReady or self.ui.connectionStatusLabel.text.startswith("Connected")

    def _appendServerLog(self, line) -> None:
        self.ui.serverLogTextEdit.appendPlainText(line)

    def stopLocalServer(self) -> None:
        """Stop the child server and everything it started, and check its port is free (also
        called when Slicer quits)."""
        if self._serverTimer is not None:
            self._serverTimer.stop()
        server, self._server, self._serverReady = self._server, None, False
        if server is not None:
            try:
                server.stop()
            except LocalServerError as error:
                self._setStatus(str(error))
            for line in server.read_output():
                self._appendServerLog(line)
        if hasattr(self, "ui"):
            if server is not None:
                self.ui.connectionStatusLabel.text = "Local server stopped."
            self._updateButtonStates()


#
# IBISAgentTest
#


class IBISAgentTest(ScriptedLoadableModuleTest):
    """Runs the panel's flow in a real Slicer with the CPU defaults: in Local (no server) mode,
    the weight-free policy and the classical tool run inside Slicer. Testing/Python/
    IBISAgentSelfTest.py runs the same flow against a local agent server. The user's remembered
    settings are never written (the tests set fields in code, and only user edits save them),
    and the fields a test changes are put back afterwards."""

    def setUp(self):
        """Clear the scene before each test."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run every test of this class."""
        self.setUp()
        self.test_widgetFlow()

    def _makeVolumeAndSegment(self):
        """A synthetic bright ellipsoid in a noisy volume, and a rough (eroded) segment of it."""
        import numpy as np

        shape = (24, 96, 96)  # k, j, i
        k, j, i = np.mgrid[0 : shape[0], 0 : shape[1], 0 : shape[2]]
        inside = ((i - 48) / 30.0) ** 2 + ((j - 44) / 22.0) ** 2 + ((k - 12) / 10.0) ** 2 <= 1.0
        rng = np.random.default_rng(0)
        voxels = (inside * 200 + rng.normal(40, 10, shape)).astype(np.int16)
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "IBISAgentTestVolume")
        slicer.util.updateVolumeFromArray(volume, voxels)
        volume.CreateDefaultDisplayNodes()
        slicer.util.setSliceViewerLayers(background=volume, fit=True)

        segmentation = slicer.mrmlScene.AddNewNodeByClass(
            "vtkMRMLSegmentationNode", "IBISAgentTestSegmentation"
        )
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        segmentId = segmentation.GetSegmentation().AddEmptySegment("target")
        rough = ((i - 48) / 18.0) ** 2 + ((j - 44) / 12.0) ** 2 + ((k - 12) / 6.0) ** 2 <= 1.0
        slicer.util.updateSegmentBinaryLabelmapFromArray(
            rough.astype(np.uint8), segmentation, segmentId, volume
        )
        return volume, segmentation, segmentId, inside

    @staticmethod
    @contextlib.contextmanager
    def keptPanelFields(widget):
        """Put the Server fields and the remembered settings back as they were."""
        ui = widget.ui
        fields = (ui.agentModeComboBox.currentIndex, ui.serverUrlLineEdit.text, ui.tokenLineEdit.text,
                  ui.serverPythonLineEdit.text, ui.serverArgumentsLineEdit.text)
        settings = {key: widget._setting(key, None) for key in SETTINGS_KEYS}
        try:
            yield
        finally:
            (ui.agentModeComboBox.currentIndex, ui.serverUrlLineEdit.text, ui.tokenLineEdit.text,
             ui.serverPythonLineEdit.text, ui.serverArgumentsLineEdit.text) = fields
            now = {key: widget._setting(key, None) for key in SETTINGS_KEYS}
            assert now == settings, f"a test changed the remembered settings: {settings} -> {now}"

    def test_widgetFlow(self):
        """Local (no server) mode: test, continue, flip, place a negative point, accept, undo,
        auto-run, finish, save."""
        import unittest

        missing = requirements.missing(requirements.engine_requirements())
        if missing:
            raise unittest.SkipTest("Skipped: the in-process agent needs " + ", ".join(missing) + " in Slicer.")
        self.delayDisplay("Starting the IBISAgent widget flow test (Local, no server)")
        slicer.util.selectModule("IBISAgent")
        widget = slicer.modules.IBISAgentWidget
        with self.keptPanelFields(widget):
            widget.ui.agentModeComboBox.currentIndex = AGENT_MODE_LOCAL
            self.runFlow(widget)
            self.assertTrue(widget.ui.connectionStatusLabel.text.startswith("In Slicer"))
        self.delayDisplay("IBISAgent widget flow test passed")

    def runFlow(self, widget):
        """The panel's flow on a synthetic volume, with whatever agent the panel is set to."""
        import tempfile

        import numpy as np

        volume, segmentation, segmentId, _truth = self._makeVolumeAndSegment()
        p = widget._parameterNode
        p.inputVolume = volume
        p.segmentation = segmentation
        p.segmentId = segmentId
        p.view = "Red"
        p.request = "Segment the bright blob."
        self.assertTrue(widget.ui.continueButton.enabled, widget.ui.continueButton.toolTip)
        self.assertFalse(widget.ui.undoButton.enabled)
        for button in (widget.ui.testConnectionButton, widget.ui.continueButton):
            button.click()
            self.assertIsNone(widget.lastError, widget.lastError)
        self.assertGreater(widget.ui.historyListWidget.count, 0)
        before = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume).copy()

        # Edit the points on screen: flip the proposal, place a negative point (place mode ends
        # with the point; the observer makes it negative), then accept what is on screen.
        worked = widget.logic.workedSlice
        proposals = worked.markups.proposals
        if widget.ui.flipButton.enabled:
            widget.ui.flipButton.click()
            self.assertIsNone(widget.lastError, widget.lastError)
        selection = slicer.mrmlScene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
        usersList = selection.GetActivePlaceNodeID()
        widget.startPlacingPoint(False)
        rows, cols = worked.geometry.shape
        proposals.AddControlPoint(*[float(v) for v in worked.geometry.pixel_to_ras(cols // 2, rows // 2)])
        self.assertFalse(proposals.GetNthControlPointSelected(proposals.GetNumberOfControlPoints() - 1))
        widget._stopPlacing()
        self.assertEqual(selection.GetActivePlaceNodeID(), usersList)  # the user's active list is back
        widget.ui.acceptButton.click()
        self.assertIsNone(widget.lastError, widget.lastError)
        self.assertTrue(widget.ui.undoButton.enabled)
        self.assertFalse(worked.session.steps[-1].clicks[-1].positive)

        widget.ui.undoButton.click()
        self.assertIsNone(widget.lastError, widget.lastError)
        after = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume)
        np.testing.assert_array_equal(before, after)
        self.assertEqual(widget.ui.undoButton.enabled, worked.can_undo)  # read from the session

        p.autoSteps = 3
        for button in (widget.ui.autoRunButton, widget.ui.finishButton):
            button.click()
            self.assertIsNone(widget.lastError, widget.lastError)
        self.assertIsNone(widget.logic.workedSlice)
        final = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume)
        changed = np.argwhere(final != before)
        if len(changed):
            self.assertEqual(set(changed[:, 0].tolist()), {int(changed[0, 0])}, "only one slice may change")

        nodes = slicer.mrmlScene.GetNumberOfNodes()
        with tempfile.TemporaryDirectory() as folder:
            for name in ("mask.seg.nrrd", "mask.nii.gz", "again.seg.nrrd"):
                path = os.path.join(folder, name)
                widget.onSave(path)
                self.assertIsNone(widget.lastError, widget.lastError)
                self.assertTrue(os.path.exists(path), path)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes, "saving left nodes in the scene")

        # Removing the segment while an episode runs ends the episode; Continue starts afresh.
        widget.ui.continueButton.click()
        self.assertIsNotNone(widget.logic.workedSlice)
        segmentation.GetSegmentation().RemoveSegment(segmentId)
        self.assertIsNone(widget.logic.workedSlice)
        self.assertFalse(widget.ui.nextButton.enabled)
