"""Which agent the logic uses, opening sessions on it, and the one error type for its failures.

`AgentLogic` (a part of `IBISAgentLogic`) holds the agent: an agent server (`connect`), or the
in-process engine (`useLocalEngine`: one ``ibisagent.engine.Engine``, built on first use and
kept), or, from the panel, whichever its `settings.AgentSettings` describe (`configure`). It
opens sessions on it (both implement ``ibisagent.session.Session``: an ``Episode`` in this
process, a ``RemoteSession`` on a server), answers `pingServer` and `serverInfo`, lists the
Python packages the chosen agent still needs here and installs them after one confirmation
(`ensurePackages`: the panel passes its OK/Cancel dialog).

`AgentStepError` wraps anything that goes wrong while the agent works on a step. Its ``kind``
and ``advice`` are its cause's, chosen by type in ``ibisagent.errors.describe``; its message says
what failed and that the segment was not changed, and ends with the advice.
"""

from __future__ import annotations

from typing import Callable, List, Optional

from ibisagent.client import AgentClient, check_url
from ibisagent.engine import DEFAULT_POLICY, DEFAULT_SEGMENTER, build_engine
from ibisagent.errors import AgentError, BadRequestError, Cancelled, describe, message_of

from . import requirements
from .settings import AgentSettings


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


