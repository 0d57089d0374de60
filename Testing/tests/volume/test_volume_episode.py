"""The volume episode: built on the 2D episode, one loop per slice, the end rules and the fronts,
review slice by slice, and the 2D tools used unchanged."""

import numpy as np
import pytest

from volume_doubles import DiskTool, ScriptedPolicy, blob_volume, point, rgb, terminate

from ibisagent.episode import Episode
from ibisagent.evaluate3d import copy_baseline, start_slice, volume_of
from ibisagent.metrics import dice
from ibisagent.session import STOP_STEP_LIMIT, STOP_TERMINATED
from ibisagent.volume_episode import (
    END_CANCELLED, END_FADED, END_LIMIT, END_NO_TARGET, END_RANGE, END_SHRANK, END_USER, END_VANISHED,
    END_WORKED,
    VolumeEpisode, says_no_target,
)


@pytest.fixture(scope="module")
def blob():
    grey, truth = blob_volume()
    return rgb(grey), truth


def _episode(blob, policy=None, tool=None, **options):
    slices, truth = blob
    start = start_slice(truth)
    policy = policy or ScriptedPolicy([terminate()])
    return VolumeEpisode(slices, tool or DiskTool(), policy, {start: truth[start]}, **options)


def test_propagation_alone_follows_the_target_and_ends_where_it_fades(blob):
    slices, truth = blob
    tool = DiskTool()
    episode = _episode(blob, tool=tool, steps_per_slice=0)
    result = episode.run()
    predicted = volume_of(result, truth.shape)
    assert dice(predicted, truth) > copy_baseline(truth, within_truth=True) + 0.1
    assert dice(predicted, truth) > 0.9
    assert {(e.direction, e.reason) for e in result.ends} == {("up", END_FADED), ("down", END_FADED)}
    assert all(not truth[e.at].any() or truth[e.at].sum() < 0.5 * truth[start_slice(truth)].sum() for e in result.ends)
    assert not predicted[[0, 1, 13, 14]].any()  # never beyond the target's own slices
    assert tool.embed_calls == 0 and result.clicks == 0  # no click asked for, no embedding made
    faded = [o for o in result.outcomes if o.end == END_FADED]
    assert len(faded) == 2 and not any(o.kept for o in faded)
    assert all(o.index not in result.masks for o in faded)
    assert all(o.start_pixels > 0 for o in faded)  # the faded start is shown, not an empty slice


def test_a_faded_slice_that_is_edited_is_kept(blob):
    """Where the carrier says the target has faded, a slice the agent (or the user) changed is
    their decision: it is kept and the front goes on from it; an unchanged one ends the front."""
    slices, truth = blob
    alone = _episode(blob, direction="up", steps_per_slice=0).run()
    faded_at = next(o.index for o in alone.outcomes if o.end == END_FADED)

    def policy(index):  # one positive click at the image centre on every slice
        return ScriptedPolicy([point(0.5, 0.5), terminate()])

    edited = _episode(blob, policy, direction="up", steps_per_slice=1, last=faded_at).run()
    last = edited.outcomes[-1]
    assert last.index == faded_at and last.kept and last.clicks == 1 and last.end is None
    assert edited.ends[0].reason == END_RANGE and faded_at in edited.masks
    # The same slice reviewed by hand: accepting the faded start unchanged ends the front there.
    review = _episode(blob, direction="up", steps_per_slice=0, last=faded_at)
    while review.next_slice() is not None:
        outcome = review.finish_slice()
    assert outcome.index == faded_at and outcome.end == END_FADED and faded_at not in review.masks


