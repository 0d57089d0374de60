"""Every failure leaves as ``{"error": {"code", "message"}}`` with the status the protocol's
error table gives its code, whatever raised it: our own `ApiError`, request validation, an
unknown path, or an unexpected exception (500, logged, message kept short). No message is ever
empty: an exception without one is named, and running out of memory says what to do."""

from __future__ import annotations

import logging
from typing import Dict, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import protocol

log = logging.getLogger("ibisagent.server")

_BY_STATUS = {404: protocol.NOT_FOUND, 405: protocol.METHOD_NOT_ALLOWED, 413: protocol.PAYLOAD_TOO_LARGE}


class ApiError(Exception):
    """An error with a protocol code; routes raise it and the handler renders it."""

    def __init__(self, code: str, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}


def out_of_memory() -> ApiError:
    """500 for a MemoryError: what happened and what to do (its own message is empty)."""
    return ApiError(protocol.INTERNAL, "The server ran out of memory for this request; the session is unchanged. "
                    "Close sessions you no longer use, or crop or downsample the image.")


def error_response(code: str, message: str, headers: Optional[Dict[str, str]] = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=protocol.STATUS_OF[code], headers=headers)


def describe_validation(error: RequestValidationError) -> str:
    """One readable sentence from pydantic's error list, e.g. 'body.clicks.0.x: ...'."""
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    more = len(error.errors()) - 3
    return "Invalid request: " + "; ".join(parts) + (f" (and {more} more)" if more > 0 else "") + "."


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.code, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(protocol.BAD_REQUEST, describe_validation(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _BY_STATUS.get(error.status_code, protocol.BAD_REQUEST)
        return error_response(code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected server error")
        if isinstance(error, MemoryError):
            api = out_of_memory()
            return error_response(api.code, api.message)
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return error_response(protocol.INTERNAL, f"The server failed ({detail}); see the server log.")