class AgentLogic:
    """The agent part of `IBISAgentLogic` (a mixin; `IBISAgentLogic.__init__` sets the state).

    ``local``: the in-process engine is the agent, else the server at ``serverUrl``.
    ``agentProblem``: why no agent can be used now ("" when one can): the panel's server mode
    without a usable URL; it never falls back to the in-process engine. ``settings``: what the
    panel last configured (`configure`)."""

    serverUrl: Optional[str]
    token: Optional[str]
    timeout: float
    local: bool
    agentProblem: str
    engine: object  # an ibisagent.engine.Engine, or None until built
    _engineRecipe: tuple
    settings: AgentSettings
    callAgent: Callable[[Callable], object]
    log: Callable[[str], None]

    # -- which agent ------------------------------------------------------------------------------
    def connect(self, url: str, token: Optional[str] = None, timeout: float = 60.0) -> None:
        """Use the agent server at ``url`` for the next episodes; an empty or malformed URL is
        refused (it never falls back to the in-process engine: that is `useLocalEngine`)."""
        url = (url or "").strip()
        try:
            check_url(url)
        except BadRequestError as error:
            raise ValueError(f"{error.message} Enter it in the Server section, or choose Local (no server).") from None
        self.serverUrl, self.token, self.timeout = url, token or None, float(timeout)
        self.local, self.agentProblem = False, ""

    def useLocalEngine(self, policy=DEFAULT_POLICY, segmenter=DEFAULT_SEGMENTER, policyOptions=None,
                       segmenterOptions=None) -> None:
        """Run the agent in this process (no server). ``policy``/``segmenter``: registry names
        (default: the CPU engine, weight-free heuristic policy and classical graphcut tool) or
        ready objects (e.g. a scripted policy for tests). The engine is built once, on first use
        (`localEngine`), and serves every later episode, propagation and connection test; asking
        for the same engine again keeps it."""
        self.local, self.agentProblem = True, ""
        recipe = (policy, segmenter, dict(policyOptions or {}), dict(segmenterOptions or {}))
        if recipe != self._engineRecipe:
            self.engine, self._engineRecipe = None, recipe

    def configure(self, settings: AgentSettings) -> None:
        """Use the agent the panel's settings describe (`settings.AgentSettings`: Local mode,
        or the server URL and token) and record for training as they say. A server URL that
        cannot be used leaves no agent (`agentProblem` says why; `actions` shows it) rather
        than the in-process one. Raises ValueError for a record folder that cannot be used."""
        self.settings = settings
        if settings.local:
            self.useLocalEngine()
        else:
            try:
                self.connect(settings.serverUrl, settings.token or None, self.timeout)
            except ValueError as error:
                self.local, self.serverUrl, self.agentProblem = False, None, str(error)
        self.setTrainingRecord(settings.recordFolder if settings.record else None, source="panel")

    def applySettings(self, settings: AgentSettings) -> str:
        """`configure`, except that a record folder that cannot be used turns recording off (in
        ``settings`` too) instead of raising: returns why, or "" when everything applies."""
        try:
            self.configure(settings)
            return ""
        except ValueError as error:
            settings.record = False
            self.configure(settings)
            return str(error)

    def localEngine(self):
        """The in-process ``ibisagent.engine.Engine``, built the first time it is needed."""
        if self.engine is None:
            self.engine = build_engine(*(self._engineRecipe or (DEFAULT_POLICY, DEFAULT_SEGMENTER)))
        return self.engine

    def localEnginePackages(self) -> List[str]:
        """The packages the in-process engine still needs in this Python ([] for a server: it
        brings its own)."""
        return requirements.missing(requirements.engine_requirements()) if self.local else []

    def ensurePackages(self, packages: List[str], who: str, confirm: Callable[[str], bool]) -> None:
        """Install ``packages`` (what `localEnginePackages` or `localServerPackages` found
        missing) after one confirmation: ``confirm(question)`` gets the full list and says
        whether to go on. ``who``: what needs them ("The in-process agent"). Nothing missing
        asks nothing; a refusal raises RuntimeError saying what else to do."""
        if not packages:
            return
        if not confirm(f"{who} needs these Python packages in Slicer's Python:\n\n" + "\n".join(packages)
                       + "\n\nInstall them now? (This takes a few minutes.)"):
            raise RuntimeError(f"Packages not installed: {', '.join(packages)}. Install them, or use an agent "
                               "server in its own environment ('Server Python').")
        self.installPackages(packages)

    def installPackages(self, packages: List[str]) -> None:
        """Install ``packages`` into Slicer's Python (`requirements.install`; main thread), with
        no question (`ensurePackages` asks first)."""
        self.log("Installing " + ", ".join(packages) + " (this takes a few minutes)...")
        requirements.install(packages)
        self.log("Installed " + ", ".join(packages) + ".")

    # -- asking it ---------------------------------------------------------------------------------
    def pingServer(self, timeout: float = 3.0) -> bool:
        """True when the agent answers: the server's /health, or always for the in-process
        engine. Never raises. Runs in the calling thread, not through ``callAgent``, and touches
        no MRML, so the widget may run it on its worker thread."""
        if self.local:
            return True
        try:
            wait = min(self.timeout, float(timeout))
            with AgentClient(self.serverUrl, self.token, timeout=wait, connect_timeout=wait) as client:
                return bool(client.ping())
        except Exception:  # noqa: BLE001 - a ping answers yes or no, whatever went wrong
            return False

    def serverInfo(self) -> dict:
        """What the agent runs: the server's /info (``version``, ``api_version``, ``policy``,
        ``segmenter``, ``device``, ``capabilities``...), or for the in-process engine the policy
        and tool names of its one engine (``local``: True). Goes through ``callAgent``; raises
        AgentStepError (``unavailable``, ``timeout``, ``authentication``, ``incompatible``,
        ``engine`` for a local engine that cannot load)."""
        self._checkAgent()
        if not self.local:
            return self._agent("Asking the agent server what it runs", self._remoteInfo)
        return self._agent("Loading the in-process agent", self._localInfo)

    def _remoteInfo(self) -> dict:
        with AgentClient(self.serverUrl, self.token, self.timeout) as client:
            return dict(client.info(refresh=True))

    def _localInfo(self) -> dict:
        from ibisagent import __version__, protocol

        engine = self.localEngine()
        return {"local": True, "version": __version__, "api_version": protocol.API_VERSION,
                "policy": engine.policy.name, "segmenter": engine.segmenter.name, "device": engine.device}

    def _checkAgent(self) -> None:
        if self.agentProblem:
            raise ValueError(self.agentProblem)

    def _openSession(self, image, request, mask, maxSteps):
        """(client or None, session) on the agent: an in-process ``Episode`` on the one engine,
        or a ``RemoteSession``. Runs on the agent's thread."""
        if self.local:
            from ibisagent.episode import Episode

            engine = self.localEngine()
            return None, Episode(image, engine.segmenter, engine.policy, request=request, initial_mask=mask,
                                 max_steps=maxSteps)
        client = AgentClient(self.serverUrl, self.token, self.timeout)
        try:
            return client, client.open_session(image, request=request, mask=mask, max_steps=maxSteps)
        except BaseException:
            close_quietly(client)
            raise

    def _agent(self, what: str, function):
        """Run one agent call through ``callAgent``; turn any failure into AgentStepError. A
        cancelled wait (``ibisagent.errors.Cancelled``) passes through as it is."""
        try:
            return self.callAgent(function)
        except (AgentStepError, Cancelled):
            raise
        except Exception as error:  # noqa: BLE001 - every agent failure becomes one typed error
            failure = AgentStepError(what, error)
            self.log(f"{what} failed ({failure.kind}): {error}")
            raise failure from error


def close_quietly(*things) -> None:
    """Call ``close()`` on each thing and ignore any error (used on paths that end or already
    fail)."""
    for thing in things:
        try:
            if thing is not None:
                thing.close()
        except Exception:  # noqa: BLE001 - closing must never hide the original problem
            pass
