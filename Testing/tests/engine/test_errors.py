"""The error tree: advice follows from the type alone, a timeout is not an unavailable server,
Cancel is its own kind, and errors that are not ours are described by their type too."""

from __future__ import annotations

import pytest
from ibisagent import errors


def test_timeouts_and_unavailable_servers_have_their_own_advice():
    unavailable = errors.ServerUnavailableError("connection refused")
    for timeout in (errors.ReadTimeoutError("no answer"), errors.ConnectTimeoutError("no accept")):
        assert isinstance(timeout, errors.AgentTimeoutError) and isinstance(timeout, errors.TransportError)
        assert not isinstance(timeout, errors.ServerUnavailableError)
        assert errors.describe(timeout) == ("timeout", errors.AgentTimeoutError.advice)
    assert errors.describe(unavailable) == ("unavailable", errors.ServerUnavailableError.advice)
    assert "took too long" in errors.AgentTimeoutError.advice
    assert "Start the agent server" in errors.ServerUnavailableError.advice


@pytest.mark.parametrize("error, kind", [
    (errors.AuthenticationError("no"), "authentication"),
    (errors.SessionExpiredError("gone"), "expired"),
    (errors.ServerBusyError("full"), "busy"),
    (errors.BadRequestError("bad x"), "bad-request"),
    (errors.IncompatibleServerError("2.0"), "incompatible"),
    (errors.ServerError("crash"), "server"),
    (errors.InvalidOutputError("no grammar"), "invalid-output"),
    (errors.RecordWriteError("disk full"), "record"),
    (errors.Cancelled("by the user"), "cancelled"),
    (TimeoutError(), "timeout"),
    (ConnectionRefusedError(), "unavailable"),
    (RuntimeError("the tool crashed"), "engine"),
])
def test_every_error_is_described_by_its_type(error, kind):
    assert errors.describe(error)[0] == kind


def test_a_foreign_class_with_one_of_our_names_is_an_engine_failure():
    class ServerBusyError(RuntimeError):  # the name of one of ours, another type
        pass

    assert errors.describe(ServerBusyError("full")) == ("engine", errors.AgentError.advice)


def test_the_message_says_what_happened_and_str_adds_the_advice():
    error = errors.ServerBusyError("8 jobs are waiting.", retry_after=3)
    assert error.message == "8 jobs are waiting." and error.retry_after == 3 and error.status == 503
    assert str(error) == "8 jobs are waiting. The server is busy; wait a few seconds and try again."
    assert errors.message_of(error) == "8 jobs are waiting." and errors.message_of(KeyError("k")) == "'k'"
    assert isinstance(errors.BadRequestError("bad"), ValueError)  # callers that check values catch it
    assert str(errors.Cancelled("stopped")) == "stopped"  # nothing to advise
