"""Routes grouped by resource; each module owns its router, prefix and tag.

`ROUTERS` is the list `make_app` mounts. `errors_for` documents the error responses a route can
give, so the published OpenAPI schema lists every status a client may see.
"""

from __future__ import annotations

from typing import Any, Dict

from ... import protocol
from ..models import ErrorBody


def errors_for(*codes: str) -> Dict[int, Dict[str, Any]]:
    return {
        protocol.STATUS_OF[code]: {"model": ErrorBody, "description": protocol.ERRORS[code][1]}
        for code in codes + (protocol.BAD_REQUEST, protocol.INTERNAL, protocol.PAYLOAD_TOO_LARGE)
    }


#: Errors every authenticated route can give.
AUTHED = (protocol.UNAUTHORIZED, protocol.INCOMPATIBLE_CLIENT)
#: ... and those that name a session.
IN_SESSION = AUTHED + (protocol.SESSION_EXPIRED,)
#: ... and those that wait for the model worker.
MODEL = IN_SESSION + (protocol.SERVER_BUSY,)
