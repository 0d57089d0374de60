"""Several model workers: how many `ibisagent serve` starts, how sessions are spread over them,
that a session never leaves its worker (one embedding, one thread per engine), and that one
busy worker neither blocks the other nor hides the 503 for its own full queue."""

from __future__ import annotations

import os
import threading

import pytest
from ibisagent.clicks import Click
from ibisagent.client import AgentClient
from ibisagent.errors import ServerBusyError
from ibisagent.engine import EngineSpec
from ibisagent.server.worker import default_workers
from server_fakes import TOKEN, blob_image, start_fake_server


def test_default_workers_one_for_gpu_models_two_cores_for_cpu_engines():
    cores = min(2, os.cpu_count() or 1)
    assert default_workers(EngineSpec("graphcut", policy="heuristic")) == cores
    assert default_workers(EngineSpec("growcut", policy="openai")) == cores
    assert default_workers(EngineSpec("graphcut", policy="qwen")) == 1
    assert default_workers(EngineSpec("sam2", policy="heuristic")) == 1
    assert default_workers(EngineSpec("litemedsam", policy="heuristic")) == 1


def _pool(server):
    return server.app.state.ibis.workers


def test_sessions_spread_over_workers_and_stay_on_theirs():
    with start_fake_server(workers=2) as two, AgentClient(two.url, token=TOKEN, timeout=10) as client:
        assert client.info()["limits"]["workers"] == 2
        sessions = [client.open_session(blob_image(seed=i), f"session {i}") for i in range(4)]
        workers = _pool(two).workers
        assert [w.sessions for w in workers] == [2, 2]
        for _ in range(3):  # interleaved, so each tool switches between its two images
            for session in sessions:
                proposal = session.propose()
                if proposal.click is not None:
                    session.apply([proposal.click])
        tools = [w.engine.segmenter for w in workers]
        assert [t.embeddings for t in tools] == [2, 2], "an embedding was recomputed"
        assert all(len(t.threads) == 1 for t in tools) and tools[0].threads != tools[1].threads
        for session in sessions[:3]:
            session.close()
        assert sorted(w.sessions for w in workers) == [0, 1]
        client.open_session(blob_image(), "fills the emptier worker")
        assert [w.sessions for w in workers] == [1, 1]


def test_one_busy_worker_does_not_block_the_other_and_its_full_queue_is_503():
    with start_fake_server(workers=2, max_queue=1, retry_after_s=3) as two:
        with AgentClient(two.url, token=TOKEN, timeout=30) as first, AgentClient(two.url, token=TOKEN) as other:
            slow = first.open_session(blob_image(seed=1))  # pinned to worker 0 (fewest sessions, lowest index)
            free = other.open_session(blob_image(seed=2))
            workers = _pool(two).workers
            assert [w.sessions for w in workers] == [1, 1]
            tool = workers[0].engine.segmenter
            tool.hold()
            clicking = threading.Thread(target=slow.apply, args=([Click(64, 64, True)],))
            clicking.start()
            try:
                assert tool.started.wait(30)
                assert other.ping()
                free.propose()  # its own worker is idle: answered while worker 0 is held
                free.apply([Click(10, 10, True)])
                with pytest.raises(ServerBusyError) as busy:
                    other.call("POST", f"/v1/sessions/{slow.id}/propose")
                assert busy.value.retry_after == 3
                assert clicking.is_alive()
            finally:
                tool.release()
                clicking.join(30)
            assert len(slow.steps) == 1 and len(free.steps) == 1
