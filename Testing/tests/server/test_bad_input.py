"""Every kind of bad input gets a 4xx with a message in the protocol's error shape, and the
client turns each into the typed error a caller can act on."""

from __future__ import annotations

import base64
import json
import socket

import httpx
import numpy as np
import pytest
from ibisagent import protocol
from ibisagent.clicks import Click
from ibisagent.client import AgentClient
from ibisagent.errors import AuthenticationError, BadRequestError, IncompatibleServerError, SessionExpiredError
from ibisagent.image_codec import encode_image
from ibisagent.mask_codec import encode_mask
from server_fakes import TOKEN, blob_image, start_fake_server

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as session:
        yield session


@pytest.fixture(scope="module")
def session_id(http):
    body = {"image": encode_image(blob_image()), "request": "blob"}
    answer = http.post(protocol.SESSIONS, json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()["session_id"]


def _error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["error"]
    assert detail["code"] == code and detail["message"]
    return detail["message"]


def test_token_is_required_except_for_health(server):
    assert httpx.get(server.url + protocol.HEALTH).status_code == 200
    _error(httpx.get(server.url + protocol.INFO), 401, protocol.UNAUTHORIZED)
    _error(httpx.get(server.url + protocol.INFO, headers={"Authorization": "Bearer nope"}), 401,
           protocol.UNAUTHORIZED)
    with AgentClient(server.url, token="wrong") as client, pytest.raises(AuthenticationError, match="(?i)check the token"):
        client.info()


def test_unknown_session_is_410_and_bad_id_400(http, client):
    message = _error(http.post("/v1/sessions/" + "0" * 32 + "/propose"), 410, protocol.SESSION_EXPIRED)
    assert "open a new session" in message
    _error(http.get("/v1/sessions/not-an-id"), 400, protocol.BAD_REQUEST)
    with pytest.raises(SessionExpiredError):
        client.call("GET", "/v1/sessions/" + "f" * 32)


def test_malformed_json_and_wrong_types(http, session_id):
    apply = f"/v1/sessions/{session_id}/apply"
    _error(http.post(apply, content=b"{not json", headers={"Content-Type": "application/json"}), 400,
           protocol.BAD_REQUEST)
    _error(http.post(apply, json={"clicks": [{"x": 1.5, "y": 2, "positive": True}]}), 400, protocol.BAD_REQUEST)
    _error(http.post(apply, json={"clicks": [{"x": "1", "y": 2, "positive": True}]}), 400, protocol.BAD_REQUEST)
    _error(http.post(apply, json={"clicks": []}), 400, protocol.BAD_REQUEST)
    nan = b'{"clicks": [{"x": NaN, "y": 2, "positive": true}]}'
    message = _error(http.post(apply, content=nan, headers={"Content-Type": "application/json"}), 400,
                     protocol.BAD_REQUEST)
    assert "clicks.0.x" in message


def test_clicks_outside_the_image(http, session_id, client):
    message = _error(http.post(f"/v1/sessions/{session_id}/apply",
                               json={"clicks": [{"x": 500, "y": 2, "positive": True}]}), 400, protocol.BAD_REQUEST)
    assert "outside" in message
    session = client.open_session(blob_image())
    before = session.mask.copy()
    with pytest.raises(BadRequestError, match="outside"):
        session.apply([Click(128, 0, True)])
    assert np.array_equal(session.mask, before) and session.steps == []


def test_wrong_image_dtype_shape_and_mask(http):
    image = encode_image(blob_image())
    _error(http.post(protocol.SESSIONS, json={"image": dict(image, dtype="float32")}), 400, protocol.BAD_REQUEST)
    _error(http.post(protocol.SESSIONS, json={"image": dict(image, channels=1)}), 400, protocol.BAD_REQUEST)
    _error(http.post(protocol.SESSIONS, json={"image": dict(image, rows=64)}), 400, protocol.BAD_REQUEST)
    small_mask = base64.b64encode(encode_mask(np.zeros((4, 4), bool))).decode()
    message = _error(http.post(protocol.SESSIONS, json={"image": image, "mask": small_mask}), 400,
                     protocol.BAD_REQUEST)
    assert "shape" in message
    _error(http.post(protocol.SESSIONS, json={"image": image, "mask": "AAAA"}), 400, protocol.BAD_REQUEST)
    _error(http.post(protocol.SESSIONS, json={"image": image, "surprise": 1}), 400, protocol.BAD_REQUEST)


def test_client_refuses_bad_arrays_before_sending(client):
    with pytest.raises(BadRequestError, match="RGB uint8"):
        client.open_session(blob_image().astype(np.float32))
    mask = np.zeros((128, 128))
    mask[0, 0] = np.nan
    with pytest.raises(BadRequestError, match="NaN"):
        client.open_session(blob_image(), mask=mask)
    with pytest.raises(BadRequestError, match="shape"):
        client.open_session(blob_image(), mask=np.zeros((3, 3), bool))


def test_oversized_bodies_are_refused():
    with start_fake_server(max_body_bytes=64 * 1024) as small:
        url = small.url + protocol.SESSIONS
        big = {"image": encode_image(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))}
        _error(httpx.post(url, json=big, headers=AUTH), 413, protocol.PAYLOAD_TOO_LARGE)

        def chunks():
            payload = json.dumps(big).encode()
            for start in range(0, len(payload), 8192):
                yield payload[start:start + 8192]

        chunked = httpx.post(url, content=chunks(), headers=dict(AUTH, **{"Content-Type": "application/json"}))
        _error(chunked, 413, protocol.PAYLOAD_TOO_LARGE)
        assert httpx.get(small.url + protocol.HEALTH).status_code == 200


def test_other_api_major_is_refused_both_ways(server, http):
    headers = {protocol.CLIENT_API_VERSION: f"{protocol.API_MAJOR + 1}.0"}
    _error(http.get(protocol.INFO, headers=headers), 426, protocol.INCOMPATIBLE_CLIENT)
    _error(http.get(protocol.INFO, headers={protocol.CLIENT_API_VERSION: "x"}), 400, protocol.BAD_REQUEST)
    with AgentClient(server.url, token=TOKEN) as client, pytest.raises(IncompatibleServerError):
        client.call("GET", "/v9/sessions")


def test_unknown_path_and_method(http):
    _error(http.get("/nowhere"), 404, protocol.NOT_FOUND)
    _error(http.put(protocol.INFO), 405, protocol.METHOD_NOT_ALLOWED)


def test_server_unavailable_says_how_to_start_it():
    from ibisagent.errors import ServerUnavailableError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with AgentClient(f"http://127.0.0.1:{port}", token=TOKEN) as client:
        with pytest.raises(ServerUnavailableError, match="ibisagent serve"):
            client.info()
        client.close()
