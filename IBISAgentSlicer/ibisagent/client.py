"""Client of the IBISAgent agent server: standard library + numpy only, imports on Python 3.9
(Slicer's Python), never imports torch or the server.

    with AgentClient("http://127.0.0.1:8765") as client:
        session = client.open_session(rgb_slice, "Segment the liver.", mask=user_mask)
        proposal = session.propose()                  # an ibisagent.session.Proposal
        step = session.apply([proposal.click])        # a Step; session.mask follows

What it promises:

- The image travels once per session. Per step only clicks go up and only the changed box of
  the mask comes back (`ibisagent.mask_codec`); `RemoteSession.mask` is kept bit-exact (CRC
  checked) and is re-read whole if it ever falls out of step.
- Errors are typed (`ibisagent.errors`: the tree, and the advice each type carries): no answer
  is a `ServerUnavailableError` (refused, unreachable, lost) or a timeout (`ReadTimeoutError`:
  the server took the request and said nothing in time; `ConnectTimeoutError`); an error
  answer is an `AuthenticationError`, `SessionExpiredError`, `ServerBusyError`,
  `BadRequestError`, `IncompatibleServerError` or `ServerError`.
- One interface: `RemoteSession` implements `ibisagent.session.Session` like the in-process
  `Episode` (same records, same run loop, same listeners). The server is the one authority for
  the session's state, undo included; the client shows the server's answers and keeps no undo.
- Nothing is lost: a failed call leaves the mask as it was. When the server forgot the session
  (idle expiry, restart) it is opened again from the image, the current mask and the request,
  and the call is repeated once, so the user's mask survives bit for bit; undo then reaches back
  to that moment (see `RemoteSession`).
- Timeouts: connect (5 s), read (``timeout``), and a longer read for the upload
  (``upload_timeout``). Requests travel through a `BaseTransport` (`HTTPTransport` by default:
  a keep-alive connection found closed is reopened and the request sent again; read-only calls
  are also retried once after other connection failures); tests may pass an in-process one.

Threading: one client may be shared by threads (calls are serialised on its connection), but
the Slicer module should make all calls from one worker thread, never the GUI thread.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import numpy as np

from . import __version__, protocol
from .clicks import Click
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConnectTimeoutError,
    IncompatibleServerError,
    ReadTimeoutError,
    ResponseError,
    ServerBusyError,
    ServerError,
    ServerUnavailableError,
    SessionExpiredError,
    TransportError,
)
from .image_codec import ImageCodecError, encode_image
from .mask_codec import MaskCodecError, decode_mask, encode_mask
from .session import APPLIED, MASK_REPLACED, PROPOSED, REBUILT, SKIPPED, UNDONE, Proposal, SessionEvents, Step

log = logging.getLogger("ibisagent.client")

DEFAULT_URL = f"http://{protocol.DEFAULT_HOST}:{protocol.DEFAULT_PORT}"


# -- transport --------------------------------------------------------------------------------
@dataclass
class Request:
    """One HTTP request as the client makes it. ``path`` starts with "/" (below the URL's own
    path); ``timeout``: seconds to wait for the answer; ``idempotent``: safe to send twice."""

    method: str
    path: str
    body: Optional[bytes]
    headers: Dict[str, str]
    timeout: float
    idempotent: bool = False


@dataclass
class Response:
    """The server's answer: status, headers (lower-case names) and body."""

    status: int
    headers: Dict[str, str]
    body: bytes


