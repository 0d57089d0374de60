"""`image_io.VolumeStack`: every slice of a plane at once, the same pixels `volume_slice` gives,
and masks written back into exactly the chosen slices whatever the file's orientation."""

import numpy as np
import pytest
import SimpleITK as sitk

from ibisagent import image_io

DIRECTIONS = {
    "identity": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "flipped": (-1, 0, 0, 0, 1, 0, 0, 0, -1),
    "permuted": (0, 0, 1, 1, 0, 0, 0, 1, 0),
}


def _volume(direction, size=(5, 6, 7)):
    rng = np.random.default_rng(3)
    image = sitk.GetImageFromArray(rng.normal(size=size[::-1]).astype(np.float32))
    image.SetDirection(direction)
    image.SetSpacing((1.0, 2.0, 3.0))
    return image


@pytest.mark.parametrize("name", list(DIRECTIONS))
@pytest.mark.parametrize("plane", image_io.PLANES)
def test_every_slice_is_the_slice_volume_slice_gives(name, plane):
    volume = _volume(DIRECTIONS[name])
    stack = image_io.volume_stack(volume, plane)
    for index in range(stack.slices.shape[0]):
        assert np.array_equal(stack.slices[index], image_io.volume_slice(volume, plane, index).pixels)
    with pytest.raises(ValueError, match="outside"):
        image_io.volume_slice(volume, plane, stack.slices.shape[0])


@pytest.mark.parametrize("name", list(DIRECTIONS))
@pytest.mark.parametrize("plane", image_io.PLANES)
def test_put_replaces_exactly_the_named_slices(name, plane):
    volume = _volume(DIRECTIONS[name])
    stack = image_io.volume_stack(volume, plane)
    rng = np.random.default_rng(4)
    mask = rng.random(sitk.GetArrayViewFromImage(volume).shape) > 0.5
    slices = stack.take(mask).astype(bool)
    new = {1: ~slices[1], 3: np.zeros_like(slices[3])}
    updated = stack.put(mask, new)
    assert (updated != mask).sum() == slices[1].size + slices[3].sum()
    after = stack.take(updated).astype(bool)
    for index in range(slices.shape[0]):
        assert np.array_equal(after[index], new.get(index, slices[index]))
    assert np.array_equal(image_io.volume_slice(volume, plane, 1).take(updated).astype(bool), ~slices[1])


def test_bad_requests_are_clear_errors():
    volume = _volume(DIRECTIONS["identity"])
    stack = image_io.volume_stack(volume, "axial")
    mask = np.zeros(sitk.GetArrayViewFromImage(volume).shape, bool)
    with pytest.raises(ValueError, match="outside 0..6"):
        stack.put(mask, {7: np.zeros((6, 5), bool)})
    with pytest.raises(ValueError, match="has shape"):
        stack.put(mask, {0: np.zeros((5, 5), bool)})
    with pytest.raises(ValueError, match="Unknown plane"):
        image_io.volume_stack(volume, "oblique")
    with pytest.raises(ValueError, match="2D"):
        image_io.volume_stack(sitk.Image((4, 4), sitk.sitkUInt8), "axial")
