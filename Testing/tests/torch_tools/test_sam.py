"""The 'sam' tool (SAM / MedSAM via segment-anything) with a tiny random ViT loaded from a
temporary checkpoint through the same code path as a user's checkpoint."""

import numpy as np
import pytest

from ibisagent.clicks import Click
from ibisagent.segmenters import build_segmenter

pytest.importorskip("segment_anything", reason="the 'sam' tool needs the 'sam' extra")


@pytest.fixture
def sam(tiny_sam_checkpoint, tiny_sam_encoder):
    return build_segmenter("sam", checkpoint=tiny_sam_checkpoint, device="cpu", encoder=tiny_sam_encoder)


def test_embeds_once_and_returns_shapes(sam, blob_image, count_calls):
    image, _ = blob_image
    encoder = count_calls(sam.predictor.model.image_encoder)
    sam.set_image(image)
    clicks = [Click(30, 24, True)]
    first = sam.predict(clicks)
    second = sam.predict(clicks + [Click(5, 5, False)], first.mask, first.state)
    assert len(encoder.calls) == 1
    for prediction in (first, second):
        assert prediction.mask.shape == (48, 64) and prediction.mask.dtype == bool
        assert prediction.state.shape == (1, 256, 256) and prediction.state.dtype == np.float32
        assert np.isfinite(prediction.score)


def test_all_clicks_and_previous_logits_reach_the_model(sam, blob_image, count_calls):
    image, _ = blob_image
    sam.set_image(image)
    prompts = count_calls(sam.predictor.model.prompt_encoder)
    first = sam.predict([Click(30, 24, True)])
    clicks = [Click(30, 24, True), Click(5, 5, False), Click(40, 20, True)]
    sam.predict(clicks, first.mask, first.state)
    points, labels = prompts.calls[-1][1]["points"]
    assert labels[0].tolist() == [1, 0, 1]
    scale = 1024 / 64  # longest side 64 -> 1024
    assert np.allclose(points[0].numpy(), [[c.x * scale, c.y * scale] for c in clicks])
    masks = prompts.calls[-1][1]["masks"]
    assert np.array_equal(masks[0].numpy(), first.state)
    assert prompts.calls[0][1]["masks"] is None


def test_keeps_the_candidate_with_the_best_score(sam, blob_image):
    image, _ = blob_image
    sam.set_image(image)
    predict = sam.predictor.predict
    seen = {}

    def recording(**kwargs):
        masks, scores, low_res = predict(**kwargs)
        seen.update(kwargs=kwargs, masks=masks, scores=scores, low_res=low_res)
        return masks, scores, low_res

    sam.predictor.predict = recording
    result = sam.predict([Click(30, 24, True)])
    assert seen["kwargs"]["multimask_output"] is True
    best = int(np.argmax(seen["scores"]))
    assert len(seen["scores"]) == 3
    assert result.score == pytest.approx(float(seen["scores"][best]))
    assert np.array_equal(result.state[0], seen["low_res"][best])
    assert np.array_equal(result.mask, seen["masks"][best])


def test_continue_my_mask_sends_the_mask_box_and_deepest_point(sam, blob_image, count_calls):
    image, disc = blob_image
    sam.set_image(image)
    prompts = count_calls(sam.predictor.model.prompt_encoder)
    result = sam.predict([], prior_mask=disc)
    kwargs = prompts.calls[0][1]
    points, labels = kwargs["points"]
    assert labels[0].tolist() == [1]  # one positive point
    assert np.allclose(points[0, 0].numpy(), [30 * 16, 24 * 16])  # the disc's centre
    assert np.allclose(kwargs["boxes"][0].numpy(), [18 * 16, 12 * 16, 42 * 16, 36 * 16])
    logits = kwargs["masks"][0, 0].numpy()
    # 64x48 -> 1024x768 -> low-res 256x192 at the top-left of the 256x256 frame.
    assert logits[24 * 4, 30 * 4] > 0 and logits[2, 2] < 0 and (logits[192:] < 0).all()
    assert result.mask.shape == disc.shape


def test_image_state_round_trip_needs_no_new_embedding(sam, blob_image, count_calls):
    image, _ = blob_image
    sam.set_image(image)
    state = sam.image_state()
    sam.set_image(np.ascontiguousarray(image[:, ::-1]))
    encoder = count_calls(sam.predictor.model.image_encoder)
    sam.use_image_state(state)
    again = sam.predict([Click(30, 24, True)])
    sam.set_image(image)
    fresh = sam.predict([Click(30, 24, True)])
    assert len(encoder.calls) == 1  # only the explicit set_image above
    assert np.array_equal(again.mask, fresh.mask)


def test_missing_or_mismatched_checkpoint_is_a_clear_error(tmp_path, tiny_sam_checkpoint):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_segmenter("sam", checkpoint=tmp_path / "nope.pth", device="cpu")
    with pytest.raises(ValueError, match="does not fit this model"):
        build_segmenter("sam", checkpoint=tiny_sam_checkpoint, model_type="vit_b", device="cpu")
    with pytest.raises(ValueError, match="Unknown SAM model type"):
        build_segmenter("sam", checkpoint=tiny_sam_checkpoint, model_type="vit_x", device="cpu")
