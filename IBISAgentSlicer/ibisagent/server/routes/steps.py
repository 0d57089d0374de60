"""The agent loop within a session: propose, apply clicks, skip, undo, run N steps."""

from __future__ import annotations

from fastapi import APIRouter

from ... import protocol
from ...clicks import Click
from ..deps import Authorized, LiveSession, State
from ..errors import ApiError
from ..models import (
    ApplyRequest,
    ProposeResponse,
    RunRequest,
    RunResponse,
    SkipResponse,
    StepResponse,
    UndoResponse,
)
from . import IN_SESSION, MODEL, errors_for

router = APIRouter(tags=["steps"], dependencies=[Authorized])


@router.post(protocol.SESSION_PROPOSE, response_model=ProposeResponse, responses=errors_for(*MODEL))
async def propose(session: LiveSession, state: State) -> ProposeResponse:
    """Ask the policy for the next click; changes no mask."""
    return ProposeResponse(**await state.session_call(session, session.propose))


@router.post(protocol.SESSION_APPLY, response_model=StepResponse, responses=errors_for(*MODEL))
async def apply(body: ApplyRequest, session: LiveSession, state: State) -> StepResponse:
    """Apply the decided clicks (accepted, edited or the user's own); returns the mask delta."""
    clicks = [Click(c.x, c.y, c.positive, c.origin) for c in body.clicks]
    return StepResponse(**await state.session_call(session, session.apply, clicks))


@router.post(protocol.SESSION_SKIP, response_model=SkipResponse, responses=errors_for(*IN_SESSION))
async def skip(session: LiveSession, state: State) -> SkipResponse:
    """Drop the pending proposal."""
    return SkipResponse(**await state.quick_call(session.skip))


@router.post(protocol.SESSION_UNDO, response_model=UndoResponse, responses=errors_for(*IN_SESSION))
async def undo(session: LiveSession, state: State) -> UndoResponse:
    """Return to the state before the last apply or mask replacement."""
    return UndoResponse(**await state.quick_call(session.undo))


@router.post(protocol.SESSION_RUN, response_model=RunResponse, responses=errors_for(*MODEL))
async def run(body: RunRequest, session: LiveSession, state: State) -> RunResponse:
    """Propose and accept until a stop rule fires or the episode has ``max_steps`` steps."""
    limit = body.max_steps
    if limit is not None and limit > state.settings.max_run_steps:
        raise ApiError(protocol.BAD_REQUEST, f"max_steps is at most {state.settings.max_run_steps} on this server.")
    return RunResponse(**await state.session_call(session, session.run, limit))
