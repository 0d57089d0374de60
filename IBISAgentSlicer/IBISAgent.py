"""IBISAgent: continue my mask, step by step, with the user in charge.

The 3D Slicer scripted module in the template's four parts: module metadata, the parameter node,
the widget and the in-Slicer test. All computation lives in `IBISAgentLib` (`IBISAgentLogic`
works from the Python console with no panel: episodes on a slice or on the whole segment in 3D,
propagation, the local server, package installs after one question, placing a point, and
`actions`, which says what the user may do now and why not, or what each button does). The
widget only wires: it loads the .ui, keeps the scene's choices in the parameter node and the
remembered ones in `IBISAgentLib.settings.AgentSettings`, calls one logic method per button
inside one error path (`_action`), runs agent calls on a worker thread, and shows what
`IBISAgentLib.history_text` says of the results. Nothing here imports torch or a server
dependency.
"""

import contextlib
import logging
import os
import sys
import traceback
from typing import Annotated, Optional

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

# The module folder holds the torch-free `ibisagent` package and the MRML adapters
# (`IBISAgentLib`); make both importable however Slicer found this file.
MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
if MODULE_DIR not in sys.path:
    sys.path.insert(0, MODULE_DIR)

from ibisagent.errors import Cancelled
from IBISAgentLib import history_text, segment_masks
from IBISAgentLib.actions import ACTIONS, FAILED, SLICE, WORK_ON
from IBISAgentLib.agent_worker import AgentWorker
from IBISAgentLib.local_server import STARTING, STOPPED, LocalServerError, default_python
from IBISAgentLib.logic import IBISAgentLogic
from IBISAgentLib.settings import FIELDS, LOCAL, MODES, PROPERTIES, SERVER, AgentSettings
from IBISAgentLib.shortcuts import SHORTCUTS, help_rows, live_shortcuts

logger = logging.getLogger("IBISAgent")

#: Seconds of waiting before a cancellable progress dialog appears (the wait cursor is immediate).
PROGRESS_DIALOG_DELAY_S = 2.0
#: Milliseconds between two looks at a starting or running local server (log, readiness).
SERVER_POLL_MS = 300
#: The .ui property that binds a widget to a parameter (what parameterNodeWrapper looks for).
PARAMETER_PROPERTY = "SlicerParameterName"


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
<p><b>Work on: volume</b> continues the whole segment as one 3D session (Local mode): the agent
looks at the view's slice first, then where the outline jumps between slices; its proposal
appears on its slice and that view moves there; points you place in the Red, Yellow or Green
view all belong to the session, and the 3D tool updates the mask around them. The same buttons
and shortcuts apply; Undo is exact, and other segments never change.</p>
<p>The agent runs in a local server on this machine (images never leave it): use <b>Start local
server</b>, or point the URL at a server you started yourself. <b>Local (no server)</b> runs the
weight-free policy and the classical tool inside Slicer instead.</p>
<p><b>Propagate</b> carries your mask from the view's slice through the volume (up, down or
both, within a slice range and a maximum number of slices), the agent refining every slice, until
the target ends (the mask vanishes or shrinks, the carried mask fades and nobody changes it, or the
agent says there is no target). <b>Review</b> stops on every slice with the proposal shown
(<b>Next slice</b>, <b>Stop here</b>); <b>Run through</b> does every slice (Cancel keeps the
slices done) and you fix any slice afterwards. <b>Undo propagation</b> takes the whole
propagation back.</p>
<p><b>Record for training</b> (Training section) writes every step you accept or edit, with the
image the agent saw, into a folder on this computer (skipped proposals are not written, undone
steps are removed); <code>ibisagent export-training</code> turns the folder into fine-tuning data.</p>
<p>Keyboard shortcuts (while this module is shown; the single letters not while you type in a
text field, list or combo box):</p><ul>{help_rows()}</ul>
<p>See the <a href="https://github.com/ibisagent/IBISAgentSlicer">project page</a>.</p>
"""
        self.parent.acknowledgementText = """
Built on the IBISAgent method (CVPR 2026, arXiv 2601.03054; code released under the MIT licence)
and on 3D Slicer's scripted module template. The classical segmentation tool uses SimpleITK. The
sample data is derived from the MNI ICBM152 2009a template (Copyright (C) 1993-2009 Louis Collins,
McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University).
"""
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Called when Slicer has started: list the module's sample (a small MRI volume and a rough
    segment, shipped with the module) in the Sample Data module."""
    import SampleData

    from IBISAgentLib import sample_data_source

    sample_data_source.register(SampleData.SampleDataLogic)