def test_each_slice_runs_the_one_loop_within_its_step_limit(blob):
    slices, truth = blob
    policies = {}

    def policy(index):
        policies[index] = ScriptedPolicy([point(0.1, 0.1), point(0.9, 0.9, False), terminate()])
        return policies[index]

    tool = DiskTool()
    episode = _episode(blob, policy, tool, steps_per_slice=2, max_slices=2)
    first = episode.next_slice()
    assert isinstance(first, Episode) and episode.current is first
    assert np.array_equal(first.initial_mask, first.mask) and first.mask.any()  # continue my mask: the carried start
    assert episode.run_slice() == STOP_STEP_LIMIT and len(first.steps) == 2
    outcome = episode.finish_slice()
    assert outcome.kept and outcome.start_pixels == int(first.initial_mask.sum())
    assert outcome.mask_pixels == int(first.mask.sum()) and len(outcome.steps) == 2
    result = episode.run()
    assert [len(o.steps) for o in result.outcomes] == [2, 2, 2, 2]
    assert {e.reason for e in result.ends} == {END_LIMIT}
    assert result.clicks == 8 and tool.embed_calls == 4  # embedded once per slice clicked on
    assert set(policies) == {o.index for o in result.outcomes}
    for outcome in result.outcomes:
        assert np.array_equal(result.masks[outcome.index].sum(), outcome.mask_pixels)


def test_the_agent_saying_no_target_ends_the_front_and_leaves_the_slice(blob):
    slices, truth = blob
    start = start_slice(truth)

    def policy(index):
        return ScriptedPolicy([terminate("There is no target on this slice.")] if index == start + 2 else [terminate()])

    result = _episode(blob, policy, direction="up", steps_per_slice=1).run()
    assert [o.index for o in result.outcomes] == [start + 1, start + 2]
    last = result.outcomes[-1]
    assert last.end == END_NO_TARGET and not last.kept and last.stop_reason == STOP_TERMINATED
    assert sorted(result.masks) == [start, start + 1]
    assert result.ends[0].reason == END_NO_TARGET and result.ends[0].at == start + 2


def test_a_mask_that_shrinks_below_the_fraction_ends_the_front(blob):
    slices, truth = blob
    start = start_slice(truth)
    # The agent erases most of the carried mask on the next slice with one negative click.
    rows, cols = truth.shape[1:]
    ys, xs = np.nonzero(truth[start + 1])
    erase = point((xs.mean() + 0.5) / cols, (ys.mean() + 0.5) / rows, positive=False)
    result = _episode(blob, ScriptedPolicy([erase, terminate()]), DiskTool(radius=40), direction="up",
                      steps_per_slice=1, min_fraction=0.5).run()
    assert result.outcomes[0].end in (END_SHRANK, END_VANISHED) and not result.outcomes[0].kept
    assert sorted(result.masks) == [start]


def test_fronts_stop_at_the_range_and_at_slices_already_worked(blob):
    slices, truth = blob
    starts = {5: truth[5], 9: truth[9]}
    episode = VolumeEpisode(slices, DiskTool(), ScriptedPolicy([terminate()]), starts, first=4, last=11,
                            steps_per_slice=0)
    result = episode.run()
    ends = {(e.start, e.direction): (e.reason, e.at) for e in result.ends}
    assert ends[(5, "up")] == (END_WORKED, 9)  # up from 5 reached the start at 9
    assert ends[(9, "up")] == (END_RANGE, 12)
    assert ends[(5, "down")] == (END_RANGE, 3)
    assert ends[(9, "down")] == (END_WORKED, 8)  # slice 8 was already done by the first front
    assert sorted(result.masks) == list(range(4, 12))
    assert np.array_equal(result.masks[5], truth[5]) and np.array_equal(result.masks[9], truth[9])


