"""Inputs are read whole or refused (`ibisagent.image_io` with `image_integrity`), on real files of
every format SimpleITK would otherwise read silently with zeros; NaN and infinity are refused in
every format; a volume mask must share its image's grid; the memory budget is checked from the
header before anything is allocated; a mask's labels and data type survive (`LabelMask`)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from ibisagent import image_io, memory
from ibisagent.image_integrity import DamagedFileError, NonFiniteError
from ibisagent.label_mask import LabelMask


def _volume(dtype=np.float32, shape=(30, 40, 50), seed=0) -> sitk.Image:
    values = (np.random.default_rng(seed).random(shape) * 100).astype(dtype)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.8, 0.9, 2.0))
    image.SetOrigin((10.0, -5.0, 3.0))
    return image


def _cut(path, fraction=0.5) -> None:
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[: int(len(data) * fraction)])


@pytest.mark.parametrize("name, compressed", [
    ("cut.nii.gz", True), ("cut.nii", False), ("cut.nrrd", True), ("cut_raw.nrrd", False), ("cut.mha", True),
    ("cut_raw.mha", False),
])
def test_a_file_cut_short_is_refused_as_damaged(tmp_path, name, compressed):
    path = str(tmp_path / name)
    sitk.WriteImage(_volume(), path, compressed)
    image_io.read_image(path)  # whole: read
    _cut(path)
    with pytest.raises(DamagedFileError, match="is damaged"):
        image_io.read_image(path)


def test_a_nifti_with_fewer_voxels_than_its_header_declares_is_refused(tmp_path):
    import gzip

    path = str(tmp_path / "short.nii.gz")
    sitk.WriteImage(_volume(), path, True)
    raw = gzip.decompress(open(path, "rb").read())
    with gzip.open(path, "wb") as handle:  # a complete gzip stream, but of too few voxels
        handle.write(raw[:-4000])
    assert sitk.GetArrayFromImage(sitk.ReadImage(path)).shape == (30, 40, 50)  # SimpleITK reads it silently
    with pytest.raises(DamagedFileError, match="declares .* bytes"):
        image_io.read_image(path)


@pytest.mark.parametrize("header, data", [("vol.nhdr", "vol.raw"), ("vol.mhd", "vol.raw"), ("gz.nhdr", "gz.raw.gz")])
def test_a_detached_data_file_that_is_missing_is_refused(tmp_path, header, data):
    path = str(tmp_path / header)
    sitk.WriteImage(_volume(), path, header.startswith("gz"))
    image_io.read_image(path)
    shutil.move(str(tmp_path / data), str(tmp_path / "elsewhere"))
    with pytest.raises(DamagedFileError, match=f"data file .*{data} is missing"):
        image_io.read_image(path)


@pytest.mark.parametrize("name", ["cut.png", "cut.jpg"])
def test_a_picture_cut_short_is_refused(tmp_path, name):
    path = str(tmp_path / name)
    sitk.WriteImage(sitk.GetImageFromArray((np.random.default_rng(1).random((300, 300)) * 255).astype(np.uint8)), path)
    _cut(path, 0.6)
    with pytest.raises(DamagedFileError, match="cannot be decoded"):
        image_io.read_image(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_infinity_are_refused_in_every_format(tmp_path, suffix, bad):
    values = np.zeros((6, 8, 10), np.float32)
    values[2:4, 3:5, 4:6] = 1.0
    values[0, 0, 0] = bad
    path = str(tmp_path / f"mask{suffix}")
    sitk.WriteImage(sitk.GetImageFromArray(values), path)
    with pytest.raises(NonFiniteError, match="NaN or infinite"):
        image_io.read_image(path)


def test_a_nifti2_file_is_checked_too(tmp_path):
    nibabel = pytest.importorskip("nibabel", reason="nibabel writes the NIfTI-2 file")
    values = np.ones((5, 6, 7), np.float32)
    values[1, 1, 1] = np.nan
    path = str(tmp_path / "two.nii.gz")
    nibabel.save(nibabel.Nifti2Image(values, np.eye(4)), path)
    with pytest.raises(NonFiniteError):
        image_io.read_image(path)


def test_a_mask_on_another_grid_is_refused_with_both_geometries(tmp_path):
    image = _volume()
    sitk.WriteImage(image, str(tmp_path / "image.nrrd"))
    for change in ({"origin": (510.0, -5.0, 3.0)}, {"spacing": (1.0, 0.9, 2.0)},
                   {"direction": (0, 1, 0, 1, 0, 0, 0, 0, -1)}):
        mask = sitk.GetImageFromArray(np.zeros((30, 40, 50), np.uint8))
        mask.CopyInformation(image)
        for key, value in change.items():
            getattr(mask, "Set" + key.capitalize())(value)
        sitk.WriteImage(mask, str(tmp_path / "mask.nrrd"))
        with pytest.raises(ValueError, match="not on the grid") as raised:
            image_io.read_mask_volume(str(tmp_path / "mask.nrrd"), image, "image.nrrd")
        assert str(raised.value).count("origin") == 2 and str(raised.value).count("spacing") == 2
    mask = sitk.GetImageFromArray(np.zeros((30, 40, 50), np.uint8))
    mask.CopyInformation(image)
    mask.SetOrigin((10.0 + 1e-5, -5.0, 3.0))  # float32 header noise is the same grid
    sitk.WriteImage(mask, str(tmp_path / "mask.nrrd"))
    assert image_io.read_mask_volume(str(tmp_path / "mask.nrrd"), image).shape == (30, 40, 50)


def test_the_memory_budget_is_checked_from_the_header_before_reading(tmp_path, monkeypatch):
    path = str(tmp_path / "big.nrrd")
    sitk.WriteImage(sitk.Image(3000, 2500, sitk.sitkUInt8), path, True)
    monkeypatch.setenv(memory.BUDGET_ENV, "100")
    with pytest.raises(memory.ImageTooLargeError, match="3000 x 2500 pixels.*Crop it.*downsample"):
        image_io.read_image(path)
    monkeypatch.setenv(memory.BUDGET_ENV, "100000")
    assert image_io.read_image(path).GetSize() == (3000, 2500)
    monkeypatch.setenv(memory.BUDGET_ENV, "lots")
    with pytest.raises(ValueError, match="in MB"):
        image_io.read_image(path)


def test_a_label_mask_keeps_other_labels_and_its_data_type():
    values = np.zeros((4, 6), np.int16)
    values[0, :3] = 2
    values[1:3, 1:4] = 3
    values[3, 5] = 7
    with pytest.raises(ValueError, match=r"several labels \(2, 3, 7\).*--label N"):
        LabelMask(values)
    labels = LabelMask(values, 3)
    new = np.zeros((4, 6), bool)
    new[0:3, 2:6] = True  # grows over background and over label 2 at (0, 2); loses (1:3, 1)
    merged = labels.merged(new)
    assert merged.dtype == np.int16
    assert merged[0, 2] == 2 and labels.blocked(new) == 1  # another label is never taken
    assert merged[1, 1] == 0 and merged[2, 5] == 3 and merged[3, 5] == 7
    untouched = ~new & ~labels.binary
    assert np.array_equal(merged[untouched], values[untouched])
    assert LabelMask(np.zeros((2, 2), np.uint8)).label == 1  # an empty mask: label 1
    for bad in (0, 300):
        with pytest.raises(ValueError, match="--label"):
            LabelMask(np.zeros((2, 2), np.uint8), bad)


def test_a_damaged_file_passes_no_bytes_to_the_reader(tmp_path):
    """The check looks at every byte before SimpleITK reads any: a file cut inside its header is
    refused as well, and a file that is no image at all says it cannot be read."""
    path = str(tmp_path / "v.nii.gz")
    sitk.WriteImage(_volume(), path, True)
    _cut(path, 0.001)
    with pytest.raises(ValueError, match="damaged|Could not read"):
        image_io.read_image(path)
    (tmp_path / "text.nii.gz").write_text("hello")
    with pytest.raises(ValueError, match="Could not read"):
        image_io.read_image(str(tmp_path / "text.nii.gz"))
    assert os.path.getsize(path) > 0
