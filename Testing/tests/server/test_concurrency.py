"""Many clients at once: no mix-ups between sessions (one model worker, and two workers with a
session pinned to each), health never waits for the model, and a full model queue answers 503
at once. Model calls are held open with the fake tool's `hold`, never with sleeps."""

from __future__ import annotations

import base64
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np
import pytest
from ibisagent.clicks import Click
from ibisagent.client import AgentClient
from ibisagent.errors import ServerBusyError
from ibisagent.episode import Episode
from ibisagent.mask_codec import decode_mask
from server_fakes import TOKEN, BrightPolicy, DiskSegmenter, blob_image, start_fake_server

CLIENTS = 8
STEPS = 5


def _interactive_episode(url: str, index: int, all_open: Optional[threading.Barrier] = None) -> np.ndarray:
    image = blob_image(centre=(30 + 8 * index, 90 - 7 * index), radius=14 + index, seed=index)
    with AgentClient(url, token=TOKEN, timeout=30) as client:
        session = client.open_session(image, f"client {index}")
        if all_open is not None:
            all_open.wait(30)  # every session is open (and pinned) before any closes
        for _ in range(STEPS):
            proposal = session.propose()
            if proposal.click is None:
                break
            session.apply([proposal.click])
        on_server = client.call("GET", f"/v1/sessions/{session.id}/mask")
        assert np.array_equal(session.mask, decode_mask(base64.b64decode(on_server["data"])))
        session.close()
        return session.mask


def _expected(index: int) -> np.ndarray:
    image = blob_image(centre=(30 + 8 * index, 90 - 7 * index), radius=14 + index, seed=index)
    episode = Episode(image, DiskSegmenter(), BrightPolicy(), max_steps=STEPS)
    for _ in range(STEPS):
        proposal = episode.propose()
        if proposal.click is None:
            break
        episode.apply([proposal.click])
    return episode.mask


def test_eight_concurrent_clients_get_their_own_results(server):
    with ThreadPoolExecutor(CLIENTS) as pool:
        masks = list(pool.map(lambda i: _interactive_episode(server.url, i), range(CLIENTS)))
    for index, mask in enumerate(masks):
        assert np.array_equal(mask, _expected(index)), f"client {index} got someone else's mask"
    assert len({m.tobytes() for m in masks}) == CLIENTS


def test_eight_concurrent_clients_on_two_workers_get_their_own_results():
    """The tool sleeps a little so calls on the two workers really overlap. All sessions are
    open before any closes, so the fewest-sessions rule splits them 4/4."""
    all_open = threading.Barrier(CLIENTS)
    with start_fake_server(delay_s=0.01, workers=2) as two:
        with ThreadPoolExecutor(CLIENTS) as pool:
            masks = list(pool.map(lambda i: _interactive_episode(two.url, i, all_open), range(CLIENTS)))
        tools = [worker.engine.segmenter for worker in two.app.state.ibis.workers.workers]
    for index, mask in enumerate(masks):
        assert np.array_equal(mask, _expected(index)), f"client {index} got someone else's mask"
    assert sorted(tool.embeddings for tool in tools) == [CLIENTS // 2, CLIENTS // 2]
    assert all(len(tool.threads) == 1 for tool in tools) and tools[0].threads != tools[1].threads


def test_health_answers_during_a_long_model_call_and_full_queue_is_503():
    with start_fake_server(max_queue=1, retry_after_s=3) as slow:
        tool = slow.app.state.ibis.workers.engine.segmenter
        with AgentClient(slow.url, token=TOKEN, timeout=30) as first, AgentClient(slow.url, token=TOKEN) as other:
            session = first.open_session(blob_image())
            tool.hold()
            clicking = threading.Thread(target=session.apply, args=([Click(64, 64, True)],))
            clicking.start()
            try:
                assert tool.started.wait(30)  # the model call is running, and stays so until released
                assert other.ping()
                assert other.info()["segmenter"] == "disk"
                with pytest.raises(ServerBusyError) as busy:  # the held call fills the queue of one
                    other.call("POST", f"/v1/sessions/{session.id}/propose")
                assert busy.value.retry_after == 3
                assert clicking.is_alive()  # all of the above answered while the model was busy
            finally:
                tool.release()
                clicking.join(30)
            assert len(session.steps) == 1
            assert other.call("GET", f"/v1/sessions/{session.id}")["revision"] == session.revision
