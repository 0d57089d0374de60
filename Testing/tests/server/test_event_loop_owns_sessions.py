"""The session table and the worker session counts have no lock because only the event loop
thread touches them. A request-level piece that reads or changes them on a pool thread (for
instance a plain-``def`` FastAPI dependency, which FastAPI runs in its thread pool) could end a
session while the reaper is going through the table (``dictionary changed size during
iteration``, and the reaper task dies) or change a worker's count under `WorkerPool.assign`.

Every store operation reads the lease clock, and every ended session goes through
`ServerState.session_ended` (which changes the worker count), so a clock and a wrapper around
that method that note their callers' threads see every touch, on every route that names a
session, without sleeping or timing anything."""

from __future__ import annotations

import threading

import pytest
from ibisagent import protocol
from ibisagent.clicks import Click
from ibisagent.client import AgentClient
from ibisagent.errors import SessionExpiredError
from server_fakes import TOKEN, FakeClock, blob_image, start_fake_server

TTL = 60.0


class ThreadNotingClock(FakeClock):
    """The fake lease clock, noting the name of every thread that reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.readers = set()

    def __call__(self) -> float:
        self.readers.add(threading.current_thread().name)
        return super().__call__()


def test_only_the_event_loop_touches_the_sessions_and_worker_counts():
    clock = ThreadNotingClock()
    enders = set()
    # The reaper never sweeps by itself here, so the expired session is ended by its lookup.
    with start_fake_server(clock=clock, session_ttl_s=TTL, reaper_interval_s=3600, workers=2) as server:
        state = server.app.state.ibis
        session_ended = state.session_ended

        def noting_session_ended(session):
            enders.add(threading.current_thread().name)
            session_ended(session)

        state.session_ended = noting_session_ended
        with AgentClient(server.url, token=TOKEN) as client:
            session = client.open_session(blob_image(), "every route")
            session.apply([session.propose().click])
            session.propose()
            session.skip()
            edited = session.mask.copy()
            edited[:8, :8] = True
            session.replace_mask(edited)
            assert session.undo()
            assert session.state()["session_id"] == session.id
            assert client.call("GET", protocol.SESSION_MASK.replace("{session_id}", session.id))["revision"]
            client.call("POST", protocol.SESSION_RUN.replace("{session_id}", session.id), {"max_steps": 2})
            session.close()

            idle = client.open_session(blob_image(seed=1), "expired by its lookup")
            idle.apply([Click(64, 64, True)])
            clock.advance(TTL + 1)
            with pytest.raises(SessionExpiredError):
                client.call("GET", protocol.SESSION.replace("{session_id}", idle.id))

            client.open_session(blob_image(seed=2), "still open when the server stops")
        loop_thread = server.thread.name  # uvicorn runs its event loop on the thread that runs it
    assert not server.thread.is_alive()
    assert clock.readers == {loop_thread}
    assert enders == {loop_thread}
    assert len(state.store) == 0 and [worker.sessions for worker in state.workers.workers] == [0, 0]

