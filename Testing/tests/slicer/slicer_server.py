"""A real agent server for the Slicer tests: uvicorn in a thread on 127.0.0.1 (random free
port), with a switchable policy the tests script, and the logic connected to it."""

from __future__ import annotations

import threading
import time

import uvicorn
from slicer_agents import SwitchPolicy
from slicer_scene import free_port

from IBISAgentLib.logic import IBISAgentLogic
from ibisagent.client import AgentClient
from ibisagent.server.app import make_app
from ibisagent.server.settings import Settings
from ibisagent.engine import Engine

TOKEN = "test-token-e2e"


class Server:
    """A real uvicorn server in a thread; ``policy.inner`` and ``tool`` are set by each test."""

    def __init__(self, segmenter) -> None:
        self.policy = SwitchPolicy()
        self.tool = segmenter
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = Settings(token=TOKEN, host="127.0.0.1", port=self.port)
        app = make_app(settings, lambda: Engine(self.policy, self.tool))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> "Server":
        self.thread.start()
        deadline = time.time() + 30
        with AgentClient(self.url, TOKEN, timeout=5) as client:
            while time.time() < deadline:
                try:
                    if client.call("GET", "/health").get("ready"):
                        return self
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                time.sleep(0.05)
        raise RuntimeError("The test server did not become ready.")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def remote_logic(server) -> IBISAgentLogic:
    logic = IBISAgentLogic()
    logic.connect(server.url, TOKEN, timeout=30)
    return logic
