"""The wire shapes of the HTTP API (pydantic), kept apart from the engine's own objects so no
internal field leaks and the published OpenAPI schema says exactly what is accepted.

Integers from the client are strict (``1.5``, ``true`` or ``NaN`` are refused, not coerced).
Masks travel as base64 text of the `ibisagent.mask_codec` format; images as `ImagePayload`.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from ..clicks import ORIGINS

Origin = Literal["agent", "user", "user-moved"]
assert set(ORIGINS) == {"agent", "user", "user-moved"}, "keep Origin in step with ibisagent.clicks"

_STRICT = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(description="A key of ibisagent.protocol.ERRORS.")
    message: str = Field(description="What is wrong and what to do next.")


class ErrorBody(BaseModel):
    error: ErrorDetail


# -- requests ---------------------------------------------------------------------------------
class ImagePayload(BaseModel):
    """An RGB uint8 slice in display orientation: base64 of zlib of the raw row-major bytes."""

    model_config = _STRICT
    rows: StrictInt = Field(ge=2, le=16384)
    cols: StrictInt = Field(ge=2, le=16384)
    channels: StrictInt = Field(ge=1, le=4, description="Must be 3.")
    dtype: str = Field(max_length=16, description="Must be 'uint8'.")
    data: str = Field(description="base64(zlib(raw bytes)).")


class ClickModel(BaseModel):
    """A click in pixels of the uploaded image: x = column, y = row, zero-based."""

    model_config = _STRICT
    x: StrictInt = Field(ge=0, le=1 << 20)
    y: StrictInt = Field(ge=0, le=1 << 20)
    positive: StrictBool
    origin: Origin = "user"


class CreateSessionRequest(BaseModel):
    model_config = _STRICT
    image: ImagePayload
    request: str = Field("", max_length=4000, description="The user's words, e.g. 'Segment the liver.'")
    mask: Optional[str] = Field(None, description="The user's mask to continue (mask_codec, full), or null.")
    max_steps: StrictInt = Field(20, ge=1, le=1000)
    image_meta: Dict[str, Any] = Field(
        default_factory=dict, description="Display orientation and provenance of the slice; stored and echoed."
    )


class ApplyRequest(BaseModel):
    model_config = _STRICT
    clicks: List[ClickModel] = Field(min_length=1, max_length=256)


class ReplaceMaskRequest(BaseModel):
    model_config = _STRICT
    mask: str = Field(description="mask_codec bytes, base64: a full mask or a delta against the current mask.")


class RunRequest(BaseModel):
    model_config = _STRICT
    max_steps: Optional[StrictInt] = Field(
        None, ge=1, le=1000, description="Stop when the episode has this many steps (default: the session's max_steps)."
    )


# -- responses --------------------------------------------------------------------------------
class MaskUpdate(BaseModel):
    """How to bring a mask at ``base_revision`` to ``revision``: a mask_codec delta, base64."""

    revision: int
    base_revision: int
    data: str


class FullMask(BaseModel):
    revision: int
    data: str = Field(description="mask_codec full encoding, base64.")


class ProposalModel(BaseModel):
    step: int
    policy: str
    reasoning: str
    action: Optional[str]
    answer: Optional[str]
    error: Optional[str]
    click: Optional[ClickModel]
    clamped: bool
    seconds: float
    raw_text: str


class EpisodeView(BaseModel):
    """The episode as the server holds it (the one authority; the client shows it as it is)."""

    clicks: List[ClickModel] = Field(description="The clicks the tool uses now (a hand edit restarts them).")
    step_count: int = Field(description="Steps applied in this server session.")
    pending: bool = Field(description="A proposal waits to be applied or skipped.")
    stop_reason: Optional[str]
    answer: Optional[str]
    can_undo: bool


class ProposeResponse(ProposalModel):
    view: EpisodeView


class StepModel(BaseModel):
    index: int
    decision: str
    clicks: List[ClickModel]
    proposal: Optional[ProposalModel]
    mask_pixels: int
    score: Optional[float]
    seconds: float


class StepResponse(BaseModel):
    step: StepModel
    mask: MaskUpdate
    view: EpisodeView


class UndoResponse(BaseModel):
    undone: bool
    mask: MaskUpdate
    view: EpisodeView


class ReplaceMaskResponse(BaseModel):
    mask: MaskUpdate
    view: EpisodeView


class SkipResponse(BaseModel):
    view: EpisodeView


class RunResponse(BaseModel):
    steps: List[StepModel] = Field(description="The steps this call added.")
    mask: MaskUpdate
    view: EpisodeView


class SessionState(BaseModel):
    session_id: str
    rows: int
    cols: int
    request: str
    max_steps: int
    image_meta: Dict[str, Any]
    revision: int
    clicks: List[ClickModel]
    steps: List[StepModel]
    pending: Optional[ProposalModel]
    stop_reason: Optional[str]
    answer: Optional[str]
    can_undo: bool
    expires_in_s: float


class OkResponse(BaseModel):
    ok: bool = True


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    api_version: str
    ready: bool = Field(description="False while the models are still loading.")


class InfoResponse(BaseModel):
    version: str
    api_version: str
    policy: str
    policy_description: str
    segmenter: str
    segmenter_description: str
    device: str
    capabilities: Dict[str, bool]
    limits: Dict[str, float]
    records_sessions: bool = Field(
        False, description="The server writes every session to a local folder for training (serve --record).")
