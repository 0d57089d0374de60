"""In-Slicer self-test of the IBISAgent panel (registered with ctest by Testing/Python/CMakeLists.txt).

Runs inside a real Slicer (`Slicer --testing --python-code "import slicer.testing; ..."`):
checks that the panel loads its .ui with every control, that its sample data is listed in
Sample Data and loads, that buttons explain what is missing,
that the shortcuts are live only while the module is shown (and the single letters not while
typing), that module enters keep one parameter-node connection and that choosing another
segmentation sticks; runs the console API (IBISAgentLogic with the in-process engine, on a slice
and on the whole segment), the module's own flow tests (Local mode, no server: on a slice, and
on the whole segment in 3D) and the slice flow against a local server started from the panel
("Start local server"). For the server flow, point $IBISAGENT_SERVER_PYTHON at a
Python with `ibisagent[server]` installed, or install the server packages into Slicer's Python;
the test skips, saying so, otherwise. The user's remembered settings and Server fields are the
same after the tests as before.
"""

import os
import socket
import time
import unittest

import slicer


class IBISAgentSelfTest(unittest.TestCase):
    def setUp(self):
        slicer.mrmlScene.Clear()
        slicer.util.selectModule("IBISAgent")
        self.widget = slicer.modules.IBISAgentWidget

    def test_panelLoads(self):
        ui = self.widget.ui
        controls = (
            ui.volumeSelector,
            ui.segmentationSelector,
            ui.segmentSelector,
            ui.viewComboBox,
            ui.workOnComboBox,
            ui.requestLineEdit,
            ui.agentModeComboBox,
            ui.serverUrlLineEdit,
            ui.continueButton,
            ui.historyListWidget,
        )
        self.assertTrue(all(control is not None for control in controls))
        self.assertEqual(
            [ui.viewComboBox.itemText(i) for i in range(ui.viewComboBox.count)], ["Red", "Yellow", "Green"]
        )
        self.assertEqual([ui.workOnComboBox.itemText(i) for i in range(ui.workOnComboBox.count)], ["slice", "volume"])
        self.assertEqual(ui.agentModeComboBox.itemText(1), "Local (no server)")

    def test_moduleParts(self):
        """The template's parts: the widget's logic is the console's, every control the .ui binds
        names a parameter, and the help lists every shortcut key."""
        import IBISAgent
        from IBISAgentLib.logic import IBISAgentLogic
        from IBISAgentLib.shortcuts import SHORTCUTS

        self.assertIsInstance(self.widget.logic, IBISAgentLogic)
        bound = [str(w.property(IBISAgent.PARAMETER_PROPERTY)) for w in vars(self.widget.ui).values()
                 if hasattr(w, "property") and w.property(IBISAgent.PARAMETER_PROPERTY)]
        self.assertGreater(len(bound), 5)
        for name in bound:
            self.assertTrue(hasattr(self.widget._parameterNode, name), name)
        for _name, key, _what in SHORTCUTS:
            self.assertIn(f"<b>{key}</b>", slicer.modules.ibisagent.helpText)

    def test_sampleDataIsListedAndLoads(self):
        """Sample Data lists IBISAgentBrain; it loads a volume and a rough segment."""
        import SampleData

        from IBISAgentLib.sample_data_source import SAMPLE

        self.assertIsNotNone(SampleData.SampleDataLogic().sourceForSampleName(SAMPLE["sampleName"]))
        volume, segmentation = SampleData.downloadSamples(SAMPLE["sampleName"])
        self.assertTrue(volume.IsA("vtkMRMLScalarVolumeNode") and segmentation.IsA("vtkMRMLSegmentationNode"))
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 1)

    def test_buttonsSayWhatIsMissing(self):
        ui = self.widget.ui
        self.assertFalse(ui.continueButton.enabled)
        self.assertIn("volume", ui.continueButton.toolTip.lower())
        self.assertFalse(ui.undoButton.enabled)
        self.assertFalse(ui.stopButton.enabled)

    def test_shortcutsOnlyWhileShownAndNotWhileTyping(self):
        import qt

        shortcuts = self.widget._shortcuts
        self.assertEqual(set(shortcuts), {"accept", "next", "undo", "flip", "finish"})
        self.widget.ui.continueButton.setFocus()
        slicer.app.processEvents()
        self.assertTrue(all(s.enabled for s in shortcuts.values()))
        self.widget.ui.requestLineEdit.setFocus()  # typing: the single letters give their keys back
        slicer.app.processEvents()
        if qt.QApplication.focusWidget() is self.widget.ui.requestLineEdit:  # focus needs an active window
            self.assertFalse(shortcuts["accept"].enabled or shortcuts["next"].enabled or shortcuts["flip"].enabled)
            self.assertTrue(shortcuts["undo"].enabled and shortcuts["finish"].enabled)
        slicer.util.selectModule("Data")
        self.assertFalse(any(s.enabled for s in shortcuts.values()))
        slicer.util.selectModule("IBISAgent")
        self.assertTrue(shortcuts["undo"].enabled)

    def test_oneParameterNodeConnectionAcrossEnters(self):
        node = self.widget._parameterNode
        tag = self.widget._parameterNodeGuiTag
        self.assertIsNotNone(tag)  # a real tag in every Slicer version (connectParametersToGui)
        for _ in range(3):
            slicer.util.selectModule("Data")
            slicer.util.selectModule("IBISAgent")
        self.assertIs(self.widget._parameterNode.parameterNode, node.parameterNode)
        self.assertEqual(self.widget._parameterNodeGuiTag, tag)
        self.assertEqual(list(node._parameterGUIs), [tag])

    def test_choosingAnotherSegmentationSticks(self):
        import IBISAgent

        test = IBISAgent.IBISAgentTest()
        volume, first, _firstId = test.loadSample()
        second = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "second")
        secondId = second.GetSegmentation().AddEmptySegment("other")
        self.widget.ui.segmentationSelector.setCurrentNode(first)
        self.widget.ui.segmentationSelector.setCurrentNode(second)
        slicer.app.processEvents()
        self.assertIs(self.widget._parameterNode.segmentation, second)
        self.assertEqual(self.widget._parameterNode.segmentId, secondId)
        self.assertIs(self.widget.ui.segmentationSelector.currentNode(), second)

    def test_consoleLogic(self):
        """What the README shows for the Python console: the logic alone, no panel, no server."""
        import numpy as np

        import IBISAgent
        from IBISAgentLib import requirements
        from IBISAgentLib.logic import IBISAgentLogic

        missing = requirements.missing(requirements.engine_requirements())
        if missing:
            self.skipTest("Skipped: the in-process agent needs " + ", ".join(missing))
        volume, segmentation, segmentId = IBISAgent.IBISAgentTest().loadSample()
        before = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume).copy()
        logic = IBISAgentLogic()
        logic.useLocalEngine("heuristic", "graphcut")
        self.assertTrue(logic.pingServer())
        self.assertTrue(logic.serverInfo()["local"])

        self.assertStepUndoneExactly(logic, (volume, segmentation, segmentId), "slice", before)

        result = logic.continueMask(volume, segmentation, segmentId, "Segment the brain.", view="Red", maxSteps=4)
        self.assertIn("statistics", result)
        final = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume)
        changed = np.argwhere(final != before)
        if len(changed):
            self.assertEqual(set(changed[:, 0].tolist()), {int(changed[0, 0])}, "only one slice may change")

        # The whole segment (3D): the same step methods, then one call that runs until the agent stops.
        self.assertStepUndoneExactly(logic, (volume, segmentation, segmentId), "volume", final)
        result = logic.continueVolume(volume, segmentation, segmentId, "Segment the brain.", view="Red", maxSteps=2)
        self.assertLessEqual(len(result["steps"]), 2)
        self.assertIsNone(logic.activeEpisode)

    def assertStepUndoneExactly(self, logic, sample, workOn, expected):
        """One episode on ``workOn`` ("slice" or "volume") of ``sample`` (volume, segmentation,
        segment id): the proposal's point (if any) flipped and back, accepted and undone, then
        Finish; the segment must be ``expected`` bit for bit."""
        import numpy as np

        volume, segmentation, segmentId = sample
        state = logic.startEpisode(volume, segmentation, segmentId, "Segment the brain.", view="Red", workOn=workOn)
        self.assertEqual(state["workOn"], workOn)
        logic.proposeNext()
        if logic.onScreenClicks():
            self.assertEqual(logic.flipProposal(), 0)
            logic.flipProposal(0)
            logic.acceptProposal()
            self.assertTrue(logic.undo())
        logic.finish()
        np.testing.assert_array_equal(expected, slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId,
                                                                                          volume))

    def test_widgetFlowLocal(self):
        import IBISAgent

        test = IBISAgent.IBISAgentTest()
        test.setUp()
        test.test_widgetFlow()

    def test_widgetFlow3DLocal(self):
        import IBISAgent

        test = IBISAgent.IBISAgentTest()
        test.setUp()
        test.test_widgetFlow3D()

    def test_widgetFlowWithLocalServer(self):
        """Start a local server from the panel, then the panel's flow against it."""
        import IBISAgent
        from ibisagent import protocol
        from IBISAgentLib import requirements
        from IBISAgentLib.local_server import START_TIMEOUT_S, port_in_use
        from IBISAgentLib.settings import MODES, SERVER

        widget = self.widget
        serverPython = os.environ.get("IBISAGENT_SERVER_PYTHON", "")
        missing = requirements.missing(requirements.server_requirements())
        if not serverPython and missing:
            self.skipTest(
                "Skipped: Slicer's Python lacks the server packages " + ", ".join(missing)
                + ". Set IBISAGENT_SERVER_PYTHON to a Python with 'ibisagent[server]' installed."
            )
        with socket.socket() as probe:
            probe.bind((protocol.DEFAULT_HOST, 0))
            port = probe.getsockname()[1]
        test = IBISAgent.IBISAgentTest()
        test.setUp()
        with test.keptPanelFields(widget):
            widget.ui.agentModeComboBox.currentIndex = MODES.index(SERVER)
            widget.ui.serverPythonLineEdit.text = serverPython
            widget.ui.serverUrlLineEdit.text = f"http://{protocol.DEFAULT_HOST}:{port}"
            widget.ui.serverArgumentsLineEdit.text = ""
            widget.ui.tokenLineEdit.text = ""
            widget.ui.startServerButton.click()
            try:
                deadline = time.monotonic() + START_TIMEOUT_S
                while not widget.logic.localServerReady:  # the panel's timer polls it
                    self.assertLess(time.monotonic(), deadline, "the local server did not become ready")
                    slicer.app.processEvents()
                    time.sleep(0.05)
                self.assertTrue(widget.logic.pingServer())
                test.runFlow(widget)
                self.assertTrue(widget.ui.connectionStatusLabel.text.startswith("Connected"))
            finally:
                widget.stopLocalServer()
        self.assertIsNone(widget.logic.localServer)
        self.assertFalse(port_in_use(protocol.DEFAULT_HOST, port))  # the real server is gone, not just its launcher


if __name__ == "__main__":
    unittest.main()
