"""In-Slicer self-test of the IBISAgent panel (registered with ctest by Testing/Python/CMakeLists.txt).

Runs inside a real Slicer (`Slicer --testing --python-code "import slicer.testing; ..."`):
checks that the panel loads its .ui with every control, that buttons explain what is missing,
that the shortcuts are live only while the module is shown; runs the console API
(IBISAgentLogic with the in-process engine), the module's own flow test (Local mode, no server)
and the same flow against a local server started from the panel ("Start local server"). For the
server flow, point $IBISAGENT_SERVER_PYTHON at a Python with `ibisagent[server]` installed, or
install the server packages into Slicer's Python; the test skips, saying so, otherwise.
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
        self.assertEqual(ui.agentModeComboBox.itemText(1), "Local (no server)")

    def test_buttonsSayWhatIsMissing(self):
        ui = self.widget.ui
        self.assertFalse(ui.continueButton.enabled)
        self.assertIn("volume", ui.continueButton.toolTip.lower())
        self.assertFalse(ui.undoButton.enabled)
        self.assertFalse(ui.stopButton.enabled)

    def test_shortcutsOnlyWhileShown(self):
        shortcuts = self.widget._shortcuts
        self.assertEqual(set(shortcuts), {"accept", "next", "undo", "flip", "finish"})
        self.assertTrue(all(s.enabled for s in shortcuts.values()))
        slicer.util.selectModule("Data")
        self.assertFalse(any(s.enabled for s in shortcuts.values()))
        slicer.util.selectModule("IBISAgent")
        self.assertTrue(all(s.enabled for s in shortcuts.values()))

    def test_consoleLogic(self):
        """What the README shows for the Python console: the logic alone, no panel, no server."""
        import numpy as np

        import IBISAgent
        from IBISAgentLib.logic import LOCAL_ENGINE_REQUIREMENTS, IBISAgentLogic, missingRequirements

        if missingRequirements(LOCAL_ENGINE_REQUIREMENTS):
            self.skipTest("Skipped: the in-process agent needs " + ", ".join(missingRequirements(LOCAL_ENGINE_REQUIREMENTS)))
        volume, segmentation, segmentId, _truth = IBISAgent.IBISAgentTest()._makeVolumeAndSegment()
        before = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume).copy()
        logic = IBISAgentLogic()
        logic.useLocalEngine("heuristic", "sitk")
        self.assertTrue(logic.pingServer())
        self.assertTrue(logic.serverInfo()["local"])

        logic.startEpisode(volume, segmentation, segmentId, "Segment the bright blob.", view="Red")
        proposal = logic.proposeNext()
        if proposal.get("click"):
            self.assertEqual(logic.flipProposal(), 0)
            logic.flipProposal(0)
            logic.acceptProposal()
            self.assertTrue(logic.undo())
        logic.finish()
        after = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume)
        np.testing.assert_array_equal(before, after)

        result = logic.continueMask(volume, segmentation, segmentId, "Segment the bright blob.", view="Red", maxSteps=4)
        self.assertIn("statistics", result)
        final = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume)
        changed = np.argwhere(final != before)
        if len(changed):
            self.assertEqual(set(changed[:, 0].tolist()), {int(changed[0, 0])}, "only one slice may change")

    def test_widgetFlowLocal(self):
        import IBISAgent

        test = IBISAgent.IBISAgentTest()
        test.setUp()
        test.test_widgetFlow()

    def test_widgetFlowWithLocalServer(self):
        """Start a local server from the panel, then the panel's flow against it."""
        import IBISAgent
        from ibisagent import protocol
        from IBISAgentLib.logic import SERVER_REQUIREMENTS, missingRequirements

        widget = self.widget
        serverPython = os.environ.get("IBISAGENT_SERVER_PYTHON", "")
        if not serverPython and missingRequirements(SERVER_REQUIREMENTS):
            self.skipTest(
                "Skipped: Slicer's Python lacks the server packages " + ", ".join(missingRequirements(SERVER_REQUIREMENTS))
                + ". Set IBISAGENT_SERVER_PYTHON to a Python with 'ibisagent[server]' installed."
            )
        with socket.socket() as probe:
            probe.bind((protocol.DEFAULT_HOST, 0))
            port = probe.getsockname()[1]
        widget.ui.agentModeComboBox.currentIndex = IBISAgent.AGENT_MODE_SERVER
        widget.ui.serverPythonLineEdit.text = serverPython
        widget.ui.serverUrlLineEdit.text = f"http://{protocol.DEFAULT_HOST}:{port}"
        widget.ui.serverArgumentsLineEdit.text = ""
        widget.ui.tokenLineEdit.text = ""
        widget._saveSettings()
        test = IBISAgent.IBISAgentTest()
        test.setUp()
        widget.ui.startServerButton.click()
        try:
            deadline = time.monotonic() + IBISAgent.SERVER_START_TIMEOUT_S
            while not widget.isServerReady():
                self.assertLess(time.monotonic(), deadline, "the local server did not become ready")
                slicer.app.processEvents()
                time.sleep(0.05)
            self.assertTrue(widget.logic.pingServer())
            test.runFlow(widget)
            self.assertTrue(widget.ui.connectionStatusLabel.text.startswith("Connected"))
        finally:
            widget.stopLocalServer()
        self.assertFalse(widget._serverRunning())


if __name__ == "__main__":
    unittest.main()
