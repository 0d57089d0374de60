"""IBISAgent: continue my mask, step by step, with the user in charge.

The 3D Slicer scripted module: module metadata, the parameter node, the panel (widget) and the
in-Slicer test. All computation lives in `IBISAgentLib.logic.IBISAgentLogic`, which works from the
Python console with no panel. Nothing here imports torch or any server dependency: the panel
talks to the agent server through the torch-free `ibisagent.client`.
"""

import contextlib
import logging
import os
import shlex
import shutil
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Optional

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
from IBISAgentLib import AgentStepError
from IBISAgentLib.logic import IBISAgentLogic
from IBISAgentLib.logic import LOCAL_ENGINE_REQUIREMENTS, SERVER_REQUIREMENTS, missingRequirements, serverArguments

logger = logging.getLogger("IBISAgent")

#: Shortcuts, active only while the module is shown: (name, key sequence, what it does).
SHORTCUTS = (
    ("accept", "A", "Accept the proposed click(s) as they now stand"),
    ("next", "N", "Next step: ask the agent for a proposal"),
    ("undo", "Ctrl+Z", "Undo the last step"),
    ("flip", "P", "Flip the polarity of the selected proposed point"),
    ("finish", "Ctrl+Return", "Finish: write the mask into the segment"),
)

DEFAULT_SERVER_URL = f"http://{protocol.DEFAULT_HOST}:{protocol.DEFAULT_PORT}"
SETTINGS_GROUP = "IBISAgent"
#: Seconds of waiting before a cancellable progress dialog appears (the wait cursor is immediate).
PROGRESS_DIALOG_DELAY_S = 2.0
#: Seconds a freshly started local server gets to answer its first ping.
SERVER_START_TIMEOUT_S = 120.0
#: agentModeComboBox rows: the agent server, or the in-process engine (no server).
AGENT_MODE_SERVER, AGENT_MODE_LOCAL = 0, 1


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


