"""Shared fixtures: one real server with instant fakes per test module, and a client for it."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from ibisagent.client import AgentClient
from server_fakes import TOKEN, start_fake_server


@pytest.fixture(scope="module")
def server():
    with start_fake_server() as running:
        yield running


@pytest.fixture
def client(server):
    with AgentClient(server.url, token=TOKEN, timeout=10) as agent:
        yield agent