class BaseTransport:
    """How `AgentClient` reaches a server (the interface of httpx's ``BaseTransport``).

    `handle_request` returns the server's `Response` whatever its status, or raises a
    `ibisagent.errors.TransportError` when no answer came (`ServerUnavailableError`, a
    `ReadTimeoutError` or `ConnectTimeoutError`). `HTTPTransport` is the real one; a test may
    pass an in-process fake. ``bytes_sent`` / ``bytes_received`` count the traffic."""

    bytes_sent = 0
    bytes_received = 0

    def handle_request(self, request: Request) -> Response:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; safe to call twice."""


_CONNECTION_LOST = (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine, BrokenPipeError)


def check_url(url: str) -> Tuple[bool, str, int, str]:
    """(https, host, port, path prefix) of an agent server URL; BadRequestError for anything
    that is not an http(s) URL with a host (the one place a server URL is checked)."""
    parts = urlsplit((url or "").strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise BadRequestError(f"The server URL must look like http://127.0.0.1:8765; got {url!r}.")
    https = parts.scheme == "https"
    return https, parts.hostname, port or (443 if https else 80), parts.path.rstrip("/")


class HTTPTransport(BaseTransport):
    """One keep-alive HTTP connection with separate connect and read timeouts (stdlib
    ``http.client``). A keep-alive connection found closed is reopened and the request sent
    again; an idempotent request is also sent again once after another connection failure. A
    timeout is never retried: it is reported as one."""

    def __init__(self, url: str, connect_timeout: float = 5.0) -> None:
        self.url = url
        self._https, self._host, self._port, self._prefix = check_url(url)
        self._connect_timeout = connect_timeout
        self._conn: Optional[http.client.HTTPConnection] = None
        self._lock = threading.Lock()
        #: HTTP/1.1 bytes of requests and responses, start lines and headers included.
        self.bytes_sent = 0
        self.bytes_received = 0

    def handle_request(self, request: Request) -> Response:
        path = self._prefix + request.path
        with self._lock:
            for attempt in (1, 2):
                reused = self._conn is not None
                conn = self._conn or self._open()
                try:
                    conn.sock.settimeout(request.timeout)
                    conn.request(request.method, path, request.body, request.headers)
                    answer = conn.getresponse()
                    data = answer.read()
                except socket.timeout:
                    self._drop()
                    raise ReadTimeoutError(
                        f"The agent server at {self.url} took the request but did not answer within "
                        f"{request.timeout:g} s."
                    ) from None
                except (OSError, http.client.HTTPException) as error:
                    self._drop()
                    # A reused keep-alive connection the server had closed: the request never
                    # reached it, so sending again is safe for every method.
                    if attempt == 1 and (request.idempotent or (reused and isinstance(error, _CONNECTION_LOST))):
                        continue
                    raise ServerUnavailableError(
                        f"Lost the connection to the agent server at {self.url} ({error})."
                    ) from None
                if answer.will_close:
                    self._drop()
                pairs = answer.getheaders()
                self.bytes_sent += _message_size(f"{request.method} {path} HTTP/1.1", request.headers.items(),
                                                 request.body)
                self.bytes_received += _message_size(f"HTTP/1.1 {answer.status} {answer.reason}", pairs, data)
                return Response(answer.status, {k.lower(): v for k, v in pairs}, data)
        raise AssertionError("unreachable")

    def _open(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = kind(self._host, self._port, timeout=self._connect_timeout)
        try:
            conn.connect()
        except socket.timeout:
            conn.close()
            raise ConnectTimeoutError(
                f"The agent server at {self.url} did not accept the connection within {self._connect_timeout:g} s."
            ) from None
        except OSError as error:
            conn.close()
            raise ServerUnavailableError(f"Cannot reach the agent server at {self.url} ({error}).") from None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = conn
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()


def _message_size(start_line: str, headers, body: Optional[bytes]) -> int:
    """Size of an HTTP/1.1 message: start line, headers (plus the Host, Content-Length and
    Accept-Encoding lines http.client adds, about 60 bytes), blank line, body."""
    size = len(start_line) + 2 + sum(len(k) + len(v) + 4 for k, v in headers) + 2
    return size + (len(body) if body else 0) + 60


def _error_from(response: Response, path: str) -> ResponseError:
    """The typed error for an answer with an error status."""
    status, data = response.status, response.body
    code, message = None, ""
    try:
        detail = json.loads(data.decode("utf-8"))["error"]
        code, message = detail.get("code"), str(detail.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        message = data[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
    if status in (401, 403):
        return AuthenticationError(
            f"The agent server refused the token ({message.rstrip('.')}); this client sends the token it was given, "
            f"else ${protocol.TOKEN_ENV}, else the one in {protocol.token_file_path()}.", status, code)
    if status == 410:
        return SessionExpiredError(message, status, code)
    if status == 503:
        try:
            retry = float(response.headers.get(protocol.RETRY_AFTER.lower(), "2"))
        except ValueError:
            retry = 2.0
        return ServerBusyError(message, retry, status, code)
    if status == 426 or (status in (404, 405) and code in (protocol.NOT_FOUND, protocol.METHOD_NOT_ALLOWED, None)):
        return IncompatibleServerError(
            f"The server does not support {path} ({message}); it is probably older or newer than this client "
            f"(API {protocol.API_VERSION}).", status, code)
    if 400 <= status < 500:
        return BadRequestError(message, status, code)
    return ServerError(f"The agent server failed: {message}", status, code)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _find_token(token: Optional[str]) -> Optional[str]:
    """The given token, else $IBISAGENT_TOKEN, else the server's token file if readable."""
    if token:
        return token
    if os.environ.get(protocol.TOKEN_ENV):
        return os.environ[protocol.TOKEN_ENV].strip()
    try:
        with open(protocol.token_file_path(), encoding="ascii") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _as_mask(mask: Any, shape: Tuple[int, int]) -> np.ndarray:
    array = np.asarray(mask)
    if array.shape != tuple(shape):
        raise BadRequestError(f"The mask has shape {array.shape}, but the image has shape {tuple(shape)}.")
    if array.dtype == bool:
        return array.copy()
    if not np.issubdtype(array.dtype, np.number):
        raise BadRequestError(f"The mask must be boolean or numeric; got {array.dtype}.")
    if not np.all(np.isfinite(array)):
        raise BadRequestError("The mask contains NaN or infinite values.")
    return array != 0


