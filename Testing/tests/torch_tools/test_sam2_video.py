"""The sam2 tool's own propagation: its video predictor over the slices, with the agent's clicks
added on the slice they belong to. A randomly initialised SAM2.1 Hiera-T at a small image size,
as in test_sam2.py (random weights make arbitrary masks, so the test checks what reaches the
model and what is kept, not the masks' shapes)."""

import numpy as np
import pytest

from ibisagent.clicks import USER, Click
from ibisagent.segmenters import build_segmenter
from ibisagent.volume_episode import VolumeEpisode

pytest.importorskip("sam2", reason="the 'sam2' tool needs the 'sam2' extra")


@pytest.fixture
def sam2(tiny_sam2_checkpoint, tiny_sam2_size):
    return build_segmenter("sam2", checkpoint=tiny_sam2_checkpoint, device="cpu", image_size=tiny_sam2_size)


def _volume(slices=3):
    yy, xx = np.mgrid[:48, :64]
    truth = np.stack([(yy - 24) ** 2 + (xx - 30) ** 2 <= (12 - 2 * abs(k - 1)) ** 2 for k in range(slices)])
    grey = np.where(truth, 200, 40).astype(np.uint8)
    return [np.repeat(g[:, :, None], 3, axis=2) for g in grey], truth


def test_slices_are_tracked_from_the_memory_and_clicks_join_it(sam2, count_calls, tiny_sam2_size):
    from ibisagent.segmenters.sam2_video import SAM2VideoStack

    slices, truth = _volume()
    model = sam2.predictor.model
    memory = count_calls(model.memory_attention)
    encoder = count_calls(model.memory_encoder)
    prompts = count_calls(model.sam_prompt_encoder)
    episode = VolumeEpisode(slices, sam2, policy=None, starts={1: truth[1]}, direction="up", steps_per_slice=2)
    assert isinstance(episode.stack, SAM2VideoStack)
    assert len(encoder.calls) == 1 and len(memory.calls) == 0  # the start slice entered the memory
    outputs = episode.stack.state["output_dict_per_obj"][0]
    assert list(outputs["cond_frame_outputs"]) == [1]

    current = episode.next_slice()
    assert len(memory.calls) == 1  # slice 2 was tracked from the memory of slice 1
    assert current.mask.shape == truth[2].shape and current.mask.dtype == bool
    assert np.array_equal(current.initial_mask, current.mask)

    click = Click(30, 24, True, USER)
    first = current.apply([click]).mask_pixels
    after_first = current.mask.copy()
    kwargs = prompts.calls[-1][1]
    assert kwargs["points"][1][0].tolist() == [1]  # the click, on its own slice
    assert kwargs["masks"] is not None  # with the carried mask as the mask prompt
    assert len(memory.calls) == 2  # the click's prediction also looked at the memory
    low_res = tiny_sam2_size // 4
    assert current.prior_state.shape == (1, low_res, low_res) and current.prior_state.dtype == np.float32
    assert current.undo()
    assert current.apply([click]).mask_pixels == first and np.array_equal(current.mask, after_first)  # nothing was kept
    second = current.apply([Click(5, 5, False, USER)])
    assert prompts.calls[-1][1]["points"][1][0].tolist() == [1, 0]  # every click re-sent
    assert np.array_equal(prompts.calls[-1][1]["masks"][0].numpy(), after_first_state(current))
    assert second.index == 2

    encoded = len(encoder.calls)
    outcome = episode.finish_slice(truth[2])  # the slice keeps the user's mask, and so does the memory
    assert outcome.kept and len(encoder.calls) == encoded + 1
    assert list(outputs["non_cond_frame_outputs"]) == [2]
    assert episode.next_slice() is None and episode.ends[0].reason == "range-end"
    episode.close()


def after_first_state(episode):
    """The low-res logits the second apply was given: the state after the first step."""
    return episode._history[-1].prior_state


def test_two_dimensional_steps_still_use_the_image_predictor(sam2, blob_image, count_calls):
    image, _ = blob_image
    memory = count_calls(sam2.predictor.model.memory_attention)
    sam2.set_image(image)
    result = sam2.predict([Click(30, 24, True, USER)])
    assert result.mask.shape == image.shape[:2] and len(memory.calls) == 0
    assert sam2.can_propagate and not build_segmenter("graphcut").can_propagate