class OperationCancelled(AgentStepError):
    """The user cancelled a wait; whatever the agent returns later is discarded. An
    AgentStepError, so the logic passes it through unchanged and restores the segment."""

    def __init__(self):
        AgentStepError.__init__(self, "Waiting for the agent was cancelled", "timeout")


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
        shortcutRows = "".join(f"<li><b>{key}</b>: {text}</li>" for _name, key, text in SHORTCUTS)
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
<p>Keyboard shortcuts (active while this module is shown):</p><ul>{shortcutRows}</ul>
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
    """

    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    segmentId: str = ""
    view: Annotated[str, Choice(["Red", "Yellow", "Green"])] = "Red"
    request: str = ""
    serverUrl: str = DEFAULT_SERVER_URL
    maxSteps: Annotated[int, WithinRange(1, 100)] = 20
    autoSteps: Annotated[int, WithinRange(1, 100)] = 5


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
    """The panel: reads controls, calls the logic, shows results. No computation here."""

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._executor = None
        self._shortcuts = {}
        self._serverProcess = None
        self._serverReadyDeadline = None
        self._serverPollTimer = None
        self._serverPingFuture = None
        self._busy = False
        self._cancelRequested = False
        self._stopRequested = False
        self._episodeActive = False
        self._proposalPending = False
        self._stepsApplied = 0
        self._placing = None  # (proposal point list, positive) while placing an extra point
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
        # One long-lived worker thread for every server call; it never touches Qt or MRML.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="IBISAgent")
        self._connectLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.ui.fromSegmentEditorButton.connect("clicked()", self.onFromSegmentEditor)
        self.ui.agentModeComboBox.connect("currentIndexChanged(int)", lambda _index: self._saveSettings())
        self.ui.tokenLineEdit.connect("editingFinished()", self._saveSettings)
        self.ui.serverUrlLineEdit.connect("editingFinished()", self._saveSettings)
        self.ui.serverPythonLineEdit.connect("editingFinished()", self._saveSettings)
        self.ui.serverArgumentsLineEdit.connect("editingFinished()", self._saveSettings)
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

        self._createShortcuts()
        self._loadSettings()
        slicer.app.connect("aboutToQuit()", self.stopLocalServer)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.removeObservers()
        self.stopLocalServer()
        for shortcut in self._shortcuts.values():
            shortcut.setEnabled(False)
            shortcut.setParent(None)
        self._shortcuts = {}
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()
        self._setShortcutsEnabled(True)

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        self._setShortcutsEnabled(False)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified
            )

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        self.setParameterNode(None)
        self._stopPlacing()
        self._resetEpisodeState()

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
        """Bind the GUI to a parameter node (None unbinds)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified
            )
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets with a "SlicerParameterName" property in the .ui file bind by name.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

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
        """The segmentation combo box changed: show its segments."""
        self.ui.segmentSelector.setCurrentNode(node)
        if self._parameterNode:
            self._parameterNode.segmentId = self.ui.segmentSelector.currentSegmentID() or ""

    def onSegmentChanged(self, segmentId) -> None:
        """The user picked another segment."""
        if self._parameterNode and self._parameterNode.segmentId != segmentId:
            self._resetEpisodeState()
            self._parameterNode.segmentId = segmentId or ""

    def onFromSegmentEditor(self) -> None:
        """Take the volume, segmentation and segment that the Segment Editor has selected."""
        if not self._parameterNode:
            return
        editorNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentEditorNode")
        if editorNode is None or editorNode.GetSegmentationNode() is None:
            return
        self._parameterNode.segmentation = editorNode.GetSegmentationNode()
        sourceVolume = (
            editorNode.GetSourceVolumeNode() if hasattr(editorNode, "GetSourceVolumeNode") else None
        )
        if sourceVolume:
            self._parameterNode.inputVolume = sourceVolume
        if editorNode.GetSelectedSegmentID():
            self._parameterNode.segmentId = editorNode.GetSelectedSegmentID()

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
        """Enable each action only when it can run; its tooltip says what is missing."""
        missing = self._missingInputs()
        busy = "Wait for the agent to answer (or press Stop)." if self._busy else ""
        noEpisode = "" if self._episodeActive else "Press Continue my mask first."
        noProposal = "" if self._proposalPending else "No proposal on screen: press Next step."
        noUndo = "" if self._stepsApplied > 0 else "Nothing to undo in this episode."
        rules = {
            self.ui.continueButton: (busy or missing, "Start from the current segment on this slice."),
            self.ui.nextButton: (busy or missing or noEpisode, "Ask the agent for its next click."),
            self.ui.acceptButton: (busy or missing or noEpisode, "Apply the points on screen."),
            self.ui.skipButton: (busy or noEpisode or noProposal, "Delete the proposal without applying it."),
            self.ui.undoButton: (busy or noEpisode or noUndo, "Undo the last step (Ctrl+Z)."),
            self.ui.flipButton: (busy or noEpisode or noProposal, "Flip the selected proposed point."),
            self.ui.addPositiveButton: (busy or noEpisode, "Place a positive point in the view."),
            self.ui.addNegativeButton: (busy or noEpisode, "Place a negative point in the view."),
            self.ui.autoRunButton: (busy or missing, "Run the agent for N steps, accepting each proposal."),
            self.ui.finishButton: (busy or noEpisode, "Write the mask into the segment and end the episode."),
            self.ui.saveButton: (busy or missing, "Save the segment as .seg.nrrd or a NIfTI labelmap."),
            self.ui.testConnectionButton: (busy, "Check that the agent answers and show what it runs."),
        }
        for button, (reason, tip) in rules.items():
            button.enabled = not reason
            button.toolTip = reason or tip
        self.ui.stopButton.enabled = self._busy
        self.ui.stopButton.toolTip = "Stop after the current step." if self._busy else "Nothing is running."
        self.ui.startServerButton.text = (
            "Stop local server" if self._serverRunning() else "Start local server"
        )
        noServer = "Not needed: the agent runs inside Slicer (Local mode)." if self._localMode() else ""
        self.ui.startServerButton.enabled = not self._busy and not (noServer and not self._serverRunning())
        self.ui.startServerButton.toolTip = noServer or "Run the agent server on this computer; it stops with Slicer."

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
        self.ui.serverPythonLineEdit.placeholderText = self._defaultServerPython()

    def _saveSettings(self) -> None:
        settings = qt.QSettings()
        settings.beginGroup(SETTINGS_GROUP)
        settings.setValue("AgentMode", "local" if self._localMode() else "server")
        settings.setValue("ServerURL", self.ui.serverUrlLineEdit.text.strip())
        settings.setValue("Token", self.ui.tokenLineEdit.text)
        settings.setValue("ServerPython", self.ui.serverPythonLineEdit.text.strip())
        settings.setValue("ServerArguments", self.ui.serverArgumentsLineEdit.text.strip())
        settings.endGroup()
        self._connectLogic()
        self._updateButtonStates()

    # -- running work off the main thread --------------------------------------------------

    @contextlib.contextmanager
    def _action(self, failureMessage):
        """Wrap one user action: wait cursor at once, buttons locked, one error display."""
        self._stopPlacing()
        self._connectLogic()  # the URL may have changed through the parameter node
        self._busy = True
        self._cancelRequested = False
        self._stopRequested = False
        self._updateButtonStates()
        qt.QApplication.setOverrideCursor(qt.Qt.WaitCursor)
        try:
            yield
            self.lastError = None
        except OperationCancelled:
            self.lastError = None
            self._setStatus("Cancelled; the segment is as it was before this step.")
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

    def _runRemote(self, function, *args, **kwargs):
        """Run `function` on the worker thread and return its result, keeping the panel alive.

        Main thread only. The Qt event loop keeps running while waiting; after
        PROGRESS_DIALOG_DELAY_S a progress dialog offers Cancel, which raises OperationCancelled
        here (the worker's eventual answer is dropped). `function` must not touch Qt or MRML.
        """
        future = self._executor.submit(function, *args, **kwargs)
        started = time.monotonic()
        loop = qt.QEventLoop()
        timer = qt.QTimer()
        timer.setInterval(30)
        dialog = None

        def poll():
            nonlocal dialog
            if future.done() or self._cancelRequested:
                loop.quit()
            elif dialog is None and time.monotonic() - started > PROGRESS_DIALOG_DELAY_S:
                dialog = qt.QProgressDialog(
                    "Waiting for the agent...", "Cancel", 0, 0, slicer.util.mainWindow()
                )
                dialog.setWindowTitle("IBISAgent")
                dialog.setWindowModality(qt.Qt.WindowModal)
                dialog.connect("canceled()", self.onCancelWait)
                dialog.show()

        timer.connect("timeout()", poll)
        timer.start()
        poll()
        if not future.done() and not self._cancelRequested:
            loop.exec_()
        timer.stop()
        if dialog is not None:
            dialog.hide()
            dialog.deleteLater()
        if self._cancelRequested and not future.done():
            raise OperationCancelled()
        return future.result()

    def onCancelWait(self) -> None:
        """Cancel the current wait (the progress dialog's Cancel)."""
        self._cancelRequested = True
        self._stopRequested = True

    # -- logic calls: the only place where the widget talks to IBISAgentLogic --------------

    def _localMode(self) -> bool:
        return self.ui.agentModeComboBox.currentIndex == AGENT_MODE_LOCAL

    def _connectLogic(self) -> None:
        """Point the logic at the server (or its in-process engine); run agent calls on the worker."""
        if self.logic is None:
            return
        if self._localMode():
            self.logic.useLocalEngine()
        else:
            self.logic.connect(self.ui.serverUrlLineEdit.text.strip(), self.ui.tokenLineEdit.text or None)
        self.logic.callAgent = self._runRemote

    def _logicStartEpisode(self):
        self._ensureLocalEngine()
        p = self._parameterNode
        return self.logic.startEpisode(
            p.inputVolume, p.segmentation, p.segmentId, request=p.request, view=p.view, maxSteps=p.maxSteps
        )

    def _logicProposeNext(self):
        return self.logic.proposeNext()

    def _logicAccept(self):
        return self.logic.acceptProposal()

    def _logicSkip(self):
        return self.logic.skipProposal()

    def _logicUndo(self):
        return self.logic.undo()

    def _logicFlip(self):
        return self.logic.flipProposal()

    def _logicFinish(self):
        return self.logic.finish()

    def _logicSave(self, path):
        p = self._parameterNode
        return self.logic.saveSegment(p.segmentation, p.segmentId, path, referenceVolumeNode=p.inputVolume)

    def _logicPing(self):
        """True when the server answers; never raises. Not through callAgent, so the worker
        thread may run it (it touches no Qt and no MRML)."""
        return self.logic.pingServer()

    def _logicServerInfo(self):
        """What the agent runs; the logic sends the request through callAgent (the worker)."""
        self._ensureLocalEngine()
        return self.logic.serverInfo()

    # -- actions ---------------------------------------------------------------------------

    def onTestConnection(self) -> None:
        """Check the server and show what it runs (policy, segmenter, version)."""
        self._saveSettings()
        with self._action("Cannot reach the agent."):
            info = self._logicServerInfo()
            where = "In Slicer (no server)" if info.get("local") else "Connected"
            policy, tool, api = (info.get(key, "?") for key in ("policy", "segmenter", "api_version"))
            self.ui.connectionStatusLabel.text = f"{where}: policy {policy}, tool {tool}, API {api}"
            self._setStatus("Agent ready.")

    def onContinue(self) -> None:
        """Continue my mask: start an episode from the segment on the view's current slice."""
        with self._action("Could not start the agent on this slice."):
            self._resetEpisodeState()
            self.ui.historyListWidget.clear()
            state = self._logicStartEpisode()
            self._episodeActive = True
            self._addHistory("Start", self._startText(state))
            self._proposeOnce()

    def onNext(self) -> None:
        """Ask the agent for its next proposal."""
        with self._action("The agent could not propose a step."):
            self._proposeOnce()

    def onAccept(self) -> None:
        """Apply the points on screen (the proposal as edited, plus any added points)."""
        with self._action("The step could not be applied; the segment is unchanged."):
            self._acceptOnce()

    def onSkip(self) -> None:
        """Delete the proposal without applying it."""
        with self._action("Could not skip the proposal."):
            self._logicSkip()
            self._proposalPending = False
            self._addHistory("Skipped", "Proposal deleted.")

    def onUndo(self) -> None:
        """Undo the last applied step."""
        with self._action("Could not undo."):
            self._logicUndo()
            self._stepsApplied = max(0, self._stepsApplied - 1)
            self._proposalPending = False
            self._addHistory("Undo", "Last step undone; the segment is back as it was.")

    def onFlip(self) -> None:
        """Flip the polarity of the selected (or only) proposed point."""
        with self._action("Could not flip the point."):
            index = self._logicFlip()
            self._setStatus(f"Proposed point {index + 1} flipped; press Accept to apply the points on screen.")

    def onAutoRun(self) -> None:
        """Run up to N steps, accepting every proposal, until the agent stops or Stop is pressed."""
        with self._action("Auto-run stopped on an error; completed steps are kept."):
            if not self._episodeActive:
                state = self._logicStartEpisode()
                self._episodeActive = True
                self._addHistory("Start", self._startText(state))
            for _ in range(self._parameterNode.autoSteps):
                if self._stopRequested:
                    break
                if not self._proposalPending and not self._proposeOnce():
                    break
                if self._stopRequested:
                    break
                self._acceptOnce()
                slicer.app.processEvents()

    def onStop(self) -> None:
        """Stop auto-run after the current step."""
        self._stopRequested = True
        self._setStatus("Stopping after the current step...")

    def onFinish(self) -> None:
        """Write the mask into the segment and end the episode."""
        with self._action("Could not finish; the segment is unchanged."):
            result = self._logicFinish()
            answer = result.get("answer")
            if answer:
                self._addHistory("Answer", str(answer), bold=True)
            self._addHistory("Finished", self._statisticsText(result))
            self._resetEpisodeState()

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
            written = self._logicSave(path)
            self._setStatus("Saved " + ", ".join(written or [path]))

    def _proposeOnce(self) -> bool:
        """One proposal; False when the agent stopped (terminate, unparseable, limit)."""
        proposal = self._logicProposeNext()
        action = proposal.get("action") or "no action"
        self._addHistory(f"Step {self._stepsApplied + 1}: {action}", proposal.get("reasoning") or "")
        if proposal.get("answer"):
            self._addHistory("Answer", str(proposal["answer"]), bold=True)
        stopReason = proposal.get("stop_reason")
        self._proposalPending = bool(proposal.get("click")) and not stopReason
        if stopReason:
            self._setStatus(f"The agent stopped ({stopReason}). Press Finish, or add points and Accept.")
            return False
        self._setStatus("Proposal on screen: drag, flip, delete or add points, then Accept.")
        return True

    def _acceptOnce(self) -> None:
        step = self._logicAccept()
        self._proposalPending = False
        self._stepsApplied += 1
        self._setStatus(f"Step applied. {self._statisticsText(step)}")

    # -- display helpers -------------------------------------------------------------------

    @staticmethod
    def _startText(state) -> str:
        pixels = state["statistics"]["pixels"]
        return f"Slice {state['slice_index']} of the {state['view']} view, {pixels} pixels in the segment."

    @staticmethod
    def _statisticsText(result) -> str:
        pixels = result.get("mask_pixels", (result.get("statistics") or {}).get("pixels"))
        steps = result.get("steps")
        parts = []
        if pixels is not None:
            parts.append(f"{pixels} pixels in the mask")
        if isinstance(steps, (list, tuple)):
            parts.append(f"{len(steps)} steps")
        return ", ".join(parts)

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

    def _resetEpisodeState(self) -> None:
        self._episodeActive = False
        self._proposalPending = False
        self._stepsApplied = 0

    # -- keyboard shortcuts ----------------------------------------------------------------

    def _createShortcuts(self) -> None:
        handlers = {
            "accept": self.onAccept,
            "next": self.onNext,
            "undo": self.onUndo,
            "flip": self.onFlip,
            "finish": self.onFinish,
        }
        buttons = {
            "accept": self.ui.acceptButton,
            "next": self.ui.nextButton,
            "undo": self.ui.undoButton,
            "flip": self.ui.flipButton,
            "finish": self.ui.finishButton,
        }
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

    def _setShortcutsEnabled(self, enabled) -> None:
        for shortcut in self._shortcuts.values():
            shortcut.setEnabled(enabled)

    # -- placing extra points: Slicer's place mode on the proposal list (main thread) ------

    def onPlacePoint(self, positive) -> None:
        """Enter place mode for one extra point of the given polarity."""
        with slicer.util.tryWithErrorDisplay("Could not start placing a point."):
            self.startPlacingPoint(positive)

    def startPlacingPoint(self, positive) -> None:
        """Place one point into the proposal list; it gets ``positive`` as its polarity."""
        if self.logic.episode is None:
            raise RuntimeError("No episode is running; press Continue my mask first.")
        self._stopPlacing()
        proposals = self.logic.episode.markups.proposals
        self._placing = (proposals, bool(positive))
        # Placed points start out positive (Selected); these observers set the chosen polarity.
        self.addObserver(proposals, proposals.PointAddedEvent, self._onPlacedPointAdded)
        self.addObserver(proposals, proposals.PointPositionDefinedEvent, self._onPlacedPointDefined)
        markupsLogic = slicer.modules.markups.logic()
        markupsLogic.SetActiveList(proposals)
        markupsLogic.StartPlaceMode(False)
        kind = "positive" if positive else "negative"
        self._setStatus(f"Click in the {self._parameterNode.view} view to place a {kind} point.")

    def _onPlacedPointAdded(self, caller, event) -> None:
        if self._placing is not None:
            proposals, positive = self._placing
            index = proposals.GetNumberOfControlPoints() - 1
            if index >= 0:
                proposals.SetNthControlPointSelected(index, positive)
                proposals.SetNthControlPointLabel(index, "+" if positive else "-")

    def _onPlacedPointDefined(self, caller, event) -> None:
        self._onPlacedPointAdded(caller, event)
        self._stopPlacing(leavePlaceMode=False)  # one point per press; Slicer leaves place mode

    def _stopPlacing(self, leavePlaceMode=True) -> None:
        """Stop observing the point being placed (and leave place mode) - before any logic call."""
        if self._placing is None:
            return
        proposals, _positive = self._placing
        self._placing = None
        self.removeObserver(proposals, proposals.PointAddedEvent, self._onPlacedPointAdded)
        self.removeObserver(proposals, proposals.PointPositionDefinedEvent, self._onPlacedPointDefined)
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        if leavePlaceMode and interaction.GetCurrentInteractionMode() == interaction.Place:
            interaction.SwitchToViewTransformMode()

    # -- local server (child process) ------------------------------------------------------

    def _defaultServerPython(self) -> str:
        return shutil.which("PythonSlicer") or sys.executable

    def _serverRunning(self) -> bool:
        return self._serverProcess is not None and self._serverProcess.state() != qt.QProcess.NotRunning

    def onStartStopServer(self) -> None:
        """Start the local agent server as a child process, or stop it."""
        if self._serverRunning():
            self.stopLocalServer()
            return
        self._saveSettings()
        with slicer.util.tryWithErrorDisplay("Could not start the local server."):
            self.startLocalServer()

    def serverCommand(self):
        """The local server's command line: (python, arguments) from the Server settings."""
        python = self.ui.serverPythonLineEdit.text.strip() or self._defaultServerPython()
        url = qt.QUrl(self.ui.serverUrlLineEdit.text.strip() or DEFAULT_SERVER_URL)
        extra = shlex.split(self.ui.serverArgumentsLineEdit.text.strip())
        return python, serverArguments(url.port(protocol.DEFAULT_PORT), protocol.DEFAULT_HOST, extra)

    def startLocalServer(self) -> None:
        """Start `ibisagent serve` on loopback; its output streams into the log box."""
        python, arguments = self.serverCommand()
        usesSlicerPython = (
            os.path.basename(python).lower().startswith("pythonslicer") or python == sys.executable
        )
        if usesSlicerPython:
            self._ensureRequirements(
                SERVER_REQUIREMENTS, "The local agent server",
                "Install them, or set 'Server Python' to an environment where IBISAgent is installed.",
            )
        environment = qt.QProcessEnvironment()
        baseEnvironment = os.environ if usesSlicerPython else slicer.util.startupEnvironment()
        for key, value in baseEnvironment.items():
            environment.insert(key, value)
        pythonPath = baseEnvironment.get("PYTHONPATH", "")
        environment.insert("PYTHONPATH", MODULE_DIR + (os.pathsep + pythonPath if pythonPath else ""))
        environment.insert("PYTHONUNBUFFERED", "1")
        if self.ui.tokenLineEdit.text:
            environment.insert(protocol.TOKEN_ENV, self.ui.tokenLineEdit.text)

        process = qt.QProcess(self.parent)
        process.setProcessChannelMode(qt.QProcess.MergedChannels)
        process.setProcessEnvironment(environment)
        process.connect("readyReadStandardOutput()", self._onServerOutput)
        process.connect("finished(int,QProcess::ExitStatus)", self._onServerFinished)
        self._serverProcess = process
        self.ui.serverLogTextEdit.clear()
        self._appendServerLog("$ " + " ".join(shlex.quote(part) for part in [python] + arguments))
        process.start(python, arguments)
        if not process.waitForStarted(10000):
            self._serverProcess = None
            raise RuntimeError(f"Could not run {python}. Set 'Server Python' to a Python with IBISAgent.")
        self._serverReadyDeadline = time.monotonic() + SERVER_START_TIMEOUT_S
        self._serverPingFuture = None
        self._serverPollTimer = qt.QTimer()
        self._serverPollTimer.setInterval(500)
        self._serverPollTimer.connect("timeout()", self._pollServerReady)
        self._serverPollTimer.start()
        self.ui.connectionStatusLabel.text = "Local server starting..."
        self._updateButtonStates()

    def _ensureRequirements(self, requirements, who, otherwise) -> None:
        """Ask once with the full list of missing packages, then install them into Slicer's Python."""
        missing = missingRequirements(requirements)
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
            self._ensureRequirements(
                LOCAL_ENGINE_REQUIREMENTS, "The in-process agent", "Install them, or use an agent server."
            )

    def _pollServerReady(self) -> None:
        """Ping the starting server on the worker thread; the timer checks the answer."""
        if not self._serverRunning():
            self._serverPollTimer.stop()
            return
        future = self._serverPingFuture
        if future is None:
            self._connectLogic()
            self._serverPingFuture = self._executor.submit(self._logicPing)
            return
        if not future.done():
            return
        self._serverPingFuture = None
        if future.exception() is None and future.result():
            self._serverPollTimer.stop()
            self.ui.connectionStatusLabel.text = "Local server ready."
            self._setStatus("Local server ready.")
        elif time.monotonic() > self._serverReadyDeadline:
            self._serverPollTimer.stop()
            self.ui.connectionStatusLabel.text = "Local server did not answer; see its log."

    def isServerReady(self) -> bool:
        return self.ui.connectionStatusLabel.text in ("Local server ready.",) or (
            self.ui.connectionStatusLabel.text.startswith("Connected")
        )

    def _onServerOutput(self) -> None:
        if self._serverProcess is None:
            return
        data = self._serverProcess.readAllStandardOutput().data()
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data)
        for line in text.splitlines():
            self._appendServerLog(line)

    def _onServerFinished(self, exitCode, exitStatus=None) -> None:
        self._appendServerLog(f"[server exited with code {exitCode}]")
        self.ui.connectionStatusLabel.text = "Local server stopped."
        self._updateButtonStates()

    def _appendServerLog(self, line) -> None:
        self.ui.serverLogTextEdit.appendPlainText(line)

    def stopLocalServer(self) -> None:
        """Stop the child server (also called when Slicer quits)."""
        if self._serverPollTimer is not None:
            self._serverPollTimer.stop()
        process = self._serverProcess
        if process is not None and process.state() != qt.QProcess.NotRunning:
            process.terminate()
            if not process.waitForFinished(5000):
                process.kill()
                process.waitForFinished(2000)
        self._serverProcess = None
        if hasattr(self, "ui"):
            self._updateButtonStates()