# -- client -----------------------------------------------------------------------------------
class AgentClient:
    """A connection to one agent server. A context manager; `close()` is safe to call twice.

    ``transport``: how requests travel (default: an `HTTPTransport` to ``url``, which must then
    be an http(s) URL); a test may pass an in-process fake `BaseTransport`."""

    def __init__(self, url: str = DEFAULT_URL, token: Optional[str] = None, timeout: float = 30.0,
                 upload_timeout: float = 120.0, connect_timeout: float = 5.0,
                 transport: Optional[BaseTransport] = None) -> None:
        self.url = url
        self.timeout = timeout
        self.upload_timeout = upload_timeout
        self._transport = transport if transport is not None else HTTPTransport(url, connect_timeout)
        self._token = _find_token(token)
        self._info: Optional[Dict[str, Any]] = None

    def __enter__(self) -> "AgentClient":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def traffic(self) -> Dict[str, int]:
        """Bytes sent and received so far (HTTP framing included), for diagnostics."""
        return {"sent": self._transport.bytes_sent, "received": self._transport.bytes_received}

    def ping(self) -> bool:
        """True if a server answers /health; never raises."""
        try:
            return bool(self.call("GET", protocol.HEALTH, timeout=min(self.timeout, 3.0), idempotent=True))
        except Exception:
            return False

    def info(self, refresh: bool = False) -> Dict[str, Any]:
        """The server's identity (version, api_version, policy, policy_description, segmenter,
        device, capabilities, limits). Raises IncompatibleServerError on another major API."""
        if self._info is None or refresh:
            info = self.call("GET", protocol.INFO, idempotent=True)
            server_api = str(info.get("api_version", "0.0"))
            try:
                compatible = protocol.api_major(server_api) == protocol.API_MAJOR
            except ValueError:
                compatible = False
            if not compatible:
                raise IncompatibleServerError(
                    f"The agent server speaks API {server_api}; this client (ibisagent {__version__}) speaks "
                    f"{protocol.API_VERSION}."
                )
            self._info = info
        return self._info

    def supports(self, capability: str) -> bool:
        """Whether the server offers a feature; one an older server leaves out is unsupported."""
        return bool(self.info().get("capabilities", {}).get(capability, False))

    def open_session(self, image: np.ndarray, request: str = "", mask: Optional[np.ndarray] = None,
                     max_steps: int = 20, image_meta: Optional[Dict[str, Any]] = None) -> "RemoteSession":
        """Upload ``image`` (RGB uint8 (H, W, 3), display orientation) once and start an episode,
        continuing from ``mask`` (bool (H, W)) when given."""
        self.info()
        return RemoteSession(self, image, request, mask, max_steps, image_meta or {})

    def call(self, method: str, path: str, payload: Optional[Dict[str, Any]] = None,
             timeout: Optional[float] = None, idempotent: bool = False) -> Dict[str, Any]:
        """One JSON request; returns the decoded answer or raises a typed
        `ibisagent.errors.AgentError`."""
        headers = {protocol.CLIENT_API_VERSION: protocol.API_VERSION, "Accept": "application/json"}
        if self._token:
            headers[protocol.AUTHORIZATION] = f"{protocol.BEARER} {self._token}"
        body = None
        if payload is not None:
            body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
        response = self._transport.handle_request(
            Request(method, path, body, headers, timeout or self.timeout, idempotent))
        if 200 <= response.status < 300:
            try:
                return json.loads(response.body.decode("utf-8"))
            except ValueError:
                raise ServerError(f"The server sent a response that is not JSON (HTTP {response.status}).",
                                  response.status) from None
        raise _error_from(response, path)


