"""The headless commands (`ibisagent continue --plane --index`) and the Slicer module cut the same
2D image out of the same volume file: same pixels, same orientation, for every plane and for
files stored in different axis orders and flips."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from IBISAgentLib.batch_io import BatchCase
from IBISAgentLib.slice_geometry import slice_array, slice_geometry
from ibisagent import image_io

PLANE_OF_VIEW = {"Red": "axial", "Yellow": "sagittal", "Green": "coronal"}
#: ITK direction matrices (LPS): the identity, a flipped one and a permuted one (sagittal scan).
DIRECTIONS = {
    "lps": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "flipped": (-1, 0, 0, 0, 1, 0, 0, 0, -1),
    "permuted": (0, 0, 1, 1, 0, 0, 0, 1, 0),
}


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
@pytest.mark.parametrize("view", sorted(PLANE_OF_VIEW))
def test_headless_and_slicer_slices_are_the_same_image(scene, tmp_path, view, direction):
    voxels = np.arange(7 * 8 * 9, dtype=np.int16).reshape(7, 8, 9)  # every voxel different
    image = sitk.GetImageFromArray(voxels)
    image.SetDirection(DIRECTIONS[direction])
    image.SetSpacing((0.9, 1.1, 1.7))
    image.SetOrigin((3.0, -2.0, 5.0))
    path = str(tmp_path / "volume.nii.gz")
    sitk.WriteImage(image, path)

    headless = image_io.volume_slice(sitk.ReadImage(path), PLANE_OF_VIEW[view], index=2)
    target = _physical_point(sitk.ReadImage(path), headless)
    case = BatchCase(path, None, view, slice_index=0)
    try:
        geometry = slice_geometry(case.volume, case.slice_node, scene)
        index = int(np.rint(geometry.ras_to_ijk_point(target)[geometry.normal_axis]))
        case = _reopen(case, path, view, index)
        geometry = slice_geometry(case.volume, case.slice_node, scene)
        assert np.array_equal(slice_array(case.volume, geometry), headless.pixels)
    finally:
        case.remove()


def _physical_point(image, headless):
    """RAS (mm) of a voxel on the headless slice (LPS from ITK, flipped to RAS)."""
    marker = np.zeros(sitk.GetArrayFromImage(image).shape, np.uint8)
    where = headless.put(marker, np.ones(headless.pixels.shape, np.uint8))
    k, j, i = (int(v[0]) for v in np.nonzero(where))
    x, y, z = image.TransformIndexToPhysicalPoint((i, j, k))
    return np.array([-x, -y, z])


def _reopen(case, path, view, index):
    case.remove()
    return BatchCase(path, None, view, slice_index=index)
