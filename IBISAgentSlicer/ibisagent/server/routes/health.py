"""Liveness (no token, never waits for the models) and the server's identity card."""

from __future__ import annotations

from fastapi import APIRouter

from ... import __version__, protocol
from ...protocol import HEALTH, INFO
from ..deps import Authorized, State
from ..models import HealthResponse, InfoResponse
from . import AUTHED, errors_for

router = APIRouter(tags=["server"])

#: Features a client may grey out when a server leaves them out (missing means unsupported).
CAPABILITIES = {
    "propose": True,
    "apply": True,
    "skip": True,
    "undo": True,
    "run": True,
    "replace_mask": True,
    "mask_delta": True,
    "answer": True,
}


@router.get(HEALTH, response_model=HealthResponse, responses=errors_for())
async def health(state: State) -> HealthResponse:
    """Answers at once, even while a long model call runs; no token needed."""
    return HealthResponse(version=__version__, api_version=protocol.API_VERSION, ready=state.workers.ready)


@router.get(INFO, response_model=InfoResponse, dependencies=[Authorized], responses=errors_for(*AUTHED))
async def info(state: State) -> InfoResponse:
    """What this server runs, so a client can refuse a mismatched one with a clear message."""
    engine = state.workers.engine
    settings = state.settings
    return InfoResponse(
        version=__version__,
        api_version=protocol.API_VERSION,
        policy=engine.policy.name if engine else settings.engine.policy,
        policy_description=engine.policy.description if engine else "(loading)",
        segmenter=engine.segmenter.name if engine else settings.engine.segmenter,
        segmenter_description=engine.segmenter.description if engine else "(loading)",
        device=engine.device if engine else "(loading)",
        capabilities=CAPABILITIES,
        limits={
            "max_body_bytes": settings.max_body_bytes,
            "session_ttl_s": settings.session_ttl_s,
            "max_sessions": settings.max_sessions,
            "max_run_steps": settings.max_run_steps,
            "workers": len(state.workers.workers),
        },
        records_sessions=settings.record_dir is not None,
    )