# -- session ----------------------------------------------------------------------------------
#: Seconds `RemoteSession.close` waits for the server: closing never holds anyone up for long.
CLOSE_TIMEOUT_S = 3.0


class RemoteSession(SessionEvents):
    """One episode on an agent server; implements `ibisagent.session.Session`, so code written
    for an in-process `Episode` drives it unchanged (listeners included).

    The server is the one authority for the episode's state: the mask, the tool's clicks and
    state, the steps and the undo stack. This object shows the server's last answer as it is:
    ``mask`` (bool (H, W), followed bit-exactly through CRC-checked deltas), ``clicks``,
    ``pending``, ``stop_reason``, ``answer`` and ``can_undo``; it computes none of them, and
    `undo` is the server's.

    Its own are only what the server cannot know: ``image`` and ``request`` (to open the session
    again), ``initial_mask``, ``proposals`` (every proposal it was sent) and ``steps``, the steps
    of this episode, oldest first: the server session's steps, behind those of the server
    sessions it replaced.

    When the server forgot the session (idle past ``serve --session-ttl``, closed, or
    restarted), the call that finds out opens it again from the image, the request and the
    current mask, and is sent once more: the mask comes through bit for bit and ``steps`` keeps
    every step. The new server session starts a new undo history, so `undo` reaches back to that
    moment and no further: the history before it died with the server session that held it, and
    a copy of it here would be a second authority that can disagree. Nothing the user made is
    lost (the mask is exact, and in Slicer every step is already in the segment and its click
    history). ``rebuilds`` counts these; listeners get a `REBUILT` change.
    """

    def __init__(self, client: AgentClient, image: np.ndarray, request: str, mask: Optional[np.ndarray],
                 max_steps: int, image_meta: Dict[str, Any]) -> None:
        super().__init__()
        try:
            self._image_payload = encode_image(image)
        except ImageCodecError as error:
            raise BadRequestError(str(error)) from None
        self._client = client
        self.image = image
        self.request = request
        self.max_steps = max_steps
        self.image_meta = image_meta
        start = None if mask is None else _as_mask(mask, image.shape[:2])
        self.mask = np.zeros(image.shape[:2], dtype=bool) if start is None else start
        self.initial_mask = self.mask.copy()
        self.proposals: List[Proposal] = []
        self.steps: List[Step] = []
        self.clicks: List[Click] = []
        self.pending: Optional[Proposal] = None
        self.stop_reason: Optional[str] = None
        self.answer: Optional[str] = None
        self.can_undo = False
        self.rebuilds = 0
        self.uploads = 0
        self.closed = False
        self.id = ""
        self.revision = 0
        self._earlier = 0  # steps made in the server sessions this one replaced
        self._create(start)

    # -- the loop ----------------------------------------------------------------------------
    def propose(self) -> Proposal:
        """The policy's next proposal; changes no mask. ``stop_reason`` is the server's (terminate,
        unreadable output, repeated action)."""
        data = self._call("POST", protocol.SESSION_PROPOSE)
        proposal = Proposal.from_dict(data)
        self.proposals.append(proposal)
        self._show(data["view"], proposal)
        self._notify(PROPOSED, proposal=proposal)
        return proposal

    def apply(self, clicks: Sequence[Click]) -> Step:
        """Apply the decided clicks; returns the step and updates ``mask``."""
        clicks = [c if isinstance(c, Click) else Click.from_dict(c) for c in clicks]
        if not clicks:
            raise BadRequestError("No clicks to apply; call skip() to pass on a proposal.")
        before = self.mask
        answer = self._call("POST", protocol.SESSION_APPLY, {"clicks": [c.to_dict() for c in clicks]})
        self._follow(answer["mask"])
        step = Step.from_dict(answer["step"])
        step.index += self._earlier
        self.steps.append(step)
        self._show(answer["view"])
        self._notify(APPLIED, step=step, mask_before=before, chain_start=len(self.clicks) == len(step.clicks))
        return step

    def skip(self) -> None:
        """Drop the pending proposal."""
        self._show(self._call("POST", protocol.SESSION_SKIP)["view"])
        self._notify(SKIPPED)

    def replace_mask(self, mask: np.ndarray) -> None:
        """Continue from a mask the user edited by hand (earlier clicks no longer apply); one
        undo entry on the server, like a step."""
        new = _as_mask(mask, self.mask.shape)
        answer = self._call("PUT", protocol.SESSION_MASK, {"mask": _b64(encode_mask(new))})
        self._follow(answer["mask"])
        self._show(answer["view"])
        self._notify(MASK_REPLACED)

    def undo(self) -> bool:
        """The server undoes its last apply or replace_mask (exactly: the tool's own state comes
        back too); False when it has nothing to undo (see the class docstring on rebuilds)."""
        if not self.can_undo:
            return False
        answer = self._call("POST", protocol.SESSION_UNDO)
        self._follow(answer["mask"])
        self._show(answer["view"])
        if answer["undone"]:
            self._notify(UNDONE)
        return bool(answer["undone"])

    def state(self) -> Dict[str, Any]:
        """The server's view of the episode (clicks, steps, pending proposal, lease)."""
        return self._call("GET", protocol.SESSION, idempotent=True)

    def close(self) -> None:
        """End the session on the server; safe to call twice and when the server is gone or
        hung (waits at most `CLOSE_TIMEOUT_S`)."""
        if self.closed:
            return
        self.closed = True
        try:
            self._client.call("DELETE", self._path(protocol.SESSION), idempotent=True,
                              timeout=min(self._client.timeout, CLOSE_TIMEOUT_S))
        except (SessionExpiredError, TransportError):
            pass

    def __enter__(self) -> "RemoteSession":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- showing the server's state --------------------------------------------------------------
    def _show(self, view: Dict[str, Any], proposal: Optional[Proposal] = None) -> None:
        """Take the server's view as it is (``proposal``: the one this answer carried)."""
        self.clicks = [Click.from_dict(c) for c in view["clicks"]]
        del self.steps[self._earlier + int(view["step_count"]):]
        self.pending = (proposal or self.pending) if view["pending"] else None
        self.stop_reason = view["stop_reason"]
        self.answer = view["answer"]
        self.can_undo = bool(view["can_undo"])

    def _create(self, mask: Optional[np.ndarray]) -> None:
        payload = {
            "image": self._image_payload,
            "request": self.request,
            "mask": None if mask is None else _b64(encode_mask(mask)),
            "max_steps": self.max_steps,
            "image_meta": self.image_meta,
        }
        state = self._client.call("POST", protocol.SESSIONS, payload, timeout=self._client.upload_timeout)
        self.uploads += 1
        self.id = state["session_id"]
        self.revision = state["revision"]
        self._show(dict(state, step_count=len(state["steps"]), pending=state["pending"] is not None))

    def _rebuild(self) -> None:
        """The server lost the session: open a new one from the image, the current mask and
        the request (see the class docstring)."""
        log.warning("session %s is gone on the server; opening it again from the current mask", self.id)
        self._earlier = len(self.steps)
        self._create(self.mask if self.mask.any() else None)
        self.rebuilds += 1
        self._notify(REBUILT)

    def _call(self, method: str, template: str, payload: Optional[Dict[str, Any]] = None,
              idempotent: bool = False) -> Dict[str, Any]:
        if self.closed:
            raise BadRequestError("This session is closed; open a new one.")
        try:
            return self._client.call(method, self._path(template), payload, idempotent=idempotent)
        except SessionExpiredError:
            self._rebuild()
            return self._client.call(method, self._path(template), payload, idempotent=idempotent)

    def _path(self, template: str) -> str:
        return template.replace("{session_id}", self.id)

    def _follow(self, update: Dict[str, Any]) -> None:
        """Apply the server's mask delta, or re-read the whole mask if out of step."""
        if update["base_revision"] == self.revision:
            try:
                self.mask = decode_mask(base64.b64decode(update["data"]), base=self.mask)
                self.revision = update["revision"]
                return
            except MaskCodecError as error:
                log.warning("mask delta did not apply (%s); re-reading the whole mask", error)
        full = self._call("GET", protocol.SESSION_MASK, idempotent=True)
        self.mask = decode_mask(base64.b64decode(full["data"]))
        self.revision = full["revision"]
