"""Refuse request bodies over the configured cap before they are read into memory.

A declared Content-Length over the cap gets 413 at once; a chunked body is counted as it
arrives. When it passes the cap the app is told the client disconnected (so it stops reading),
whatever it answers to that is dropped, and a 413 goes out instead.
"""

from __future__ import annotations

import json

from .. import protocol


class BodyLimit:
    """Pure ASGI middleware (no buffering, no per-request task) for speed."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        received = 0
        too_large = False
        started = False

        async def counting_receive():
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if too_large and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not (too_large and not started):
                raise
        if too_large and not started:
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        mb = self.max_bytes / (1024 * 1024)
        body = json.dumps({"error": {
            "code": protocol.PAYLOAD_TOO_LARGE,
            "message": f"The request body is larger than this server's cap of {mb:.1f} MB (serve --max-body-mb).",
        }}).encode("utf-8")
        await send({
            "type": "http.response.start",
            "status": protocol.STATUS_OF[protocol.PAYLOAD_TOO_LARGE],
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        })
        await send({"type": "http.response.body", "body": body})
