"""The panel's saved settings, in one small object: which agent to use and how to record.

`AgentSettings` is what the user chose in the Server and Training sections, remembered between
Slicer sessions in the application settings (Edit > Application Settings), never in the scene:
the token stays out of saved scenes. `AgentSettings.load(store)` and `save(store)` take any
object with ``value(key, default)`` and ``setValue(key, value)``: ``qt.QSettings()`` in Slicer,
a dict wrapper in tests. The keys (under ``IBISAgent/``) are those earlier versions saved, so a
user's settings carry over.

The logic takes the whole object (`IBISAgentLogic.configure`); the widget only moves it between
the fields and the store: `FIELDS` names the widget of each setting and `PROPERTIES` its Qt
property, `to_fields` and `from_fields` convert (the mode is a row of `MODES`). Qt-free;
Python 3.9.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict

from ibisagent import protocol

GROUP = "IBISAgent"
SERVER, LOCAL = "server", "local"
#: The agent mode combo box's rows, in order.
MODES = (SERVER, LOCAL)
DEFAULT_SERVER_URL = f"http://{protocol.DEFAULT_HOST}:{protocol.DEFAULT_PORT}"

#: setting -> the .ui widget that shows it.
FIELDS = {
    "mode": "agentModeComboBox",
    "serverUrl": "serverUrlLineEdit",
    "token": "tokenLineEdit",
    "serverPython": "serverPythonLineEdit",
    "serverArguments": "serverArgumentsLineEdit",
    "record": "recordCheckBox",
    "recordFolder": "recordFolderButton",
}
#: setting -> the property of its widget that holds the value (the others: "text").
PROPERTIES = {"mode": "currentIndex", "record": "checked", "recordFolder": "directory"}
#: setting -> its key in the application settings (unchanged since the first release).
KEYS = {
    "mode": "AgentMode",
    "serverUrl": "ServerURL",
    "token": "Token",
    "serverPython": "ServerPython",
    "serverArguments": "ServerArguments",
    "record": "RecordForTraining",
    "recordFolder": "TrainingRecordFolder",
}


@dataclass
class AgentSettings:
    """``mode``: `SERVER` (the agent server at ``serverUrl``, with ``token``) or `LOCAL` (the
    in-process CPU engine). ``serverPython``/``serverArguments``: how *Start local server* runs
    ``ibisagent serve`` (empty: Slicer's own Python, no extra options). ``record``: record every
    applied step for training into ``recordFolder``."""

    mode: str = SERVER
    serverUrl: str = DEFAULT_SERVER_URL
    token: str = ""
    serverPython: str = ""
    serverArguments: str = ""
    record: bool = False
    recordFolder: str = ""

    @property
    def local(self) -> bool:
        return self.mode == LOCAL

    def to_fields(self) -> Dict[str, Any]:
        """{setting: what its field shows (`PROPERTIES`)}: the mode as its row of `MODES`; no
        record folder while none was chosen (the folder button keeps showing its own)."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        values["mode"] = MODES.index(self.mode)
        if not self.recordFolder:
            del values["recordFolder"]
        return values

    @classmethod
    def from_fields(cls, values: Dict[str, Any]) -> "AgentSettings":
        """The settings that ``values`` ({setting: its field's value}, `to_fields`' shapes) show;
        the URL, Server Python and arguments without surrounding blanks (the token as typed)."""
        text = {name: str(values[name]).strip() for name in ("serverUrl", "serverPython", "serverArguments")}
        return cls(MODES[int(values["mode"])], token=str(values["token"]), record=bool(values["record"]),
                   recordFolder=str(values.get("recordFolder") or ""), **text)

    @classmethod
    def load(cls, store: Any) -> "AgentSettings":
        """The settings in ``store``, defaults for what it lacks."""
        default = cls()
        values = {}
        for item in fields(cls):
            saved = store.value(f"{GROUP}/{KEYS[item.name]}", None)
            values[item.name] = getattr(default, item.name) if saved in (None, "") else str(saved).strip()
        values["mode"] = LOCAL if values["mode"] == LOCAL else SERVER
        values["record"] = values["record"] in ("on", True)
        return cls(**values)

    def save(self, store: Any) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            store.setValue(f"{GROUP}/{KEYS[item.name]}", ("on" if value else "off") if item.name == "record" else value)
