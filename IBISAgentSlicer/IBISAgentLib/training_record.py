"""Recording the logic's episodes for training ("Record for training" in the panel).

A `TrainingRecord` is on while the user wants recording, for one local folder. It puts an
``ibisagent.training.recorder.SessionRecording`` on the agent session of each worked slice, a
listener that writes every step the session applies (accepted or edited proposals, the user's own
clicks), writes nothing for a skipped proposal and removes a step that is undone. The record keeps exactly what
the model was shown: the slice image the session was opened with (the array the in-process policy
or the server's policy gets) and the mask before each step. `end_recording` finishes the record
against the mask the user kept when the episode ends, or deletes it when the episode is abandoned.

Nothing is sent anywhere; the records stay in the folder the user chose. No Qt, no MRML.
"""

from __future__ import annotations

from typing import Callable, Optional

from ibisagent.training import records
from ibisagent.training.recorder import SessionRecording, TrainingRecorder

#: Where the logic's episodes come from: the panel, or the logic driven from the Python console.
SOURCES = ("panel", "console")


class TrainingRecord:
    """Records into ``folder`` (created if needed); ``source`` ("panel" or "console") is kept in
    each record. Raises ValueError with one sentence for a folder that cannot be used."""

    def __init__(self, folder: str, source: str = "console") -> None:
        if source not in SOURCES:
            raise ValueError(f"Unknown record source {source!r}; choose one of: {', '.join(SOURCES)}.")
        try:
            self._recorder = TrainingRecorder(folder)
        except OSError as error:
            raise ValueError(f"The record folder {folder} cannot be used ({error}); choose another folder.") from None
        self.source = source
        self._steps_before = records.count_steps(self._recorder.folder)

    @property
    def folder(self) -> str:
        """The absolute path of the record folder."""
        return self._recorder.folder

    @property
    def recorded_steps(self) -> int:
        """Steps recorded since recording was turned on, less those undone."""
        return self._recorder.recorded_steps

    @property
    def folder_steps(self) -> int:
        """Steps in the whole folder: those found when recording was turned on, plus ours."""
        return self._steps_before + self.recorded_steps

    def start_recording(self, worked, client=None) -> None:
        """Record ``worked``'s agent session from its current mask on. ``client``: the agent
        server's client (it names the server's policy and tool), or None in Local mode."""
        info = client.info() if client is not None else {}
        self._recorder.record(worked.session, source=self.source, policy=info.get("policy"),
                              segmenter=info.get("segmenter"))


def end_recording(worked, keep: bool = True, log: Callable[[str], None] = lambda message: None) -> Optional[str]:
    """Stop recording ``worked`` (if it is recorded): finish its record against the current mask
    (``keep``), or delete it. Returns the record folder kept, else None. Never raises: a record
    that cannot be written must not stop an episode from ending; ``log`` says what went wrong."""
    listener = SessionRecording.of(worked.session)
    if listener is None:
        return None
    listener.stop()
    recording = listener.recording
    try:
        if not keep:
            recording.discard()
            return None
        folder = listener.finish()
    except Exception as error:  # noqa: BLE001 - see the docstring
        log(f"The training record {recording.folder} could not be finished: {error}")
        return None
    log(f"Recorded {len(recording.steps)} step(s) for training in {folder}.")
    return folder
