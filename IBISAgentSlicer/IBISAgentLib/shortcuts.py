"""The panel's keyboard shortcuts, and when each may take its key.

Single-letter shortcuts (A, N, P) are handy while the hands are on the mouse in a slice view,
but a window-wide Qt shortcut takes its key before the focused widget sees it: typing "a" in a
tree view's type-ahead, a combo box or the Python console would press Accept instead. So a
single-letter shortcut is live only while the module is shown *and* the focus is not in a
widget that takes typing (`TYPING_WIDGETS`); the ones with a modifier (Ctrl+Z, Ctrl+Return) are
live whenever the module is shown (a line edit claims its own Ctrl+Z first anyway). Slicer's
slice and 3D views use none of A, N, P (their key bindings: Libs/MRML/DisplayableManager).

Qt-free: the widget passes a predicate that says whether the focus widget inherits a class
(``QObject.inherits``) and enables the returned shortcuts.
"""

from __future__ import annotations

from typing import Callable, FrozenSet, Optional

#: (name, key sequence, what it does), in the order the help lists them.
SHORTCUTS = (
    ("accept", "A", "Accept the proposed click(s) as they now stand"),
    ("next", "N", "Next step: ask the agent for a proposal"),
    ("undo", "Ctrl+Z", "Undo the last step"),
    ("flip", "P", "Flip the polarity of the selected proposed point"),
    ("finish", "Ctrl+Return", "Finish: write the mask into the segment"),
)

#: Widget classes that use plain keys themselves (text entry, type-ahead, spin boxes).
TYPING_WIDGETS = ("QLineEdit", "QTextEdit", "QPlainTextEdit", "QAbstractSpinBox", "QComboBox",
                  "QAbstractItemView", "QKeySequenceEdit")


def single_key(key: str) -> bool:
    """True for a shortcut without a modifier ("A"), False for "Ctrl+Z"."""
    return "+" not in key


def live_shortcuts(module_shown: bool, focus_inherits: Optional[Callable[[str], bool]]) -> FrozenSet[str]:
    """Names of the shortcuts that may take their key now. ``focus_inherits(class_name)``: does
    the focus widget inherit that class (None: no widget has the focus)."""
    if not module_shown:
        return frozenset()
    typing = focus_inherits is not None and any(focus_inherits(name) for name in TYPING_WIDGETS)
    return frozenset(name for name, key, _what in SHORTCUTS if not (typing and single_key(key)))


def help_rows() -> str:
    """The shortcut list for the module's help text (HTML list items)."""
    return "".join(f"<li><b>{key}</b>: {what}</li>" for _name, key, what in SHORTCUTS)
