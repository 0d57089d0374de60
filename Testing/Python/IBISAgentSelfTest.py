"""In-Slicer self-test of the IBISAgent panel (registered with ctest by Testing/Python/CMakeLists.txt).

Runs inside a real Slicer (`Slicer --testing --python-code "import slicer.testing; ..."`):
checks that the panel loads its .ui with every control, that buttons explain what is missing,
that the shortcuts are live only while the module is shown, then runs the module's own flow test
(IBISAgentTest: local server with the CPU defaults, continue, accept, undo, auto-run, finish,
save). Point $IBISAGENT_SERVER_PYTHON at a Python with `ibisagent[server]` installed, or install
the server packages into Slicer's Python.
"""

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
            ui.serverUrlLineEdit,
            ui.continueButton,
            ui.historyListWidget,
        )
        self.assertTrue(all(control is not None for control in controls))
        self.assertEqual(
            [ui.viewComboBox.itemText(i) for i in range(ui.viewComboBox.count)], ["Red", "Yellow", "Green"]
        )

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

    def test_widgetFlowWithLocalServer(self):
        import IBISAgent

        test = IBISAgent.IBISAgentTest()
        test.setUp()
        test.test_widgetFlow()


if __name__ == "__main__":
    unittest.main()