def test_review_slice_by_slice_with_undo_hand_edit_and_stop_here(blob):
    slices, truth = blob
    start = start_slice(truth)
    rows, cols = truth.shape[1:]
    episode = _episode(blob, ScriptedPolicy([point(0.05, 0.05)]), direction="up", steps_per_slice=3)
    current = episode.next_slice()
    proposal = current.propose()
    current.apply([proposal.click])
    assert current.mask[proposal.click.y, proposal.click.x]
    assert current.undo() and np.array_equal(current.mask, current.initial_mask)
    edited = current.mask.copy()
    edited[:, : cols // 2] = False  # the user's hand edit is what the slice keeps
    outcome = episode.finish_slice(edited)
    assert outcome.kept and np.array_equal(episode.masks[start + 1], edited)
    second = episode.next_slice()
    assert episode.current_index == start + 2 and not second.initial_mask[:, : cols // 4].any()  # carried from the edit
    stopped = episode.stop_here()
    assert stopped.end == END_USER and not stopped.kept
    assert episode.next_slice() is None and episode.done
    assert sorted(episode.result().masks) == [start, start + 1]


def test_cancel_keeps_the_slices_done_so_far(blob):
    calls = []
    result = _episode(blob, steps_per_slice=0).run(should_stop=lambda: len(calls) >= 3, on_slice=calls.append)
    assert len(result.outcomes) == 3 and all(o.kept for o in result.outcomes)
    assert {e.reason for e in result.ends} == {END_CANCELLED} and len(result.masks) == 4


def test_prior_propagation_sends_the_neighbour_mask_to_the_2d_tool_unchanged(blob):
    slices, truth = blob
    tool = DiskTool()
    start = start_slice(truth)
    result = _episode(blob, tool=tool, direction="up", max_slices=2, steps_per_slice=0, propagation="prior").run()
    assert [clicks for clicks, _ in tool.calls] == [(), ()]  # the tool's "continue my mask" call, no click
    assert np.array_equal(tool.calls[0][1], truth[start])
    assert np.array_equal(result.masks[start + 2], truth[start])  # a tool that keeps its prior copies it
    assert tool.embed_calls == 2


def test_bad_requests_are_clear_errors(blob):
    slices, truth = blob
    tool, policy = DiskTool(), ScriptedPolicy([terminate()])
    with pytest.raises(ValueError, match="outside the range"):
        VolumeEpisode(slices, tool, policy, {2: truth[7]}, first=4)
    with pytest.raises(ValueError, match="empty mask"):
        VolumeEpisode(slices, tool, policy, {0: truth[0]})
    with pytest.raises(ValueError, match="Unknown direction"):
        VolumeEpisode(slices, tool, policy, {7: truth[7]}, direction="sideways")
    with pytest.raises(ValueError, match="not inside"):
        VolumeEpisode(slices, tool, policy, {7: truth[7]}, first=3, last=40)
    with pytest.raises(ValueError, match="cannot propagate by itself"):
        VolumeEpisode(slices, tool, policy, {7: truth[7]}, propagation="own")
    with pytest.raises(ValueError, match="Unknown propagation"):
        VolumeEpisode(slices, tool, policy, {7: truth[7]}, propagation="magic")
    with pytest.raises(ValueError, match="has shape"):
        VolumeEpisode(slices, tool, policy, {7: truth[7][:, :5]})
    episode = VolumeEpisode(slices, tool, policy, {7: truth[7]})
    with pytest.raises(RuntimeError, match="No slice is open"):
        episode.finish_slice()
    episode.next_slice()
    with pytest.raises(RuntimeError, match="still open"):
        episode.next_slice()


@pytest.mark.parametrize("answer, expected", [
    ("no target", True), ("There is no lesion on this slice.", True), ("The tumour is not visible here.", True),
    ("absent", True), ("Done: the mask follows the target.", False), (None, False), ("", False),
])
def test_says_no_target(answer, expected):
    assert says_no_target(answer) is expected


def test_sessions_can_come_from_elsewhere_and_are_closed_when_their_slice_is_done(blob):
    """The hook a remote agent uses: the volume episode carries the masks, someone else's
    session refines each slice (here an in-process Episode standing in for a RemoteSession)."""
    slices, truth = blob
    start = start_slice(truth)
    opened, closed = [], []

    class Closing(Episode):
        def close(self):
            closed.append(self)

    def open_session(index, image, start_mask, max_steps):
        tool = DiskTool()
        session = Closing(image, tool, ScriptedPolicy([point(0.5, 0.5), terminate()]), initial_mask=start_mask,
                          max_steps=max_steps)
        opened.append((index, start_mask.copy(), max_steps))
        return session

    result = VolumeEpisode(slices, None, None, {start: truth[start]}, direction="down", max_slices=3,
                           steps_per_slice=1, open_session=open_session).run()
    assert [index for index, _, _ in opened] == [start - 1, start - 2, start - 3]
    assert all(limit == 1 for _, _, limit in opened) and len(closed) == 3
    assert all(len(o.steps) == 1 for o in result.outcomes)
    assert dice(opened[0][1], truth[start - 1]) > 0.9  # the carried start reached the session
    with pytest.raises(ValueError, match="needs the segmentation tool"):
        VolumeEpisode(slices, None, None, {start: truth[start]}, propagation="prior", open_session=open_session)
