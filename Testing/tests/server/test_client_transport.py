"""How the client tells what went wrong on the wire, by type: a server that takes the request
and never answers is a timeout ("the agent took too long"), a refused connection is
"unavailable", and each error answer has its own type. The wire itself is exercised with real
sockets; the status-to-type table with an in-process transport (no server adds anything there)."""

from __future__ import annotations

import json
from typing import List

import numpy as np
import pytest
from ibisagent import errors, protocol
from ibisagent.client import AgentClient, BaseTransport, Request, Response
from server_fakes import TOKEN, SilentServer, free_port


def test_a_server_that_accepts_and_never_answers_is_a_timeout_not_unavailable():
    with SilentServer() as silent, AgentClient(silent.url, token=TOKEN, timeout=0.5) as client:
        with pytest.raises(errors.ReadTimeoutError) as raised:
            client.info()
        assert silent.accepted, "the connection was accepted"
        assert not isinstance(raised.value, errors.ServerUnavailableError)
        assert raised.value.kind == "timeout" and "did not answer within 0.5 s" in raised.value.message
        assert "took too long" in str(raised.value) and "Start the agent server" not in str(raised.value)
        assert client.ping() is False  # ping never raises


def test_the_slicer_logic_reports_a_hung_server_as_a_timeout():
    from IBISAgentLib import AgentStepError
    from IBISAgentLib.logic import IBISAgentLogic

    with SilentServer() as silent:
        logic = IBISAgentLogic(log=lambda message: None)
        logic.connect(silent.url, TOKEN, timeout=0.5)
        with pytest.raises(AgentStepError) as raised:
            logic.serverInfo()
    assert raised.value.kind == "timeout"
    assert "took too long" in str(raised.value) and "Start the agent server" not in str(raised.value)


def test_a_refused_connection_is_unavailable():
    with AgentClient(f"http://127.0.0.1:{free_port()}", token=TOKEN, timeout=2) as client:
        with pytest.raises(errors.ServerUnavailableError) as raised:
            client.info()
    assert raised.value.kind == "unavailable" and "Start the agent server" in str(raised.value)


@pytest.mark.parametrize("url", ["", "127.0.0.1:8765", "ftp://host", "http://", "http://host:notaport"])
def test_a_malformed_url_is_refused_before_anything_is_sent(url):
    with pytest.raises(errors.BadRequestError, match="must look like http://127.0.0.1:8765"):
        AgentClient(url)


class ScriptedTransport(BaseTransport):
    """An in-process transport: answers each request with the next scripted response (or raises
    it) and keeps the requests."""

    def __init__(self, answers: List[object]) -> None:
        self.answers = list(answers)
        self.requests: List[Request] = []

    def handle_request(self, request: Request) -> Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def error_answer(status: int, code: str, message: str = "why", headers=None) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Response(status, dict(headers or {}), body)


@pytest.mark.parametrize("answer, expected, kind", [
    (error_answer(401, protocol.UNAUTHORIZED), errors.AuthenticationError, "authentication"),
    (error_answer(410, protocol.SESSION_EXPIRED), errors.SessionExpiredError, "expired"),
    (error_answer(503, protocol.SERVER_BUSY, headers={"retry-after": "7"}), errors.ServerBusyError, "busy"),
    (error_answer(400, protocol.BAD_REQUEST, "x is outside"), errors.BadRequestError, "bad-request"),
    (error_answer(404, protocol.NOT_FOUND), errors.IncompatibleServerError, "incompatible"),
    (error_answer(426, protocol.INCOMPATIBLE_CLIENT), errors.IncompatibleServerError, "incompatible"),
    (error_answer(500, protocol.INTERNAL, "CUDA out of memory"), errors.ServerError, "server"),
    (Response(200, {}, b"<html>not json</html>"), errors.ServerError, "server"),
])
def test_each_error_answer_has_its_own_type(answer, expected, kind):
    transport = ScriptedTransport([answer])
    client = AgentClient("http://agent.invalid:1", token="secret", transport=transport)
    with pytest.raises(expected) as raised:
        client.call("GET", protocol.INFO)
    assert type(raised.value) is expected and raised.value.kind == kind
    assert raised.value.advice and str(raised.value).endswith(raised.value.advice)
    if expected is errors.ServerBusyError:
        assert raised.value.retry_after == 7.0
    sent = transport.requests[0]
    assert sent.headers[protocol.AUTHORIZATION] == "Bearer secret"
    assert sent.headers[protocol.CLIENT_API_VERSION] == protocol.API_VERSION


def test_the_transport_carries_the_timeouts_and_a_session_over_it():
    info = {"api_version": protocol.API_VERSION, "capabilities": {}}
    transport = ScriptedTransport([Response(200, {}, json.dumps(info).encode()),
                                   errors.ReadTimeoutError("the test server said nothing")])
    client = AgentClient("http://agent.invalid:1", token="secret", timeout=4, upload_timeout=40, transport=transport)
    assert client.info()["api_version"] == protocol.API_VERSION
    with pytest.raises(errors.ReadTimeoutError):
        client.open_session(np.zeros((8, 8, 3), np.uint8), "request")
    assert [r.timeout for r in transport.requests] == [4, 40]  # the upload waits longer
    assert [r.path for r in transport.requests] == [protocol.INFO, protocol.SESSIONS]
