"""Wire constants shared by the agent server and its client, so the two ends cannot disagree.

Standard library only; imports on Python 3.9 (Slicer's Python).

Versioning: ``API_VERSION`` is "MAJOR.MINOR". A client refuses a server whose major differs (and
the server refuses such a client); a minor bump only adds optional fields and endpoints, which
an older peer reports as unsupported capabilities. API 2 made the server the one authority for
a session's state: every answer that changes the episode carries its ``view`` (clicks, step
count, stop reason, answer, whether undo can change anything) and the client keeps no undo of
its own (API 1 clients kept one).

Errors: every non-2xx response has the JSON body ``{"error": {"code": CODE, "message": TEXT}}``
where CODE is a key of `ERRORS` and TEXT says what to do next.
"""

from __future__ import annotations

import os

API_VERSION = "2.0"
API_MAJOR = int(API_VERSION.split(".")[0])

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765

# -- paths ------------------------------------------------------------------------------------
HEALTH = "/health"  # no token needed
INFO = "/v1/info"
SESSIONS = "/v1/sessions"
SESSION = SESSIONS + "/{session_id}"  # GET: state, DELETE: close
SESSION_MASK = SESSION + "/mask"  # GET: full mask, PUT: replace with the user's mask
SESSION_PROPOSE = SESSION + "/propose"
SESSION_APPLY = SESSION + "/apply"
SESSION_SKIP = SESSION + "/skip"
SESSION_UNDO = SESSION + "/undo"
SESSION_RUN = SESSION + "/run"

#: Session ids are 32 lowercase hex characters.
SESSION_ID_PATTERN = r"^[0-9a-f]{32}$"

# -- headers ----------------------------------------------------------------------------------
AUTHORIZATION = "Authorization"  # "Bearer <token>"
BEARER = "Bearer"
CLIENT_API_VERSION = "X-IBISAgent-API-Version"  # sent by the client; checked by the server
RETRY_AFTER = "Retry-After"  # seconds, on 503
TOKEN_ENV = "IBISAGENT_TOKEN"

# -- error codes: code -> (HTTP status, meaning) ----------------------------------------------
BAD_REQUEST = "bad_request"
UNAUTHORIZED = "unauthorized"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
SESSION_EXPIRED = "session_expired"
PAYLOAD_TOO_LARGE = "payload_too_large"
INCOMPATIBLE_CLIENT = "incompatible_client"
SERVER_BUSY = "server_busy"
INTERNAL = "internal_error"

ERRORS = {
    BAD_REQUEST: (400, "The request is malformed or its values are invalid; the message says which."),
    UNAUTHORIZED: (401, "The bearer token is missing or wrong."),
    NOT_FOUND: (404, "No such endpoint."),
    METHOD_NOT_ALLOWED: (405, "The endpoint does not accept this HTTP method."),
    SESSION_EXPIRED: (410, "The session expired, was closed, or the server restarted; open a new one."),
    PAYLOAD_TOO_LARGE: (413, "The request body is larger than the server's cap (serve --max-body-mb)."),
    INCOMPATIBLE_CLIENT: (426, "The client speaks another major API version; upgrade the older side."),
    SERVER_BUSY: (503, "The model worker's queue or the session table is full; retry after Retry-After."),
    INTERNAL: (500, "The model or the server failed; the session state is unchanged."),
}

STATUS_OF = {code: status for code, (status, _meaning) in ERRORS.items()}


def api_major(version: str) -> int:
    """The major number of an "X.Y" version string; raises ValueError if it is not one."""
    return int(str(version).split(".")[0])


def token_file_path() -> str:
    """Where `ibisagent serve` keeps its generated token, and where the client looks for it:
    ``$XDG_CONFIG_HOME/ibisagent/token`` (default ``~/.config/ibisagent/token``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "ibisagent", "token")
