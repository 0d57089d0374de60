import numpy as np
import pytest
import SimpleITK as sitk

from ibisagent import image_io


def _volume(direction, size=(6, 7, 8)):
    """A volume whose voxel value encodes its LPS position, so any reorientation can be checked."""
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetDirection(direction)
    image.SetSpacing((1.0, 2.0, 3.0))
    image.SetOrigin((3.0, -4.0, 5.0))
    array = np.zeros(size[::-1], np.float32)
    for k in range(size[2]):
        for j in range(size[1]):
            for i in range(size[0]):
                x, y, z = image.TransformIndexToPhysicalPoint((i, j, k))
                array[k, j, i] = (round(x) + 50) * 10000 + (round(y) + 50) * 100 + round(z) + 50
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


DIRECTIONS = {
    "identity": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "flipped": (-1, 0, 0, 0, 1, 0, 0, 0, -1),
    "permuted": (0, 0, 1, 1, 0, 0, 0, 1, 0),
}


@pytest.mark.parametrize("name", list(DIRECTIONS))
@pytest.mark.parametrize("plane", image_io.PLANES)
def test_slices_look_the_same_whatever_the_file_orientation(name, plane):
    """Display orientation: axial/coronal rows run A->P / S->I, columns patient R->L (LPS x
    increasing); sagittal columns run A->P. Checked through the LPS position in each voxel."""
    slice_ = image_io.volume_slice(_volume(DIRECTIONS[name]), plane, 2)
    pixels = slice_.pixels
    x, y, z = pixels // 10000, (pixels % 10000) // 100, pixels % 100
    rows_step = {"axial": y, "coronal": -z, "sagittal": -z}[plane]
    cols_step = {"axial": x, "coronal": x, "sagittal": y}[plane]
    fixed = {"axial": z, "coronal": y, "sagittal": x}[plane]
    assert np.all(np.diff(rows_step, axis=0) > 0) and np.all(np.diff(cols_step, axis=1) > 0)
    assert len(np.unique(fixed)) == 1


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_put_changes_only_that_slice(name):
    volume = _volume(DIRECTIONS[name])
    slice_ = image_io.volume_slice(volume, "coronal", 3)
    rng = np.random.default_rng(1)
    mask = rng.random(sitk.GetArrayViewFromImage(volume).shape) > 0.5
    new_slice = ~slice_.take(mask.astype(np.uint8)).astype(bool)
    updated = slice_.put(mask, new_slice)
    assert (updated != mask).sum() == new_slice.size
    assert np.array_equal(slice_.take(updated.astype(np.uint8)).astype(bool), new_slice)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".png"])
def test_mask_round_trip_keeps_geometry(tmp_path, suffix):
    mask = np.zeros((9, 11), bool)
    mask[2:5, 3:8] = True
    reference = sitk.GetImageFromArray(np.zeros((9, 11), np.float32))
    reference.SetSpacing((0.5, 0.7))
    reference.SetOrigin((1.0, 2.0))
    path = str(tmp_path / f"m{suffix}")
    image_io.write_mask(path, mask, reference)
    assert np.array_equal(image_io.read_mask_2d(path, (9, 11)), mask)
    if suffix != ".png":
        assert np.allclose(image_io.read_image(path).GetSpacing(), (0.5, 0.7))


def test_colour_png_and_jpeg_stay_colour(tmp_path):
    from PIL import Image

    colour = np.zeros((8, 10, 3), np.uint8)
    colour[..., 1] = 200
    for name in ("c.png", "c.jpg"):
        Image.fromarray(colour).save(tmp_path / name)
        pixels, image = image_io.read_2d(str(tmp_path / name))
        assert pixels.shape == (8, 10, 3) and image_io.is_colour(image)
        assert abs(int(pixels[4, 4, 1]) - 200) <= 3


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        image_io.read_image(str(tmp_path / "missing.nii.gz"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="Unsupported file type"):
        image_io.read_image(str(tmp_path / "notes.txt"))
    (tmp_path / "broken.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="Could not read"):
        image_io.read_image(str(tmp_path / "broken.nii.gz"))
    sitk.WriteImage(_volume(DIRECTIONS["identity"]), str(tmp_path / "v.nrrd"))
    with pytest.raises(ValueError, match="3D volume"):
        image_io.read_2d(str(tmp_path / "v.nrrd"))
    image_io.write_mask(str(tmp_path / "m.png"), np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="shape"):
        image_io.read_mask_2d(str(tmp_path / "m.png"), (4, 4))
    with pytest.raises(ValueError, match="outside"):
        image_io.volume_slice(_volume(DIRECTIONS["identity"]), "axial", 99)


def test_case_names_pair_by_stem():
    assert image_io.case_name("/a/b/liver_01.nii.gz") == "liver_01"
    assert image_io.case_name("x.PNG") == "x"
