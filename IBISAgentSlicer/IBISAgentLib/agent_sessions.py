"""Agent sessions the logic talks to, and the one error type it raises for agent failures.

The logic needs an object with the interface of ``ibisagent.client.RemoteSession``:

- ``mask``: bool (rows, cols), the session's current mask (a copy);
- ``propose() -> dict`` with ``reasoning``, ``action``, ``answer``, ``error``, ``click`` (``{x, y,
  positive, origin}`` in pixels of the slice image, or None) and ``stop_reason``;
- ``apply(clicks) -> dict`` (the step), ``skip()``, ``undo() -> bool``, ``replace_mask(mask)``,
  ``close()``.

`LocalSession` provides that interface over an in-process `ibisagent.episode.Episode`, so the
console works with no server (weight-free "heuristic" policy and classical "sitk" tool by
default). A remote session comes from ``ibisagent.client.AgentClient``.

`AgentStepError` wraps anything that goes wrong while talking to the agent. Its ``kind`` names
the cause, and its message ends with what to do about it.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ibisagent.clicks import Click

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
    "engine": "The agent failed; see the log for details and try again.",
}

_CLIENT_KINDS = {
    "ServerUnavailableError": "unavailable",
    "AuthenticationError": "authentication",
    "SessionExpiredError": "expired",
    "ServerBusyError": "busy",
    "BadRequestError": "bad-request",
    "IncompatibleServerError": "incompatible",
}


class AgentStepError(RuntimeError):
    """The agent could not complete a step; the segment is exactly as it was before the call.

    ``kind`` is one of `ADVICE`'s keys; ``cause`` the original exception (or None);
    ``proposal`` the proposal dict for ``invalid-output``.
    """

    def __init__(self, what: str, kind: str, cause: Optional[BaseException] = None, proposal: Optional[dict] = None):
        detail = f": {cause}" if cause is not None and str(cause) else ""
        super().__init__(f"{what}{detail}. The segment was not changed. {ADVICE.get(kind, ADVICE['engine'])}")
        self.kind = kind
        self.cause = cause
        self.proposal = proposal


def classify(error: BaseException) -> str:
    """The `ADVICE` kind for an exception raised by a session or client."""
    for cls in type(error).__mro__:
        if cls.__name__ in _CLIENT_KINDS:
            return _CLIENT_KINDS[cls.__name__]
    if isinstance(error, TimeoutError) or "timed out" in str(error).lower():
        return "timeout"
    if isinstance(error, (ConnectionError, OSError)):
        return "unavailable"
    return "engine"


class LocalSession:
    """The remote-session interface over an in-process Episode (no server, no network).

    ``policy``/``segmenter``: registry names or ready objects. Reusing the same segmenter object
    across sessions is fine: each session sets its own image.
    """

    def __init__(
        self,
        image_rgb: np.ndarray,
        request: str = "",
        mask: Optional[np.ndarray] = None,
        max_steps: int = 20,
        policy="heuristic",
        segmenter="sitk",
        policy_options: Optional[dict] = None,
        segmenter_options: Optional[dict] = None,
    ) -> None:
        from ibisagent.episode import Episode
        from ibisagent.policies import build_policy
        from ibisagent.segmenters import build_segmenter

        if isinstance(policy, str):
            policy = build_policy(policy, **(policy_options or {}))
        if isinstance(segmenter, str):
            segmenter = build_segmenter(segmenter, **(segmenter_options or {}))
        self.episode = Episode(image_rgb, segmenter, policy, request=request, initial_mask=mask, max_steps=max_steps)

    @property
    def mask(self) -> np.ndarray:
        return self.episode.mask.copy()

    @property
    def clicks(self):
        return list(self.episode.clicks)

    @property
    def steps(self):
        return [step.to_dict() for step in self.episode.steps]

    def propose(self) -> dict:
        proposal = self.episode.propose().to_dict()
        proposal["stop_reason"] = self.episode.stop_reason
        return proposal

    def apply(self, clicks: Sequence[Click]) -> dict:
        return self.episode.apply(list(clicks)).to_dict()

    def skip(self) -> None:
        self.episode.skip()

    def undo(self) -> bool:
        return self.episode.undo()

    def replace_mask(self, mask: np.ndarray) -> None:
        self.episode.replace_mask(mask)

    def close(self) -> None:
        """Nothing to release; safe to call twice."""


def open_remote_session(url: str, token: str, timeout: float, image_rgb, request, mask, max_steps):
    """A session on an agent server (``ibisagent.client``); returns (client, session)."""
    from ibisagent.client import AgentClient

    client = AgentClient(url, token, timeout)
    try:
        session = client.open_session(image_rgb, request=request, mask=mask, max_steps=max_steps)
    except BaseException:
        close_quietly(client)
        raise
    return client, session


def close_quietly(thing) -> None:
    """Call ``thing.close()`` and ignore any error (used on paths that are already failing)."""
    try:
        if thing is not None:
            thing.close()
    except Exception:  # noqa: BLE001 - closing must never hide the original problem
        pass
