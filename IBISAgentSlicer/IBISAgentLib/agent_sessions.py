"""Opening agent sessions, and the one error type the logic raises for agent failures.

Both kinds of session implement ``ibisagent.session.Session`` (mask, clicks, steps, undo,
propose/apply/skip/replace_mask/undo/close), so the logic drives them the same way:

- `open_local_episode`: an ``ibisagent.episode.Episode`` in this process, on the logic's one
  built engine;
- `open_remote_session`: an ``ibisagent.client.RemoteSession`` on an agent server.

`AgentStepError` wraps anything that goes wrong while the agent works on a step. Its ``kind``
and ``advice`` are its cause's, chosen by type in ``ibisagent.errors.describe``; its message says
what failed and that the segment was not changed, and ends with the advice.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ibisagent.errors import AgentError, describe, message_of


class AgentStepError(AgentError):
    """The agent could not complete a step; the segment is exactly as it was before the call.

    ``cause``: the original exception; ``kind`` and ``advice``: the cause's
    (``ibisagent.errors.describe``), e.g. "unavailable", "timeout", "invalid-output", "record".
    """

    def __init__(self, what: str, cause: BaseException) -> None:
        detail = message_of(cause).strip().rstrip(".")
        super().__init__(f"{what}{': ' + detail if detail else ''}. The segment was not changed.")
        self.kind, self.advice = describe(cause)
        self.cause = cause


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
