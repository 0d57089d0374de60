"""The ``openai`` policy: ask any OpenAI-compatible chat server (vLLM, SGLang) that serves an
IBISAgent checkpoint. Standard library only, so a workstation needs no torch to use it.

Why: one GPU deployment can serve many workstations. Serve the released checkpoint (a local copy
of the Hugging Face repo ``manglu3935/IBIS``, folder ``qwen2_5vl-7b-RL``) with vLLM, for example::

    vllm serve /models/IBIS/qwen2_5vl-7b-RL --served-model-name ibisagent \\
        --port 8000 --api-key "$IBIS_KEY" --max-model-len 8192 \\
        --limit-mm-per-prompt '{"image": 1}' --mm-processor-kwargs '{"max_pixels": 262144}'

(add ``--tensor-parallel-size N`` or more replicas behind a load balancer to scale), then build
the policy with ``url="http://gpu-host:8000/v1", model="ibisagent", api_key=...`` or set
``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``. Without a model name the first id listed by the
server's ``/v1/models`` is used.

Each turn sends the same messages as the in-process ``qwen`` policy (see
`ibisagent.policies.prompts`): the image is the green overlay sized to at most ``max_pixels``,
inlined as a base64 PNG data URL, before the text. Decoding is greedy (temperature 0).

Every failure raises a `PolicyError` subclass named for what the caller does next:
`ServerUnreachable` (start the server or fix the URL), `ServerTimeout` (wait, or raise
``timeout``), `ServerRejected` (HTTP error; carries the status and the server's message) and
`BadServerReply` (the reply is not an OpenAI chat completion).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Optional

from ..imaging import MODEL_MAX_PIXELS
from .base import Observation, Policy, PolicyError
from .prompts import load_templates


class ServerUnreachable(PolicyError):
    """Nothing answers at the URL: the server is not started, still loading, or the URL/port is
    wrong, or a firewall is in the way."""


class ServerTimeout(PolicyError):
    """The server accepted the request but did not answer in time: it is overloaded, still
    warming up, or ``timeout`` is too short for the GPU."""


class ServerRejected(PolicyError):
    """The server answered with an HTTP error: wrong API key (401), wrong model name (404),
    a request it cannot take (400), or an internal failure (5xx)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class BadServerReply(PolicyError):
    """The server answered, but not with an OpenAI chat completion (a proxy page, another API,
    an empty completion)."""


def api_base(url: str) -> str:
    """Normalise ``http://host:port``, ``.../v1`` or ``.../v1/chat/completions`` to ``.../v1``."""
    base = url.strip().rstrip("/")
    if base.endswith("/chat/completions"):
        base = base[: -len("/chat/completions")]
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"The server URL {url!r} must start with http:// or https://.")
    return base if base.endswith("/v1") else base + "/v1"


def png_data_url(picture) -> str:
    """A PIL image as an inline ``data:image/png;base64,...`` URL (lossless, so the overlay
    colours reach the model exactly)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class OpenAIPolicy(Policy):
    name = "openai"

    def __init__(
        self,
        url: Optional[str] = None,
        model: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout: float = 60,
        max_tokens: int = 512,
        prompts_dir: Optional[str] = None,
        max_pixels: int = MODEL_MAX_PIXELS,
    ) -> None:
        url = url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise ValueError("No server URL: pass url='http://host:8000/v1' or set OPENAI_BASE_URL.")
        if timeout <= 0 or max_tokens < 1 or max_pixels < 784:
            raise ValueError("timeout must be positive, max_tokens at least 1 and max_pixels at least 784.")
        self.base = api_base(url)
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = float(timeout)
        self.max_tokens = int(max_tokens)
        self.max_pixels = int(max_pixels)
        self.templates = load_templates(prompts_dir)
        #: Seconds and token counts of the last request, for logs and benchmarks.
        self.last_timings: dict = {}
        self.description = f"OpenAI-compatible server at {self.base} (model {model or 'first served'})"

    def respond(self, observation: Observation) -> str:
        turn = self.templates.turn(observation, self.max_pixels)
        image_part = {"type": "image_url", "image_url": {"url": png_data_url(turn.image)}}
        payload = {
            "model": self.model_name(),
            "messages": turn.messages(image_part),
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        started = time.perf_counter()
        reply = self._call("POST", "/chat/completions", payload)
        seconds = time.perf_counter() - started
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not isinstance(choices, list) or not choices:
            raise BadServerReply(f"The server at {self.base} returned no choices.")
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise BadServerReply(f"The server at {self.base} returned a choice without text content.")
        usage = reply.get("usage") or {}
        self.last_timings = {
            "request_s": seconds,
            "prompt_tokens": usage.get("prompt_tokens"),
            "new_tokens": usage.get("completion_tokens"),
        }
        return content

    def model_name(self) -> str:
        """The model to ask for: the one given, else the first the server lists (asked once)."""
        if self.model is None:
            listing = self._call("GET", "/models")
            data = listing.get("data") if isinstance(listing, dict) else None
            ids = [entry.get("id") for entry in data or [] if isinstance(entry, dict)]
            if not ids or not isinstance(ids[0], str):
                raise BadServerReply(f"The server at {self.base} lists no models; pass model=... explicitly.")
            self.model = ids[0]
            self.description = f"OpenAI-compatible server at {self.base} (model {self.model})"
        return self.model

    def _call(self, method: str, path: str, payload: Optional[dict] = None) -> object:
        url = self.base + path
        headers = {"Accept": "application/json"}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            raise ServerRejected(
                f"The server at {url} refused the request with HTTP {error.code}: {_error_message(error)}",
                error.code,
            ) from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, (socket.timeout, TimeoutError)):
                raise ServerTimeout(f"The server at {url} did not answer within {self.timeout:g} s.") from None
            raise ServerUnreachable(
                f"Cannot reach {url} ({error.reason}); start the model server there (e.g. `vllm serve "
                f"<checkpoint> --served-model-name ibisagent`) or fix the URL."
            ) from None
        except (socket.timeout, TimeoutError):
            raise ServerTimeout(f"The server at {url} did not answer within {self.timeout:g} s.") from None
        except (ConnectionError, http.client.HTTPException) as error:
            raise ServerUnreachable(f"The connection to {url} broke off ({error}); is the server restarting?") from None
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise BadServerReply(f"The server at {url} did not answer with JSON: {body[:120]!r}") from None


def _error_message(error: urllib.error.HTTPError) -> str:
    """The server's own words from an error body (OpenAI and vLLM shapes), else its raw text."""
    raw = error.read().decode("utf-8", "replace").strip()
    try:
        body = json.loads(raw)
    except ValueError:
        return raw[:300] or error.reason
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return raw[:300]


#: The registry builds this policy by calling the class with the user's options.
build = OpenAIPolicy