#
# IBISAgentParameterNode
#


@parameterNodeWrapper
class IBISAgentParameterNode:
    """The user's choices, saved with the scene (the agent's settings are not: `AgentSettings`).

    inputVolume - the volume to segment (scalar or colour).
    segmentation, segmentId - the segment to continue.
    view - the slice view to work in; its current slice is the one edited (in 3D: looked at first).
    workOn - "slice" (the view's slice) or "volume" (the whole segment, one 3D session).
    request - what to segment, in words (may be empty).
    maxSteps - the agent's step limit for one episode.
    autoSteps - how many steps "Auto-run" takes without asking.
    propagateDirection, propagateMode, propagateFirst, propagateLast (-1: the volume's end),
    propagateMaxSlices (0: no limit), propagateSteps - the Propagate section's choices.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    segmentId: str = ""
    view: Annotated[str, Choice(["Red", "Yellow", "Green"])] = "Red"
    workOn: Annotated[str, Choice(list(WORK_ON))] = SLICE
    request: str = ""
    maxSteps: Annotated[int, WithinRange(1, 100)] = 20
    autoSteps: Annotated[int, WithinRange(1, 100)] = 5
    propagateDirection: Annotated[str, Choice(["up", "down", "both"])] = "both"
    propagateMode: Annotated[str, Choice(["review", "run-through"])] = "review"
    propagateFirst: Annotated[int, WithinRange(-1, 9999)] = -1
    propagateLast: Annotated[int, WithinRange(-1, 9999)] = -1
    propagateMaxSlices: Annotated[int, WithinRange(0, 9999)] = 0
    propagateSteps: Annotated[int, WithinRange(0, 100)] = 3

    def inputs(self) -> tuple:
        """(volume, segmentation, segment id): what `IBISAgentLogic.actions` checks."""
        return self.inputVolume, self.segmentation, self.segmentId

    def propagationArguments(self) -> dict:
        return {"view": self.view, "direction": self.propagateDirection, "request": self.request,
                "first": None if self.propagateFirst < 0 else self.propagateFirst,
                "last": None if self.propagateLast < 0 else self.propagateLast,
                "maxSlices": self.propagateMaxSlices or None, "stepsPerSlice": self.propagateSteps}


#
# IBISAgentWidget
#


class IBISAgentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: reads controls, calls the logic, shows results. What can run, what can be
    undone and what is on screen all come from the logic."""

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._worker = self._pinger = self._serverTimer = None
        self._shortcuts = {}
        self._shown = self._busy = self._cancelRequested = self._stopRequested = self._polling = False
        self.lastError = None  # message of the last failure, for tests and the status line

    # -- lifecycle -------------------------------------------------------------------------

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/IBISAgent.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = IBISAgentLogic()
        # One long-lived daemon thread for every agent call, and one for pings, so a ping never
        # waits behind a slow model call. Neither touches Qt or MRML.
        self._worker, self._pinger = AgentWorker("IBISAgent"), AgentWorker("IBISAgent-ping")
        self.logic.callAgent = self._runOnWorker
        self.logic.startAgentCall = self._worker.submit
        self.logic.episodeEndedCallback = self.onEpisodeEnded

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.ui.fromSegmentEditorButton.connect("clicked()", self.onFromSegmentEditor)
        for name in self._handlers():
            getattr(self.ui, ACTIONS[name][0]).connect("clicked()", lambda name=name: self.runAction(name))
        self.ui.stopButton.connect("clicked()", self.onStop)
        self.ui.cancelPropagationButton.connect("clicked()", self.onCancelWait)
        self.ui.saveButton.connect("clicked()", self.onSave)
        self.ui.historyListWidget.connect("currentRowChanged(int)", self.onHistoryRowChanged)
        # Settings are saved on the user's own edits only ("activated", "editingFinished", "clicked",
        # "directorySelected"), so tests and scripts that set the fields never overwrite them.
        self.ui.agentModeComboBox.connect("currentIndexChanged(int)", lambda _index: self._applySettings(False))
        self.ui.serverUrlLineEdit.connect("textChanged(QString)", lambda _text: self._applySettings(False))
        self.ui.agentModeComboBox.connect("activated(int)", lambda _index: self._applySettings(True))
        for name in ("serverUrl", "token", "serverPython", "serverArguments"):
            getattr(self.ui, FIELDS[name]).connect("editingFinished()", lambda: self._applySettings(True))
        self.ui.recordCheckBox.connect("clicked(bool)", lambda _checked: self._applySettings(True))
        self.ui.recordFolderButton.connect("directorySelected(QString)", lambda folder: self._applySettings(True, folder))
        self.ui.serverPythonLineEdit.placeholderText = default_python()

        self._createShortcuts()
        slicer.app.connect("focusChanged(QWidget*,QWidget*)", self._updateShortcuts)
        settings = AgentSettings.load(qt.QSettings())
        self._showSettings(settings)
        self.ui.trainingCollapsibleButton.collapsed = not settings.record  # recording is never out of sight
        self._applySettings(False, showErrors=False)
        slicer.app.connect("aboutToQuit()", self.stopLocalServer)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.removeObservers()
        self.setParameterNode(None)
        if self.logic is not None:
            self.logic.setTrainingRecord(None)  # finishes the running episode's record
        slicer.app.disconnect("focusChanged(QWidget*,QWidget*)", self._updateShortcuts)
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
        self.logic.stopPlacingPoint()

    def onEpisodeEnded(self, reason) -> None:
        """Called by the logic when its episode ended by itself (its nodes went away)."""
        self.logic.stopPlacingPoint()
        if hasattr(self, "ui"):
            self._show(history_text.on_ended("Ended", reason))
            self._refresh()

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed (the logic ends its episode by itself)."""
        self.logic.stopPlacingPoint()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node --------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        """Ensure the parameter node exists, is observed, and has sensible defaults."""
        self.setParameterNode(IBISAgentParameterNode(self.logic.getParameterNode()))
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
            widgets = {str(w.property(PARAMETER_PROPERTY)): w for w in vars(self.ui).values()
                       if hasattr(w, "property") and w.property(PARAMETER_PROPERTY)}
            self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(widgets)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        """Mirror the parts the wrapper cannot bind (the segment selector), end an episode the
        choices no longer describe, then refresh."""
        p = self._parameterNode
        if p:
            wasBlocked = self.ui.segmentSelector.blockSignals(True)
            self.ui.segmentSelector.setCurrentNode(p.segmentation)
            if p.segmentId and self.ui.segmentSelector.currentSegmentID() != p.segmentId:
                self.ui.segmentSelector.setCurrentSegmentID(p.segmentId)
            self.ui.segmentSelector.blockSignals(wasBlocked)
            self._finishIfElsewhere()
        self._refresh()

    def onSegmentationChanged(self, node) -> None:
        """The segmentation combo box changed: show its segments, and set segmentation and
        segment together (this slot runs before the wrapper's own; setting only the segment
        here used to make the wrapper write the old segmentation back)."""
        p = self._parameterNode
        keep = segment_masks.kept_segment(node, p.segmentation, p.segmentId) if p else ""
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

    def onSegmentChanged(self, segmentId) -> None:
        """The user picked another segment."""
        if self._parameterNode and self._parameterNode.segmentId != segmentId:
            self._parameterNode.segmentId = segmentId or ""

    def _finishIfElsewhere(self) -> None:
        """A running episode on another segment, or on the other of a slice and the whole
        segment, ends (its mask stays)."""
        p = self._parameterNode
        if p is None or self._busy or self.logic is None:
            return
        reason = self.logic.finishIfElsewhere(p.segmentation, p.segmentId, p.workOn)
        if reason:
            self._show(history_text.on_ended("Finished", reason, f"Finished: {reason}"))

    def onFromSegmentEditor(self) -> None:
        """Take the volume, segmentation and segment that the Segment Editor has selected."""
        p = self._parameterNode
        volume, segmentation, segmentId = self.logic.segmentEditorSelection()
        if p and segmentation is not None:
            with slicer.util.NodeModify(p):
                p.segmentation = segmentation
                p.inputVolume = volume or p.inputVolume
                p.segmentId = segmentId or p.segmentId

    # -- enabled states, and the saved settings ----------------------------------------------

    def _refresh(self) -> None:
        """Enable each control and set its tooltip from `IBISAgentLogic.actions`, and the words
        that follow the logic's state from `IBISAgentLogic.labels`."""
        if not hasattr(self, "ui") or self.logic is None:
            return
        p = self._parameterNode
        inputs = p.inputs() if p else (None, None, "")
        for name, state in self.logic.actions(*inputs, busy=self._busy, workOn=p.workOn if p else SLICE).items():
            widget = getattr(self.ui, ACTIONS[name][0])
            widget.enabled, widget.toolTip = state.enabled, state.tooltip
        for name, text in self.logic.labels().items():
            getattr(self.ui, name).text = text

    def _settingsFromFields(self, recordFolder=None) -> AgentSettings:
        """The settings the fields show (the record folder is the one last chosen, or
        ``recordFolder`` when the user just chose it)."""
        values = {name: getattr(getattr(self.ui, widget), PROPERTIES.get(name, "text")) for name, widget in FIELDS.items()}
        values["recordFolder"] = recordFolder or self.logic.settings.recordFolder
        return AgentSettings.from_fields(values)

    def _showSettings(self, settings: AgentSettings) -> None:
        """Show ``settings`` in the fields without applying them field by field."""
        widgets = [getattr(self.ui, widget) for widget in FIELDS.values()]
        for widget in widgets:
            widget.blockSignals(True)
        for name, value in settings.to_fields().items():
            setattr(getattr(self.ui, FIELDS[name]), PROPERTIES.get(name, "text"), value)
        for widget in widgets:
            widget.blockSignals(False)
        self.logic.settings = settings

    def _applySettings(self, save: bool, recordFolder=None, showErrors: bool = True) -> None:
        """The logic uses the settings the fields show; ``save``: the user edited them, so they
        are remembered too. A record folder that cannot be used turns recording off, saying why."""
        settings = self._settingsFromFields(recordFolder)
        problem = self.logic.applySettings(settings)
        if problem:
            self.ui.recordCheckBox.checked = False
            self._setStatus(f"Not recording for training: {problem}")
            if showErrors:
                slicer.util.errorDisplay(f"Cannot record for training.\n\n{problem}")
        if save:
            settings.save(qt.QSettings())
        self._refresh()

    # -- the one error path, and agent calls off the main thread ---------------------------

    @contextlib.contextmanager
    def _action(self, failureMessage):
        """Wrap one user action: the logic takes the settings the fields show (a script may have
        set them), wait cursor at once, controls locked, one error display. A cancelled wait
        ends the agent session quietly (the steps applied before stay)."""
        self.logic.stopPlacingPoint()
        self._applySettings(False, showErrors=False)
        self._busy, self._cancelRequested, self._stopRequested = True, False, False
        self._refresh()
        qt.QApplication.setOverrideCursor(qt.Qt.WaitCursor)
        try:
            yield
            self.lastError = None
        except Cancelled:
            self.lastError = None
            self._finishQuietly(history_text.CANCELLED)
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
            self._finishIfElsewhere()  # the choices may have changed while the agent worked
            self._refresh()

    def _runOnWorker(self, function):
        """The logic's ``callAgent``: run ``function`` on the worker thread and return its
        result, keeping the panel alive (`AgentWorker.call`). After PROGRESS_DIALOG_DELAY_S a
        progress dialog offers Cancel, which raises ``ibisagent.errors.Cancelled`` here (the
        call's answer is dropped). ``function`` must not touch Qt or MRML."""
        dialogs = []
        self._refresh()  # e.g. Cancel, once a run-through propagation is under way

        def showDialog():
            dialog = qt.QProgressDialog("Waiting for the agent...", "Cancel", 0, 0, slicer.util.mainWindow())
            dialog.setWindowTitle("IBISAgent")
            dialog.setWindowModality(qt.Qt.WindowModal)
            dialog.connect("canceled()", self.onCancelWait)
            dialog.show()
            dialogs.append(dialog)

        try:
            return self._worker.call(function, slicer.app.processEvents, lambda: self._cancelRequested,
                                     on_slow=showDialog, slow_after=PROGRESS_DIALOG_DELAY_S)
        finally:
            for dialog in dialogs:
                dialog.hide()
                dialog.deleteLater()

    def onCancelWait(self) -> None:
        """Cancel the current wait (the progress dialog's and the Propagate section's Cancel)."""
        self._cancelRequested = self._stopRequested = True

    def _ensure(self, packages, who="The in-process agent") -> None:
        """Install the missing ``packages`` after one question (`IBISAgentLogic.ensurePackages`)."""
        self.logic.ensurePackages(packages, who, slicer.util.confirmOkCancelDisplay)

    # -- actions: each button runs one handler inside `_action` ----------------------------

    def _handlers(self) -> dict:
        """action -> what it does; `runAction` runs one."""
        logic, show = self.logic, self._show
        return {
            "testConnection": self._testConnection,
            "continue": self._continue,
            "next": lambda: self._showProposal(logic.proposeNext()),
            "accept": lambda: self._showStep(logic.acceptProposal()),
            "skip": lambda: logic.skipProposal() or show(history_text.SKIPPED),
            "undo": lambda: logic.undo() and show(history_text.UNDONE),
            "flip": lambda: show(history_text.on_flip(logic.flipProposal())),
            "addPositive": lambda: self.startPlacingPoint(True),
            "addNegative": lambda: self.startPlacingPoint(False),
            "autoRun": self._autoRun,
            "finish": self._finish,
            "propagate": self._propagate,
            "nextSlice": lambda: self._showOpenedSlice(logic.nextPropagatedSlice()),
            "stopHere": lambda: show(history_text.on_stop_here(logic.propagationState()))
            or self._showOpenedSlice(logic.stopPropagationHere()),
            "finishPropagation": lambda: self._showPropagationEnd(logic.finishPropagation()),
            "undoPropagation": lambda: logic.undoPropagation() and show(history_text.PROPAGATION_UNDONE),
            "localServer": self._toggleLocalServer,
        }

    def runAction(self, name) -> None:
        """Run the handler of action ``name`` (a button, a shortcut) in the one error path,
        which says `actions.FAILED` first when it fails."""
        with self._action(FAILED[name]):
            self._handlers()[name]()

    def _testConnection(self) -> None:
        self._ensure(self.logic.localEnginePackages())
        self.ui.connectionStatusLabel.text = history_text.connection(self.logic.serverInfo())
        self._setStatus("Agent ready.")

    def _continue(self) -> None:
        """Continue my mask: an episode from the segment on the view's current slice, or on the
        whole segment (Work on)."""
        self.ui.historyListWidget.clear()
        self._startEpisode()
        self._showProposal(self.logic.proposeNext())

    def _startEpisode(self) -> None:
        self._ensure(self.logic.localEnginePackages())
        p = self._parameterNode
        state = self.logic.startEpisode(*p.inputs(), request=p.request, view=p.view, maxSteps=p.maxSteps,
                                        workOn=p.workOn)
        self._show(history_text.on_start(state))

    def _autoRun(self) -> None:
        """Accept what is on screen, then run until N steps are done, the agent stops or Stop
        is pressed (the logic's run loop)."""
        if self.logic.activeEpisode is None:
            self._startEpisode()
        stop = self.logic.runSteps(self._parameterNode.autoSteps, onStep=self._showStep, onProposal=self._showProposal,
                                   decide=lambda _proposal: None if self._stopRequested else self.logic.onScreenClicks())
        self._setStatus(f"Auto-run ended ({stop}).")

    def onStop(self) -> None:
        self._stopRequested = True
        self._setStatus("Stopping after the current step...")

    def _finish(self) -> None:
        """Keep the mask and end the episode (while reviewing a propagation: end that)."""
        if self.logic.propagation is not None:
            self._showPropagationEnd(self.logic.finishPropagation())
            return
        self._show(history_text.on_finish(self.logic.finish()))

    def _finishQuietly(self, message) -> None:
        """End the running episode (its mask stays) and say why; never raises."""
        finished = self.logic.finishQuietly()
        self._show(history_text.on_ended("Finished", message) if finished else history_text.Shown(status=message))

    def onSave(self, path=None) -> None:
        """Save the segment (.seg.nrrd, or a NIfTI labelmap for .nii/.nii.gz)."""
        path = path or qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), "Save mask", "",
                                                      "Segmentation (*.seg.nrrd);;NIfTI labelmap (*.nii.gz *.nii)")
        if path:
            with self._action(FAILED["save"]):
                p = self._parameterNode
                written = self.logic.saveSegment(p.segmentation, p.segmentId, path, referenceVolumeNode=p.inputVolume)
                self._setStatus("Saved " + ", ".join(written or [path]))

    def _showProposal(self, proposal) -> None:
        self._show(history_text.on_proposal(proposal, self.logic.state()["stop_reason"]))

    def _showStep(self, step) -> None:
        self._setStatus(history_text.step(step))
        slicer.app.processEvents()

    # -- propagation through the slices ------------------------------------------------------

    def _propagate(self) -> None:
        """Review each slice (stop on every slice with the proposal shown) or run through
        (progress; Cancel keeps the slices done)."""
        self._ensure(self.logic.localEnginePackages())
        p = self._parameterNode
        self.ui.historyListWidget.clear()
        self.ui.propagateProgressBar.value = 0
        if p.propagateMode == "review":
            self._showOpenedSlice(self.logic.startPropagation(*p.inputs(), **p.propagationArguments()))
            return
        self.ui.propagateProgressBar.maximum = 0  # busy until the target ends
        progress = history_text.RunThrough()

        def onSlice(record):
            self._show(progress.on_slice(record))
            slicer.app.processEvents()

        self._showPropagationEnd(self.logic.propagate(*p.inputs(), onSlice=onSlice,
                                                      shouldCancel=lambda: self._cancelRequested,
                                                      **p.propagationArguments()))

    def _showOpenedSlice(self, opened) -> None:
        """Review: show the newly opened slice and ask the agent (or say the propagation ended)."""
        if opened is None:
            summary = self.logic.lastPropagationSummary()
            if summary is not None:
                self._showPropagationEnd(summary)
            return
        asking = self._parameterNode.propagateSteps > 0
        self._show(history_text.on_slice_opened(opened, asking))
        if asking:
            self._showProposal(self.logic.proposeNext())

    def _showPropagationEnd(self, summary) -> None:
        written = len(summary["written"])
        self.ui.propagateProgressBar.maximum = max(written, 1)
        self.ui.propagateProgressBar.value = written
        self._show(history_text.on_propagation_end(summary))

    # -- display helpers -------------------------------------------------------------------

    def _show(self, shown) -> None:
        """Add the history rows of a `history_text.Shown` and set its status line."""
        for row in shown.rows:
            item = qt.QListWidgetItem(row.label)
            item.setToolTip(row.tooltip)
            item.setData(qt.Qt.UserRole, row.details)
            if row.bold:
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            self.ui.historyListWidget.addItem(item)
            self.ui.historyListWidget.scrollToBottom()
            self.ui.historyListWidget.setCurrentItem(item)
        if shown.status is not None:
            self._setStatus(shown.status)

    def onHistoryRowChanged(self, row) -> None:
        """Show the selected history entry in full."""
        item = self.ui.historyListWidget.item(row) if row >= 0 else None
        self.ui.historyDetailsTextEdit.setPlainText(item.data(qt.Qt.UserRole) if item else "")

    def _setStatus(self, text) -> None:
        self.ui.statusLabel.text = text
        logger.info(text)

    # -- keyboard shortcuts ----------------------------------------------------------------

    def _createShortcuts(self) -> None:
        for name, key, _text in SHORTCUTS:
            shortcut = qt.QShortcut(qt.QKeySequence(key), slicer.util.mainWindow())
            shortcut.setEnabled(False)

            def trigger(name=name):
                if getattr(self.ui, ACTIONS[name][0]).enabled:  # same rules as the button
                    self.runAction(name)

            shortcut.connect("activated()", trigger)
            # Ctrl+Z may also be bound by another enabled action; treat ambiguity as ours.
            shortcut.connect("activatedAmbiguously()", trigger)
            self._shortcuts[name] = shortcut

    def _updateShortcuts(self, _old=None, focus=None) -> None:
        """Enable the shortcuts that may take their key now (`shortcuts.live_shortcuts`); also
        Qt's focusChanged(old, new) slot."""
        focus = focus if focus is not None else qt.QApplication.focusWidget()
        live = live_shortcuts(self._shown, focus.inherits if focus is not None else None)
        for name, shortcut in self._shortcuts.items():
            shortcut.setEnabled(name in live)

    # -- placing extra points: Slicer's place mode on the proposal list --------------------

    def startPlacingPoint(self, positive) -> None:
        """Place one point into the proposal list with polarity ``positive`` in Slicer's place
        mode (the logic's placement; the user's own active list comes back when it is placed)."""

        def placed():  # one point per press; Slicer leaves place mode by itself
            self.logic.stopPlacingPoint(leavePlaceMode=False)
            self._refresh()

        self.logic.startPlacingPoint(positive, placed)
        slicer.modules.markups.logic().StartPlaceMode(False)
        self._setStatus(history_text.placing(self.logic.state(), positive))

    # -- the local server (IBISAgentLib.local_server: the logic owns its life cycle) --------

    def _toggleLocalServer(self) -> None:
        """Start the local agent server (after installing what it needs), or stop it."""
        if self.logic.localServerRunning:
            self.stopLocalServer()
            return
        self._ensure(self.logic.localServerPackages(), "The local agent server")
        self.ui.serverLogTextEdit.clear()
        server = self.logic.startLocalServer()
        self.ui.serverLogTextEdit.appendPlainText("$ " + " ".join(server.command))
        self.ui.connectionStatusLabel.text = STARTING
        self._serverTimer = qt.QTimer()
        self._serverTimer.setInterval(SERVER_POLL_MS)
        self._serverTimer.connect("timeout()", self._pollServer)
        self._serverTimer.start()

    def _pollServer(self) -> None:
        """Show the server's new log lines and where it stands (looked at on the ping thread)."""
        if self._polling:
            return
        self._polling = True
        try:
            status = self._pinger.call(self.logic.pollLocalServer, tick=slicer.app.processEvents)
        finally:
            self._polling = False
        for line in status.lines:
            self.ui.serverLogTextEdit.appendPlainText(line)
        if status.changed:  # news only: "Test connection" may have said more since
            self.ui.connectionStatusLabel.text = status.text
            self._setStatus(status.text)
        if not status.running:
            self._serverTimer.stop()
            self._refresh()

    def stopLocalServer(self) -> None:
        """Stop the local server and everything it started (also when Slicer quits)."""
        if self._serverTimer is not None:
            self._serverTimer.stop()
        try:
            lines = self.logic.stopLocalServer()
        except LocalServerError as error:  # another process holds the port
            lines = []
            self._setStatus(str(error))
        if hasattr(self, "ui"):
            for line in lines:
                self.ui.serverLogTextEdit.appendPlainText(line)
            self.ui.connectionStatusLabel.text = STOPPED
            self._refresh()