#
# IBISAgentTest
#


class IBISAgentTest(ScriptedLoadableModuleTest):
    """Runs the panel's flow in a real Slicer with the CPU defaults: in Local (no server) mode,
    the weight-free policy and the classical tool run inside Slicer. Testing/Python/
    IBISAgentSelfTest.py runs the same flow against a local agent server."""

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

    def test_widgetFlow(self):
        """Local (no server) mode: test, continue, flip, place a negative point, accept, undo,
        auto-run, finish, save."""
        import unittest

        missing = missingRequirements(LOCAL_ENGINE_REQUIREMENTS)
        if missing:
            raise unittest.SkipTest("Skipped: the in-process agent needs " + ", ".join(missing) + " in Slicer.")
        self.delayDisplay("Starting the IBISAgent widget flow test (Local, no server)")
        slicer.util.selectModule("IBISAgent")
        widget = slicer.modules.IBISAgentWidget
        widget.ui.agentModeComboBox.currentIndex = AGENT_MODE_LOCAL
        try:
            self.runFlow(widget)
            self.assertTrue(widget.ui.connectionStatusLabel.text.startswith("In Slicer"))
        finally:
            widget.ui.agentModeComboBox.currentIndex = AGENT_MODE_SERVER  # the remembered setting
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
        clicks = (widget.ui.testConnectionButton, widget.ui.continueButton)
        for button in clicks:
            button.click()
            self.assertIsNone(widget.lastError, widget.lastError)
        self.assertGreater(widget.ui.historyListWidget.count, 0)
        before = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume).copy()

        # Edit the points on screen: flip the proposal, place a negative point (place mode ends
        # with the point; the observer makes it negative), then accept what is on screen.
        proposals = widget.logic.episode.markups.proposals
        if widget.ui.flipButton.enabled:
            widget.ui.flipButton.click()
            self.assertIsNone(widget.lastError, widget.lastError)
        widget.startPlacingPoint(False)
        rows, cols = widget.logic.episode.geometry.shape
        proposals.AddControlPoint(*[float(v) for v in widget.logic.episode.geometry.pixel_to_ras(cols // 2, rows // 2)])
        self.assertFalse(proposals.GetNthControlPointSelected(proposals.GetNumberOfControlPoints() - 1))
        widget.ui.acceptButton.click()
        self.assertIsNone(widget.lastError, widget.lastError)
        self.assertTrue(widget.ui.undoButton.enabled)
        self.assertFalse(widget.logic.episode.steps[-1]["clicks"][-1]["positive"])

        widget.ui.undoButton.click()
        self.assertIsNone(widget.lastError, widget.lastError)
        after = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume)
        np.testing.assert_array_equal(before, after)

        p.autoSteps = 3
        for button in (widget.ui.autoRunButton, widget.ui.finishButton):
            button.click()
            self.assertIsNone(widget.lastError, widget.lastError)
        final = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume)
        changed = np.argwhere(final != before)
        if len(changed):
            self.assertEqual(set(changed[:, 0].tolist()), {int(changed[0, 0])}, "only one slice may change")

        with tempfile.TemporaryDirectory() as folder:
            for name in ("mask.seg.nrrd", "mask.nii.gz"):
                path = os.path.join(folder, name)
                widget.onSave(path)
                self.assertIsNone(widget.lastError, widget.lastError)
                self.assertTrue(os.path.exists(path), path)
