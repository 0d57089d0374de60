"""Opening agent sessions, and the one error type the logic raises for agent failures.

Both kinds of session implement ``ibisagent.session.Session`` (mask, clicks, steps, undo,
propose/apply/skip/replace_mask/undo/close), so the logic drives them the same way:

- `open_local_episode`: an ``ibisagent.episode.Episode`` in this process (no server; the
  weight-free "heuristic" policy and the classical "graphcut" tool by default);
- `open_remote_session`: an ``ibisagent.client.RemoteSession`` on an agent server.

`AgentStepError` wraps anything that goes wrong while talking to the agent. Its ``kind`` names
the cause (from the client's typed errors), and its message ends with what to do about it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

#: kind -> what the user should do next.
ADVICE = {
    "unavailable": "Start the agent server (or check its URL) and try again.",
    "authentication": "Check the server token in the module settings and try again.",
    "expired": "The server forgot this session; press 'Continue my mask' to start a new one.",
    "busy": "The server is busy; wait a few seconds and try again.",
    "bad-request": "The server refused the request; check the inputs and try again.",
    "incompatible": "The server's version does not match this module; update one of them.",
    "timeout": "The agent took too long to answer; try again, or raise the timeout.",
    "invalid-output": "The model's answer could not be read; ask again, place a click yourself, or finish.",
    "record": "Turn off Record for training (Training section) or choose another record folder.",
    "engine": "The agent failed; see the log for details and try again.",
}


class AgentStepError(RuntimeError):
    """The agent could not complete a step; the segment is exactly as it was before the call.

    ``kind`` is one of `ADVICE`'s keys; ``cause`` the original exception (or None);
    ``proposal`` the `ibisagent.session.Proposal` for ``invalid-output``.
    """

    def __init__(self, what: str, kind: str, cause: Optional[BaseException] = None, proposal=None):
        detail = f": {cause}" if cause is not None and str(cause) else ""
        super().__init__(f"{what}{detail}. The segment was not changed. {ADVICE.get(kind, ADVICE['engine'])}")
        self.kind = kind
        self.cause = cause
        self.proposal = proposal


def classify(error: BaseException) -> str:
    """The `ADVICE` kind for an exception raised by a session or the client."""
    from ibisagent import client
    from ibisagent.training.recorder import RecordWriteError

    typed = (
        (RecordWriteError, "record"),
        (client.ServerUnavailableError, "unavailable"),
        (client.AuthenticationError, "authentication"),
        (client.SessionExpiredError, "expired"),
        (client.ServerBusyError, "busy"),
        (client.BadRequestError, "bad-request"),
        (client.IncompatibleServerError, "incompatible"),
    )
    for error_type, kind in typed:
        if isinstance(error, error_type):
            return kind
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, (ConnectionError, OSError)):
        return "unavailable"
    return "engine"


def open_local_episode(engine, image_rgb: np.ndarray, request: str = "", mask: Optional[np.ndarray] = None,
                       max_steps: int = 20):
    """An in-process ``Episode`` on ``image_rgb`` with the built ``engine`` (an
    ``ibisagent.engine.Engine``; one engine serves episode after episode: each sets its image)."""
    from ibisagent.episode import Episode

    return Episode(image_rgb, engine.segmenter, engine.policy, request=request, initial_mask=mask, max_steps=max_steps)


def open_remote_session(url: str, token: Optional[str], timeout: float, image_rgb, request, mask, max_steps):
    """A session on an agent server; returns (client, session)."""
    from ibisagent.client import AgentClient

    client = AgentClient(url, token, timeout)
    try:
        session = client.open_session(image_rgb, request=request, mask=mask, max_steps=max_steps)
    except BaseException:
        close_quietly(client)
        raise
    return client, session


def close_quietly(*things) -> None:
    """Call ``close()`` on each thing and ignore any error (used on paths that end or already
    fail)."""
    for thing in things:
        try:
            if thing is not None:
                thing.close()
        except Exception:  # noqa: BLE001 - closing must never hide the original problem
            pass
