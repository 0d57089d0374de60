import numpy as np
import pytest

from ibisagent.imaging import (
    MODEL_MAX_PIXELS, OVERLAY_ALPHA, OVERLAY_COLOR, check_mask, model_size, model_view, overlay, to_rgb,
)


def test_percentile_window_maps_grey_to_three_equal_channels():
    ramp = np.tile(np.linspace(0, 1000, 101), (10, 1))
    rgb = to_rgb(ramp)
    assert rgb.dtype == np.uint8 and rgb.shape == (10, 101, 3)
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    assert rgb[0, 1] [0] == 0 and rgb[0, 99][0] == 255 and 120 < rgb[0, 50][0] < 135


def test_eight_bit_grey_reaches_model_and_tools_unchanged():
    grey = np.full((6, 7), 40, np.uint8)
    grey[2:4, 3:5] = 200
    rgb = to_rgb(grey)
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 7, 3)
    for channel in range(3):
        assert np.array_equal(rgb[..., channel], grey)


def test_a_window_the_user_asks_for_applies_to_eight_bit_grey():
    grey = np.array([[0, 50, 100, 150, 255]], np.uint8)
    assert list(to_rgb(grey, (50.0, 150.0))[0, :, 0]) == [0, 0, 128, 255, 255]


def test_ct_preset_and_explicit_window():
    hu = np.array([[-1000.0, -125.0, 437.5, 1000.0, 3000.0]])
    assert list(to_rgb(hu, "abdomen")[0, :, 0]) == [0, 0, 128, 255, 255]
    assert list(to_rgb(hu, (0.0, 1000.0))[0, :, 0]) == [0, 0, 112, 255, 255]
    with pytest.raises(ValueError, match="preset"):
        to_rgb(hu, "kidney-ish")
    with pytest.raises(ValueError, match="low < high"):
        to_rgb(hu, (5.0, 5.0))


def test_colour_images_keep_their_colours():
    colour = np.zeros((4, 5, 3), np.uint8)
    colour[..., 0] = 200
    colour[1, 1] = (10, 220, 30)
    assert np.array_equal(to_rgb(colour), colour)
    rgba = np.concatenate([colour, np.full((4, 5, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(to_rgb(rgba), colour)


@pytest.mark.parametrize(
    "pixels, message",
    [
        (np.zeros((0, 5)), "empty"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.full((4, 4), 7.0), "constant"),
        (np.zeros((2, 3, 4, 5)), "2D"),
    ],
)
def test_unusable_images_are_refused(pixels, message):
    with pytest.raises(ValueError, match=message):
        to_rgb(pixels)


def test_overlay_blends_only_mask_pixels_with_the_reference_colour():
    image = np.full((3, 3, 3), 100, np.uint8)
    mask = np.zeros((3, 3), bool)
    mask[1, 1] = True
    out = overlay(image, mask)
    expected = np.rint(np.array([100.0] * 3) * (1 - OVERLAY_ALPHA) + np.array(OVERLAY_COLOR) * OVERLAY_ALPHA)
    assert list(out[1, 1]) == list(expected.astype(int))
    assert np.array_equal(out[0, 0], image[0, 0])


def test_model_view_never_exceeds_the_pixel_cap_and_keeps_aspect():
    assert model_size(400, 300) == (400, 300)
    width, height = model_size(1024, 768)
    assert width * height <= MODEL_MAX_PIXELS and abs(width / height - 4 / 3) < 0.01
    view = model_view(np.zeros((1024, 1024, 3), np.uint8), None)
    assert view.size == (512, 512)


def test_check_mask():
    assert check_mask(np.array([[0, 2]]), (1, 2)).tolist() == [[False, True]]
    with pytest.raises(ValueError, match="shape"):
        check_mask(np.zeros((2, 2)), (1, 2))
    with pytest.raises(ValueError, match="numeric"):
        check_mask(np.array([["a", "b"]]), (1, 2))
