"""Slice <-> 2D image <-> RAS on real MRML volumes of every orientation, in all three views."""

from __future__ import annotations

import numpy as np
import pytest
import vtk

from slicer_scene import ORIENTATIONS, VIEWS, add_volume, make_ijk_to_ras, place_view_on_voxel

from IBISAgentLib.slice_geometry import (
    SliceGeometryError,
    slice_array,
    slice_geometry,
    slice_rgb,
    vtk_matrix_to_numpy,
)
from ibisagent.actions import POSITIVE, Action

SHAPE_KJI = (6, 7, 9)


def _volume(scene, orientation, window=None):
    directions, spacing = ORIENTATIONS[orientation]
    array = np.arange(np.prod(SHAPE_KJI), dtype=np.int32).reshape(SHAPE_KJI)
    return add_volume(scene, array, make_ijk_to_ras(directions, spacing, (10.0, -5.0, 3.0)), window=window), array


def _slice_axes(scene, view):
    matrix = vtk_matrix_to_numpy(scene.GetNodeByID("vtkMRMLSliceNode" + view).GetSliceToRAS())
    return matrix[:3, 0], matrix[:3, 1], matrix[:3, 2]


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_display_orientation_and_values(scene, orientation, view):
    volume, array = _volume(scene, orientation)
    place_view_on_voxel(scene, view, volume, (4, 3, 2))
    geometry = slice_geometry(volume, view)
    image = slice_array(volume, geometry)
    rows, cols = geometry.shape
    assert image.shape == (rows, cols)
    x_axis, y_axis, normal = _slice_axes(scene, view)
    for row in range(rows):
        for col in range(cols):
            i, j, k = geometry.pixel_to_ijk(col, row)
            assert image[row, col] == array[k, j, i]
            assert geometry.ijk_to_pixel((i, j, k)) == (col, row)
            ras = geometry.pixel_to_ras(col, row)
            assert geometry.ras_to_pixel(ras) == (col, row)
    # What the user sees: right on screen is +X of the view, up is +Y; the slice holds voxel (4, 3, 2).
    right = geometry.pixel_to_ras(1, 0) - geometry.pixel_to_ras(0, 0)
    down = geometry.pixel_to_ras(0, 1) - geometry.pixel_to_ras(0, 0)
    assert np.dot(right, x_axis) > 0 and np.allclose(np.cross(right, x_axis), 0, atol=1e-9)
    assert np.dot(down, y_axis) < 0 and np.allclose(np.cross(down, y_axis), 0, atol=1e-9)
    assert abs(np.dot(geometry.pixel_to_ras(0, 0) - geometry.pixel_to_ras(cols - 1, rows - 1), normal)) < 1e-9
    assert (4, 3, 2)[geometry.normal_axis] == geometry.slice_index


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_normalised_click_lands_on_expected_voxel(scene, orientation, view):
    """A model point (x, y) in [0, 1] must land on the voxel that sits at that fraction of the
    slice as drawn on screen, found here independently by sorting voxel centres along the
    view's axes."""
    volume, _ = _volume(scene, orientation)
    place_view_on_voxel(scene, view, volume, (5, 1, 3))
    geometry = slice_geometry(volume, view)
    x_axis, y_axis, _ = _slice_axes(scene, view)
    matrix = vtk_matrix_to_numpy(_ijk_to_ras(volume))
    ni, nj, nk = SHAPE_KJI[2], SHAPE_KJI[1], SHAPE_KJI[0]
    voxels = [(i, j, k) for i in range(ni) for j in range(nj) for k in range(nk)
              if (i, j, k)[geometry.normal_axis] == geometry.slice_index]
    ras = {v: (matrix @ np.array([*v, 1.0]))[:3] for v in voxels}
    xs = sorted({round(float(np.dot(p, x_axis)), 6) for p in ras.values()})
    ys = sorted({round(float(np.dot(p, y_axis)), 6) for p in ras.values()}, reverse=True)  # top first
    rows, cols = geometry.shape
    assert (len(ys), len(xs)) == (rows, cols)
    for x, y in [(0.0, 0.0), (0.9999, 0.9999), (0.31, 0.77), (0.5, 0.5), (0.05, 0.93)]:
        col, row, _ = Action(POSITIVE, x, y).to_pixel(cols, rows)
        expected = [v for v, p in ras.items()
                    if round(float(np.dot(p, x_axis)), 6) == xs[int(np.floor(x * cols))]
                    and round(float(np.dot(p, y_axis)), 6) == ys[int(np.floor(y * rows))]]
        assert len(expected) == 1
        assert tuple(geometry.pixel_to_ijk(col, row)) == expected[0]
        assert np.allclose(geometry.pixel_to_ras(col, row), ras[expected[0]])


