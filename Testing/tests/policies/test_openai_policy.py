"""The openai policy against a real HTTP server on 127.0.0.1 that checks what arrives."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from ibisagent.episode import STOP_TERMINATED, Episode
from ibisagent.policies import build_policy
from ibisagent.policies.base import Observation
from ibisagent.policies.openai_api import (
    BadServerReply,
    PolicyError,
    ServerRejected,
    ServerTimeout,
    ServerUnreachable,
    api_base,
)
from ibisagent.segmenters import build_segmenter

GREEN = np.array([34, 139, 34], dtype=np.float64)
REPLY = "<think>\nThe liver is the large organ on the left.\n</think>\n<action>\nPositive Point (0.2500, 0.5000)\n</action>"


def completion(text: str) -> dict:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 400, "completion_tokens": 30},
    }


class ChatServer:
    """A tiny OpenAI-style server: records every request and answers as ``mode`` says."""

    def __init__(self) -> None:
        self.requests = []
        self.mode = "ok"
        self.reply_text = REPLY
        self.models = ["ibisagent"]
        self.answer_slow = threading.Event()  # "slow" mode holds each request until this is set
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in server.models]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body})
                mode = server.mode
                if mode == "slow":
                    server.answer_slow.wait(30)
                    return
                if mode == "unauthorised":
                    self._send(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}})
                elif mode == "crash":
                    self._send(500, {"object": "error", "message": "CUDA out of memory", "type": "InternalServerError"})
                elif mode == "html":
                    self._send(200, b"<html>proxy login</html>")
                elif mode == "no-choices":
                    self._send(200, {"id": "x", "choices": []})
                else:
                    self._send(200, completion(server.reply_text))

            def _send(self, status, payload):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def posts(self):
        return [r for r in self.requests if r["method"] == "POST"]

    def close(self):
        self.answer_slow.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    chat = ChatServer()
    yield chat
    chat.close()


def grey_observation(width=100, height=80, masked=False, request="Can you find a liver in this image?"):
    image = np.full((height, width, 3), 100, dtype=np.uint8)
    image[:, : width // 2] = 180  # two tones so resizing has something to keep
    mask = np.zeros((height, width), dtype=bool)
    if masked:
        mask[10:30, 20:60] = True
    return Observation(image, mask, request, 0)


def sent_image(request: dict) -> np.ndarray:
    part = request["body"]["messages"][-1]["content"][0]
    assert part["type"] == "image_url"
    url = part["image_url"]["url"]
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    picture = Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))
    assert picture.format == "PNG"
    return np.asarray(picture.convert("RGB"))


def test_first_turn_sends_system_and_one_user_message_with_image_then_request(server):
    policy = build_policy("openai", url=server.url, model="ibisagent", api_key="secret-key", max_tokens=77)
    observation = grey_observation()
    assert policy.respond(observation) == REPLY
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer secret-key"
    body = request["body"]
    assert body["model"] == "ibisagent" and body["temperature"] == 0 and body["max_tokens"] == 77
    system, user = body["messages"]
    assert system["role"] == "system" and "<action>" in system["content"][0]["text"]
    assert user["role"] == "user"
    assert [part["type"] for part in user["content"]] == ["image_url", "text"]
    assert user["content"][1]["text"] == "Can you find a liver in this image?"
    assert np.array_equal(sent_image(request), observation.image)  # no mask: the image unchanged
    assert policy.last_timings["prompt_tokens"] == 400 and policy.last_timings["new_tokens"] == 30


def test_refinement_turn_sends_green_overlay_where_the_mask_is(server):
    policy = build_policy("openai", url=server.url, model="ibisagent")
    observation = grey_observation(masked=True)
    policy.respond(observation)
    (request,) = server.requests
    assert "Authorization" not in request["headers"]
    text = request["body"]["messages"][-1]["content"][1]["text"]
    assert "refinement" in text and "Can you find a liver in this image?" in text
    pixels = sent_image(request).astype(np.float64)
    assert pixels.shape == (80, 100, 3)
    blended = np.rint(observation.image.astype(np.float64) * 0.6 + GREEN * 0.4)
    assert np.array_equal(pixels[observation.mask], blended[observation.mask])
    assert np.array_equal(pixels[~observation.mask], observation.image[~observation.mask])


def test_large_image_is_sent_at_most_262144_pixels_with_its_aspect(server):
    policy = build_policy("openai", url=server.url, model="ibisagent")
    policy.respond(grey_observation(width=1024, height=768))
    height, width, _ = sent_image(server.requests[0]).shape
    assert width * height <= 262144
    assert abs(width / height - 1024 / 768) < 0.01


def test_model_name_comes_from_the_server_once_and_settings_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.url.replace("/v1", ""))
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    server.models = ["served-ibis", "other"]
    policy = build_policy("openai")
    policy.respond(grey_observation())
    policy.respond(grey_observation())
    assert [r["method"] + " " + r["path"] for r in server.requests] == [
        "GET /v1/models", "POST /v1/chat/completions", "POST /v1/chat/completions",
    ]
    assert all(r["body"]["model"] == "served-ibis" for r in server.posts())
    assert all(r["headers"]["Authorization"] == "Bearer from-env" for r in server.requests)
    assert "served-ibis" in policy.description


def test_episode_turns_the_servers_answer_into_clicks_and_stops_on_terminate(server):
    policy = build_policy("openai", url=server.url, model="ibisagent")
    observation = grey_observation()
    episode = Episode(observation.image, build_segmenter("graphcut"), policy, observation.request, max_steps=5)
    proposal = episode.propose()
    assert proposal.click.x == 25 and proposal.click.y == 40 and proposal.click.positive
    step = episode.apply([proposal.click])
    assert step.mask_pixels > 0 and episode.mask[40, 25]
    server.reply_text = "<think>\nDone.\n</think>\n<action>\nTerminate\n</action>\n<answer>\nYes, a liver.\n</answer>"
    result = episode.run()
    assert result.stop_reason == STOP_TERMINATED and result.answer == "Yes, a liver."
    assert "refinement" in server.posts()[-1]["body"]["messages"][-1]["content"][1]["text"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_names_the_url_and_says_to_start_the_server():
    url = f"http://127.0.0.1:{free_port()}/v1"
    policy = build_policy("openai", url=url, model="ibisagent", timeout=5)
    with pytest.raises(ServerUnreachable, match="vllm serve") as caught:
        policy.respond(grey_observation())
    assert url in str(caught.value)
    assert isinstance(caught.value, PolicyError) and isinstance(caught.value, RuntimeError)


def test_slow_server_gives_a_timeout(server):
    server.mode = "slow"
    policy = build_policy("openai", url=server.url, model="ibisagent", timeout=0.3)
    with pytest.raises(ServerTimeout, match="0.3 s"):  # the server never answers until released
        policy.respond(grey_observation())
    assert len(server.posts()) == 1 and not server.answer_slow.is_set()


@pytest.mark.parametrize(
    "mode, status, words",
    [("unauthorised", 401, "Incorrect API key provided."), ("crash", 500, "CUDA out of memory")],
)
def test_http_errors_carry_status_and_the_servers_message(server, mode, status, words):
    server.mode = mode
    policy = build_policy("openai", url=server.url, model="ibisagent")
    with pytest.raises(ServerRejected) as caught:
        policy.respond(grey_observation())
    assert caught.value.status == status
    assert f"HTTP {status}" in str(caught.value) and words in str(caught.value)


@pytest.mark.parametrize("mode, words", [("html", "did not answer with JSON"), ("no-choices", "no choices")])
def test_replies_that_are_not_chat_completions_are_reported(server, mode, words):
    server.mode = mode
    policy = build_policy("openai", url=server.url, model="ibisagent")
    with pytest.raises(BadServerReply, match=words):
        policy.respond(grey_observation())


def test_a_server_with_no_models_asks_for_a_model_name(server):
    server.models = []
    policy = build_policy("openai", url=server.url)
    with pytest.raises(BadServerReply, match="model="):
        policy.respond(grey_observation())


def test_missing_url_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        build_policy("openai")


@pytest.mark.parametrize(
    "given",
    ["http://gpu:8000", "http://gpu:8000/", "http://gpu:8000/v1", "http://gpu:8000/v1/", "http://gpu:8000/v1/chat/completions"],
)
def test_url_forms_all_reach_v1(given):
    assert api_base(given) == "http://gpu:8000/v1"


def test_url_without_scheme_is_refused():
    with pytest.raises(ValueError, match="http://"):
        api_base("gpu:8000")
