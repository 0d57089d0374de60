"""The 'sam2' tool with the packaged SAM2.1 Hiera-T config at a small image size and random
weights saved to a temporary checkpoint (sam2's own {"model": state_dict} format)."""

import numpy as np
import pytest

from ibisagent.clicks import USER, Click
from ibisagent.episode import Episode
from ibisagent.segmenters import build_segmenter

pytest.importorskip("sam2", reason="the 'sam2' tool needs the 'sam2' extra")


@pytest.fixture
def sam2(tiny_sam2_checkpoint, tiny_sam2_size):
    return build_segmenter("sam2", checkpoint=tiny_sam2_checkpoint, device="cpu", image_size=tiny_sam2_size)


def test_three_click_episode_embeds_once_and_feeds_back_logits(sam2, blob_image, count_calls, tiny_sam2_size):
    image, _ = blob_image
    encoder = count_calls(sam2.predictor.model.image_encoder)
    prompts = count_calls(sam2.predictor.model.sam_prompt_encoder)
    episode = Episode(image, sam2)
    states = []
    for click in (Click(30, 24, True, USER), Click(5, 5, False, USER), Click(40, 20, True, USER)):
        episode.apply([click])
        states.append(episode.prior_state)
    assert len(encoder.calls) == 1
    low_res = tiny_sam2_size // 4
    assert all(s.shape == (1, low_res, low_res) and s.dtype == np.float32 for s in states)
    assert prompts.calls[0][1]["masks"] is None
    for step in (1, 2):
        assert np.array_equal(prompts.calls[step][1]["masks"][0].numpy(), states[step - 1])
    points, labels = prompts.calls[2][1]["points"]
    assert labels[0].tolist() == [1, 0, 1]
    assert points.shape == (1, 3, 2)
    assert episode.mask.shape == (48, 64) and episode.mask.dtype == bool


def test_continue_my_mask_stretches_the_mask_into_the_low_res_frame(sam2, blob_image, count_calls, tiny_sam2_size):
    image, disc = blob_image
    sam2.set_image(image)
    prompts = count_calls(sam2.predictor.model.sam_prompt_encoder)
    result = sam2.predict([], prior_mask=disc)
    kwargs = prompts.calls[0][1]
    labels = kwargs["points"][1]
    assert labels[0].tolist() == [2, 3, 1]  # sam2 sends the box as two corner points first
    logits = kwargs["masks"][0, 0].numpy()
    size = tiny_sam2_size // 4
    assert logits.shape == (size, size)
    # sam2 stretches (no padding): the disc centre (24/48, 30/64) lands at the same fraction.
    assert logits[int(size * 24 / 48), int(size * 30 / 64)] > 0 and logits[0, 0] < 0 and logits[-1, -1] < 0
    assert result.mask.shape == disc.shape and result.state.shape == (1, size, size)


def test_bad_inputs_are_clear_errors(tmp_path, tiny_sam2_checkpoint):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_segmenter("sam2", checkpoint=tmp_path / "missing.pt", device="cpu")
    with pytest.raises(ValueError, match="multiple of 64"):
        build_segmenter("sam2", checkpoint=tiny_sam2_checkpoint, device="cpu", image_size=300)
    with pytest.raises(ValueError, match="does not fit this model"):
        build_segmenter("sam2", config="configs/sam2.1/sam2.1_hiera_s.yaml", checkpoint=tiny_sam2_checkpoint,
                        device="cpu", image_size=256)