def _ijk_to_ras(volume):
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return matrix


def test_oblique_view_is_refused(scene):
    volume, _ = _volume(scene, "lps")
    node = scene.GetNodeByID("vtkMRMLSliceNodeRed")
    transform = vtk.vtkTransform()
    transform.RotateX(20)
    node.GetSliceToRAS().DeepCopy(_compose(node.GetSliceToRAS(), transform.GetMatrix()))
    node.UpdateMatrices()
    with pytest.raises(SliceGeometryError, match="oblique"):
        slice_geometry(volume, "Red")
    # An in-plane rotation that is not a multiple of 90 degrees is oblique too.
    volume2, _ = _volume(scene, "ras")
    yellow = scene.GetNodeByID("vtkMRMLSliceNodeYellow")
    spin = vtk.vtkTransform()
    spin.RotateX(15)
    yellow.GetSliceToRAS().DeepCopy(_compose(spin.GetMatrix(), yellow.GetSliceToRAS()))
    yellow.UpdateMatrices()
    with pytest.raises(SliceGeometryError, match="oblique"):
        slice_geometry(volume2, "Yellow")


def _compose(a, b):
    out = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Multiply4x4(a, b, out)
    return out


def test_slice_outside_volume_and_unknown_view(scene):
    volume, _ = _volume(scene, "ras")
    scene.GetNodeByID("vtkMRMLSliceNodeRed").SetSliceOffset(500.0)
    with pytest.raises(SliceGeometryError, match="outside the volume"):
        slice_geometry(volume, "Red")
    with pytest.raises(SliceGeometryError, match="no slice view"):
        slice_geometry(volume, "Purple")


def test_transformed_volume_is_refused(scene):
    volume, _ = _volume(scene, "ras")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    volume.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(SliceGeometryError, match="Harden"):
        slice_geometry(volume, "Red")


def test_rgb_uses_window_level(scene):
    volume, _ = _volume(scene, "lps", window=(100.0, 300.0))
    place_view_on_voxel(scene, "Green", volume, (0, 0, 0))
    geometry = slice_geometry(volume, "Green")
    raw = slice_array(volume, geometry).astype(float)
    rgb = slice_rgb(volume, geometry)
    assert rgb.dtype == np.uint8 and rgb.shape == geometry.shape + (3,)
    expected = np.rint(np.clip((raw - 100.0) / 200.0, 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(rgb[..., 0], expected) and np.array_equal(rgb[..., 2], expected)
    assert (rgb[..., 0] == 0).any() or (rgb[..., 0] == 255).any()


def test_colour_volume_kept_as_is(scene):
    rng = np.random.default_rng(3)
    colour = rng.integers(0, 256, size=(1, 5, 8, 3), dtype=np.uint8)  # one-slice RGB picture
    volume = add_volume(scene, colour, make_ijk_to_ras(np.diag([-1.0, -1.0, 1.0]), (0.5, 0.5, 1.0)), vector=True)
    place_view_on_voxel(scene, "Red", volume, (0, 0, 0))
    geometry = slice_geometry(volume, "Red")
    rgb = slice_rgb(volume, geometry)
    assert rgb.shape == (5, 8, 3)
    for row in range(5):
        for col in range(8):
            i, j, k = geometry.pixel_to_ijk(col, row)
            assert np.array_equal(rgb[row, col], colour[k, j, i])
    # LPS picture in an axial view: screen-left is patient right (R decreases to the right).
    assert geometry.pixel_to_ras(1, 0)[0] < geometry.pixel_to_ras(0, 0)[0]
