"""`ibisagent serve --record DIR`: every session on a real server is recorded for training; only
applied steps land in its record, undone ones are removed, and the record is finished exactly once
whichever way the session ends (closed, expired, server stopping). Without the option nothing is
written anywhere."""

from __future__ import annotations

import collections
import os
import signal
import time

import numpy as np
import pytest
from ibisagent import protocol
from ibisagent.cli import main
from ibisagent.clicks import USER, USER_MOVED, Click
from ibisagent.client import AgentClient
from ibisagent.errors import SessionExpiredError
from ibisagent.metrics import iou
from ibisagent.training import records
from ibisagent.training.recorder import SessionRecording
from server_fakes import TOKEN, FakeClock, blob_image, free_port, start_fake_server, start_serve_process

TTL = 60.0


def _records_by_request(folder) -> dict:
    return {records.read_record(path).meta["request"]: records.read_record(path) for path in records.find_records(folder)}


def _wait_until(condition, what: str) -> None:
    """Wait for work the server does after answering (a record finished on a pool thread)."""
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"the server never {what}")
        time.sleep(0.01)


@pytest.fixture
def finishes(monkeypatch):
    """How often each record (by request) was finished; the real finish still runs."""
    counts = collections.Counter()
    real = SessionRecording.finish

    def counted(self, *args, **kwargs):
        counts[self.recording.meta["request"]] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SessionRecording, "finish", counted)
    return counts


def test_every_session_is_recorded_and_finished_once_however_it_ends(tmp_path, finishes):
    folder = tmp_path / "records"
    clock = FakeClock()
    image = blob_image()
    with start_fake_server(clock=clock, session_ttl_s=TTL, record_dir=str(folder)) as server:
        store = server.app.state.ibis.store
        with AgentClient(server.url, token=TOKEN) as client:
            assert client.info()["records_sessions"]  # a client can tell its user
            # Closed by the client: accepted, edited, skipped and undone steps.
            closed = client.open_session(image, "closed")
            first = closed.propose()
            closed.apply([first.click])                                           # accepted
            second = closed.propose()
            moved = Click(second.click.x + 2, second.click.y, second.click.positive, USER_MOVED)
            closed.apply([moved, Click(10, 10, False, USER)])                     # edited
            closed.propose()
            closed.skip()                                                         # skipped: no trace
            closed.apply([Click(100, 20, True, USER)])                            # the person's own...
            assert closed.undo()                                                  # ...undone
            on_server = store.get(closed.id)
            record = _records_by_request(folder)["closed"]
            assert len(record.steps) == 2 and not record.finished  # written as applied, removed when undone
            assert not os.path.exists(os.path.join(record.folder, records.step_file(3)))
            kept = closed.mask.copy()
            closed.close()
            _wait_until(lambda: _records_by_request(folder)["closed"].finished, "finished the closed session's record")
            assert not on_server.recorded and on_server.finish_record() is None

            # Expired after being idle: finished when the server notices.
            idle = client.open_session(blob_image(seed=1), "expired")
            idle.apply([Click(64, 64, True, USER)])
            clock.advance(TTL + 1)
            with pytest.raises(SessionExpiredError):
                client.call("GET", protocol.SESSION.replace("{session_id}", idle.id))
            _wait_until(lambda: _records_by_request(folder)["expired"].finished, "finished the expired session's record")

            # Still open when the server stops, with steps from the server-side run.
            live = client.open_session(blob_image(seed=2), "live")
            answer = client.call("POST", protocol.SESSION_RUN.replace("{session_id}", live.id), {"max_steps": 3})
            assert answer["steps"]
            assert not _records_by_request(folder)["live"].finished
    assert finishes == {"closed": 1, "expired": 1, "live": 1}

    found = _records_by_request(folder)
    assert all(record.finished and record.meta["source"] == "server" for record in found.values())
    record = found["closed"]
    assert record.meta["policy"] == "bright" and record.meta["segmenter"] == "disk"
    assert np.array_equal(record.image(), image)  # exactly the pixels the server's model was given
    assert [step["decision"] for step in record.steps] == ["accepted", "edited"]
    assert [c["edit"] for c in record.steps[1]["clicks"]] == ["moved", "added"]
    assert record.steps[0]["proposal"]["raw_text"] == first.raw_text
    assert np.array_equal(record.final_mask(), kept)
    for step in record.steps:
        masks = record.step_masks(step["index"])
        assert step["iou_after"] == pytest.approx(iou(masks["mask_after"], kept))
    assert record.steps[-1]["iou_after"] == 1.0
    assert len(found["expired"].steps) == 1 and len(found["live"].steps) == len(answer["steps"])


def test_without_record_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with start_fake_server() as server:
        with AgentClient(server.url, token=TOKEN) as client:
            assert not client.info()["records_sessions"]
            session = client.open_session(blob_image(), "not recorded")
            session.apply([session.propose().click])
            assert not server.app.state.ibis.store.get(session.id).recorded
            session.close()
    assert os.listdir(tmp_path) == []


def test_a_record_folder_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["serve", "--token", TOKEN, "--record", str(tmp_path / "file")]) == 2
    assert "is a file; choose a folder" in capsys.readouterr().err
    assert main(["serve", "--token", TOKEN, "--record", ""]) == 2
    assert "record folder is empty" in capsys.readouterr().err


def test_serve_record_flag_on_the_real_command(tmp_path):
    """The real `ibisagent serve --record DIR` (heuristic policy, sitk tool) in a child process,
    stopped with Ctrl+C: the open session's record is finished on the way out."""
    port = free_port()
    folder = tmp_path / "records"
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path))
    process = start_serve_process(port, env, ["--record", str(folder)])
    try:
        with AgentClient(f"http://127.0.0.1:{port}", token=TOKEN, timeout=60) as client:
            session = client.open_session(blob_image(96, 96, centre=(48, 48), radius=20), "Segment the disk.")
            session.apply([session.propose().click])
            kept = session.mask.copy()
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert f"recording every session for training into {folder}" in output
    (path,) = records.find_records(str(folder))
    record = records.read_record(path)
    assert record.finished and record.meta["policy"] == "heuristic" and record.meta["segmenter"] == "graphcut"
    assert len(record.steps) == 1 and np.array_equal(record.final_mask(), kept)
