"""Every error the agent reports to its caller, and what the caller should do about it.

The tree (each class says when it is raised; ``kind`` is its short name in logs and the panel)::

    AgentError                        base: .message (what happened), .advice (what to do next)
    ├── TransportError                the request got no answer
    │   ├── ServerUnavailableError    nobody took the connection, or it was lost: the server is
    │   │                             not running, the URL is wrong, the server died ("unavailable")
    │   └── AgentTimeoutError         an answer did not come in time ("timeout")
    │       ├── ConnectTimeoutError   the connection was not accepted in time
    │       └── ReadTimeoutError      the server took the request but did not answer in time
    │                                 (a slow model, a hung server)
    ├── ResponseError                 the server answered with an error (.status, .code)
    │   ├── AuthenticationError       401/403: missing or wrong token ("authentication")
    │   ├── SessionExpiredError       410: the server forgot the session ("expired")
    │   ├── ServerBusyError           503: queue or session table full, models loading; wait
    │   │                             .retry_after seconds ("busy")
    │   ├── BadRequestError           other 4xx, or refused before sending; also a ValueError
    │   │                             ("bad-request")
    │   ├── IncompatibleServerError   another API version, or an endpoint the server lacks
    │   │                             ("incompatible")
    │   └── ServerError               5xx: the model or the server failed ("server")
    ├── InvalidOutputError            the model's answer could not be read (.proposal)
    │                                 ("invalid-output")
    ├── RecordWriteError              a step could not be written to its training record; the
    │                                 step was taken back ("record")
    └── Cancelled                     the user cancelled the wait; the call's answer is dropped
                                      ("cancelled")

A timeout is not a refused connection: a server that accepts the connection and then says
nothing is a `ReadTimeoutError` ("the agent took too long"), never "start the server".

Advice is chosen by type, here only: `describe` gives (kind, advice) for any exception, the
classes above by their own ``kind``/``advice``, and the few foreign ones an engine may raise
(the built-in ``TimeoutError``, ``ConnectionError``) by theirs; anything else is an engine
failure. ``str(error)`` is the message followed by the advice.

Standard library only; imports on Python 3.9 (the torch-free client and Slicer use it).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple


class AgentError(Exception):
    """Base of every error in the tree above. ``message``: what happened (one sentence);
    ``advice``: what to do next, a class attribute, so it follows from the type alone."""

    kind = "engine"
    advice = "The agent failed; see the log for details and try again."

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.message.rstrip()} {self.advice}" if self.advice else self.message


# -- no answer --------------------------------------------------------------------------------
class TransportError(AgentError):
    """The request got no answer from the server (see the subclasses)."""


class ServerUnavailableError(TransportError):
    """Raised when the connection is refused, the host cannot be reached, or the connection is
    lost mid-call. Usual causes: the server is not running, the URL is wrong, the server died."""

    kind = "unavailable"
    advice = "Start the agent server (`ibisagent serve`, or Start local server) or check its URL, and try again."


class AgentTimeoutError(TransportError):
    """An answer did not come within the timeout (see the subclasses)."""

    kind = "timeout"
    advice = "The agent took too long to answer; try again, or raise the timeout for a slow model."


class ConnectTimeoutError(AgentTimeoutError):
    """Raised when the server does not accept the connection within the connect timeout (an
    overloaded machine, or a firewall that drops the packets)."""


class ReadTimeoutError(AgentTimeoutError):
    """Raised when the server took the request but sent no answer within the read timeout: a
    slow model (a large checkpoint on a CPU), or a hung server."""


# -- an error answer --------------------------------------------------------------------------
class ResponseError(AgentError):
    """The server answered with an error status. ``status``: the HTTP status (None for a
    request refused before it was sent); ``code``: the server's error code
    (`ibisagent.protocol.ERRORS`)."""

    kind = "server"

    def __init__(self, message: str, status: Optional[int] = None, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class AuthenticationError(ResponseError):
    """401/403: the token is missing or wrong."""

    kind = "authentication"
    advice = "Check the token (the one `ibisagent serve` printed, or its token file) and try again."


class SessionExpiredError(ResponseError):
    """410: the server no longer has the session (idle too long, closed, or restarted)."""

    kind = "expired"
    advice = "The server forgot this session; start a new one (Continue my mask)."


class ServerBusyError(ResponseError):
    """503: the model queue or the session table is full, or the models are still loading.
    ``retry_after``: seconds to wait (the server's Retry-After)."""

    kind = "busy"
    advice = "The server is busy; wait a few seconds and try again."

    def __init__(self, message: str, retry_after: float = 2.0, status: Optional[int] = 503,
                 code: Optional[str] = None) -> None:
        super().__init__(message, status, code)
        self.retry_after = retry_after


class BadRequestError(ResponseError, ValueError):
    """The request was refused, by the server (4xx) or before it was sent (a malformed URL, a
    mask of the wrong shape); the message says which value is wrong."""

    kind = "bad-request"
    advice = "Check the inputs and try again."


class IncompatibleServerError(ResponseError):
    """The server speaks another major API version, or lacks an endpoint or a capability this
    client needs."""

    kind = "incompatible"
    advice = "Install the same ibisagent version on the server and here."


class ServerError(ResponseError):
    """5xx: the model or the server failed; the session is unchanged on the server."""

    kind = "server"
    advice = "The agent server failed; see its log, then try again."


# -- the agent's own ----------------------------------------------------------------------------
class InvalidOutputError(AgentError):
    """The model's answer does not follow the action grammar. ``proposal``: the
    `ibisagent.session.Proposal` that carries the raw text and the parse error."""

    kind = "invalid-output"
    advice = "Ask again, place a click yourself, or finish."

    def __init__(self, message: str, proposal: Any = None) -> None:
        super().__init__(message)
        self.proposal = proposal


class RecordWriteError(AgentError):
    """A step could not be written to its training record (disk full, folder removed...). The
    step was taken back, so the session and its record still agree."""

    kind = "record"
    advice = "Turn off Record for training (Training section) or choose another record folder."


class Cancelled(AgentError):
    """The user cancelled a wait. The call may still finish in the background; its answer is
    dropped. Not a failure to report, an outcome to acknowledge."""

    kind = "cancelled"
    advice = ""


#: Foreign exceptions an engine or a socket may raise, by type: (type, kind, advice).
_FOREIGN = (
    (TimeoutError, AgentTimeoutError.kind, AgentTimeoutError.advice),
    (ConnectionError, ServerUnavailableError.kind, ServerUnavailableError.advice),
)


def describe(error: BaseException) -> Tuple[str, str]:
    """(kind, advice) for any exception: an `AgentError` by its class, the built-in timeout and
    connection errors like their counterparts here, anything else as an engine failure."""
    if isinstance(error, AgentError):
        return error.kind, error.advice
    for error_type, kind, advice in _FOREIGN:
        if isinstance(error, error_type):
            return kind, advice
    return AgentError.kind, AgentError.advice


def message_of(error: BaseException) -> str:
    """What happened, without the advice (an `AgentError`'s message, else ``str(error)``)."""
    return error.message if isinstance(error, AgentError) else str(error)
