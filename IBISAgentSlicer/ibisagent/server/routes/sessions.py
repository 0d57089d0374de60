"""Sessions as a resource: open (uploads the image, once), read state, read or replace the
mask, close."""

from __future__ import annotations

import base64
import binascii
from typing import Optional, Tuple

import numpy as np
from fastapi import APIRouter

from ... import protocol
from ...image_codec import decode_image
from ...mask_codec import decode_mask
from ..agent_session import AgentSession
from ..deps import Authorized, LiveSession, State
from ..errors import ApiError
from ..models import (
    CreateSessionRequest,
    FullMask,
    OkResponse,
    ReplaceMaskRequest,
    ReplaceMaskResponse,
    SessionState,
)
from . import AUTHED, IN_SESSION, MODEL, errors_for

router = APIRouter(tags=["sessions"], dependencies=[Authorized])


def decode_b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(protocol.BAD_REQUEST, f"The {what} is not valid base64.") from None


def _decode_upload(body: CreateSessionRequest) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    payload = body.image
    image = decode_image(payload.rows, payload.cols, payload.channels, payload.dtype, payload.data)
    if body.mask is None:
        return image, None
    mask = decode_mask(decode_b64(body.mask, "mask"))
    if mask.shape != image.shape[:2]:
        raise ValueError(f"The mask has shape {mask.shape}; the image has {image.shape[:2]}.")
    return image, mask


def _state(session: AgentSession, expires_in_s: float) -> SessionState:
    """Runs on a pool thread (it waits for the session lock), so the lease countdown is read
    from the store by the caller, on the event loop."""
    return SessionState(**session.state(expires_in_s))


@router.post(protocol.SESSIONS, status_code=201, response_model=SessionState,
             responses=errors_for(*(AUTHED + (protocol.SERVER_BUSY,))))
async def open_session(body: CreateSessionRequest, state: State) -> SessionState:
    """Upload the slice once and start an episode, from the user's mask if one is given."""
    state.room_for_session(body.image.rows, body.image.cols)
    image, mask = await state.quick_call(_decode_upload, body)
    session = await state.open_session(
        AgentSession.open, state.store.new_id(), image, body.request, mask, body.max_steps, body.image_meta,
        state.settings.record_dir,
    )
    return await state.quick_call(_state, session, state.store.expires_in(session.id))


@router.get(protocol.SESSION, response_model=SessionState, responses=errors_for(*IN_SESSION))
async def read_state(session: LiveSession, state: State) -> SessionState:
    """Everything about the episode except pixels; renews the lease."""
    return await state.quick_call(_state, session, state.store.expires_in(session.id))


@router.delete(protocol.SESSION, response_model=OkResponse, responses=errors_for(*IN_SESSION))
async def close_session(session: LiveSession, state: State) -> OkResponse:
    state.store.close(session.id)
    return OkResponse()


@router.get(protocol.SESSION_MASK, response_model=FullMask, responses=errors_for(*IN_SESSION))
async def read_mask(session: LiveSession, state: State) -> FullMask:
    """The whole current mask, for a client that lost track of the revisions."""
    return FullMask(**await state.quick_call(session.full_mask))


@router.put(protocol.SESSION_MASK, response_model=ReplaceMaskResponse, responses=errors_for(*MODEL))
async def replace_mask(body: ReplaceMaskRequest, session: LiveSession, state: State) -> ReplaceMaskResponse:
    """Continue from a mask the user edited by hand; earlier clicks no longer apply (undo-able)."""
    data = decode_b64(body.mask, "mask")
    return ReplaceMaskResponse(**await state.quick_call(session.replace_mask, data))