#
# IBISAgentTest
#


class IBISAgentTest(ScriptedLoadableModuleTest):
    """Runs the panel's flow in a real Slicer with the CPU defaults, on the module's sample data
    (IBISAgentBrain, loaded through the Sample Data module): in Local (no server) mode, the
    weight-free policy and the classical tool run inside Slicer, on a slice and on the whole
    segment (Work on: volume, the 3D graph cut). Testing/Python/
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
        self.setUp()
        self.test_widgetFlow3D()

    def loadSample(self):
        """The module's sample through the Sample Data module: (volume, segmentation, segment id)."""
        import SampleData

        from IBISAgentLib.sample_data_source import SAMPLE

        if SampleData.SampleDataLogic().sourceForSampleName(SAMPLE["sampleName"]) is None:
            registerSampleData()  # when the test runs before Slicer's startupCompleted
        volume, segmentation = SampleData.downloadSamples(SAMPLE["sampleName"])
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        return volume, segmentation, segmentation.GetSegmentation().GetNthSegmentID(0)

    @staticmethod
    @contextlib.contextmanager
    def keptPanelFields(widget):
        """Put the Server fields and the remembered settings back as they were."""
        fields = widget._settingsFromFields()
        saved = AgentSettings.load(qt.QSettings())
        try:
            yield
        finally:
            widget._showSettings(fields)
            widget._applySettings(False, showErrors=False)
            now = AgentSettings.load(qt.QSettings())
            assert now == saved, f"a test changed the remembered settings: {saved} -> {now}"

    def test_widgetFlow(self):
        """Local (no server) mode: test, continue, flip, place a negative point, accept, undo,
        auto-run, finish, save."""
        import unittest

        slicer.util.selectModule("IBISAgent")
        widget = slicer.modules.IBISAgentWidget
        missing = widget.logic.localEnginePackages() if widget.logic.local else []
        if missing:
            raise unittest.SkipTest("Skipped: the in-process agent needs " + ", ".join(missing) + " in Slicer.")
        self.delayDisplay("Starting the IBISAgent widget flow test (Local, no server)")
        with self.keptPanelFields(widget):
            widget.ui.agentModeComboBox.currentIndex = MODES.index(LOCAL)
            self.runFlow(widget)
            self.assertTrue(widget.ui.connectionStatusLabel.text.startswith("In Slicer"))
        self.delayDisplay("IBISAgent widget flow test passed")

    def runFlow(self, widget):
        """The panel's flow on a synthetic volume, with whatever agent the panel is set to."""
        import tempfile

        import numpy as np

        volume, segmentation, segmentId = self.loadSample()
        p = widget._parameterNode
        p.inputVolume, p.segmentation, p.segmentId = volume, segmentation, segmentId
        p.view, p.request, p.workOn = "Red", "Segment the brain.", SLICE
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
        if widget.ui.flipButton.enabled:
            widget.ui.flipButton.click()
            self.assertIsNone(widget.lastError, widget.lastError)
        selection = slicer.mrmlScene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
        usersList = selection.GetActivePlaceNodeID()
        widget.startPlacingPoint(False)
        proposals = widget.logic.placement.node
        rows, cols = worked.geometry.shape
        proposals.AddControlPoint(*[float(v) for v in worked.geometry.pixel_to_ras(cols // 2, rows // 2)])
        self.assertFalse(proposals.GetNthControlPointSelected(proposals.GetNumberOfControlPoints() - 1))
        widget.logic.stopPlacingPoint()
        self.assertEqual(selection.GetActivePlaceNodeID(), usersList)  # the user's active list is back
        widget.ui.acceptButton.click()
        self.assertIsNone(widget.lastError, widget.lastError)
        self.assertTrue(widget.ui.undoButton.enabled)
        self.assertFalse(widget.logic.state()["steps"][-1]["clicks"][-1]["positive"])

        widget.ui.undoButton.click()
        self.assertIsNone(widget.lastError, widget.lastError)
        after = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume)
        np.testing.assert_array_equal(before, after)
        self.assertEqual(widget.ui.undoButton.enabled, widget.logic.state()["can_undo"])  # read from the logic

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

    def test_widgetFlow3D(self):
        """Work on: volume (Local): refused with a server, saying why; continue, a proposal on its
        slice with the view there, skip, a negative point placed in the Yellow view, accept, undo
        (bit-exact), auto-run, finish; switching back to a slice ends the 3D session."""
        import unittest

        import numpy as np

        from IBISAgentLib.actions import REMOTE_3D, VOLUME
        from IBISAgentLib.settings import DEFAULT_SERVER_URL
        from IBISAgentLib.slice_geometry import slice_geometry

        slicer.util.selectModule("IBISAgent")
        widget = slicer.modules.IBISAgentWidget
        if widget.logic.localEnginePackages():
            raise unittest.SkipTest("Skipped: the in-process agent needs " + ", ".join(
                widget.logic.localEnginePackages()) + " in Slicer.")
        self.delayDisplay("Starting the IBISAgent 3D flow test (Local, no server)")
        volume, segmentation, segmentId = self.loadSample()
        p = widget._parameterNode
        p.inputVolume, p.segmentation, p.segmentId = volume, segmentation, segmentId
        p.view, p.request, p.workOn = "Red", "Segment the brain.", VOLUME
        before = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume).copy()
        with self.keptPanelFields(widget):
            widget.ui.agentModeComboBox.currentIndex = MODES.index(SERVER)
            widget.ui.serverUrlLineEdit.text = DEFAULT_SERVER_URL
            self.assertFalse(widget.ui.continueButton.enabled)
            self.assertEqual(widget.ui.continueButton.toolTip, REMOTE_3D)
            widget.ui.agentModeComboBox.currentIndex = MODES.index(LOCAL)
            self.assertTrue(widget.ui.continueButton.enabled, widget.ui.continueButton.toolTip)

            widget.ui.continueButton.click()
            self.assertIsNone(widget.lastError, widget.lastError)
            pending = widget.logic.volumeSession.session.pending
            if pending is not None and pending.voxel is not None:  # the view moved to the proposal's slice
                self.assertEqual(slice_geometry(volume, pending.plane).slice_index, pending.index)
            if widget.ui.skipButton.enabled:
                widget.ui.skipButton.click()
                self.assertIsNone(widget.lastError, widget.lastError)

            # A negative point in the Yellow view, off the slices the other views and the agent show
            # (a point on one of those would belong to that view).
            session, yellow = widget.logic.volumeSession.session, slice_geometry(volume, "Yellow")
            shown = [(name, slice_geometry(volume, name).slice_index) for name in ("Red", "Green")]
            if session.pending is not None:
                shown.append((session.pending.plane, session.pending.index))
            rows, cols = yellow.shape
            col, row = next((c, r) for r in (rows // 4, 3 * rows // 4) for c in (cols // 3, 2 * cols // 3)
                            if all(session.views.to_slice(name, tuple(yellow.pixel_to_ijk(c, r)[::-1]))[0] != index
                                   for name, index in shown))
            widget.startPlacingPoint(False)
            widget.logic.placement.node.AddControlPoint(*[float(v) for v in yellow.pixel_to_ras(col, row)])
            widget.logic.stopPlacingPoint()
            widget.ui.acceptButton.click()
            self.assertIsNone(widget.lastError, widget.lastError)
            click = widget.logic.state()["steps"][-1]["clicks"][-1]
            self.assertEqual((click["plane"], click["positive"]), ("Yellow", False))
            self.assertTrue(widget.ui.undoButton.enabled)
            widget.ui.undoButton.click()
            self.assertIsNone(widget.lastError, widget.lastError)
            after = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume)
            np.testing.assert_array_equal(before, after)

            p.autoSteps = 2
            for button in (widget.ui.autoRunButton, widget.ui.finishButton):
                button.click()
                self.assertIsNone(widget.lastError, widget.lastError)
            self.assertIsNone(widget.logic.volumeSession)

            widget.ui.continueButton.click()  # choosing a slice again ends the 3D session
            self.assertIsNotNone(widget.logic.volumeSession)
            p.workOn = "slice"
            self.assertIsNone(widget.logic.activeEpisode)
            self.assertIn("slice", widget.ui.statusLabel.text)
        self.delayDisplay("IBISAgent 3D flow test passed")
