"""Helpers for the Slicer adapter tests: a real MRML scene from PyPI slicer-core (no Qt, no
Slicer application), set up the way the IBISAgentLib adapters expect to find it inside Slicer:

- ``slicer.mrmlScene`` is a fresh vtkMRMLScene for every test;
- segmentation converter rules are registered once (Slicer does this at startup);
- ``slicer.modules.segmentations.logic()`` and ``slicer.modules.volumes.logic()`` return real
  logic objects bound to the scene (``slicer.util`` calls them);
- Red/Yellow/Green slice nodes carry Slicer's own Axial/Sagittal/Coronal SliceToRAS matrices.

It also holds the cases the tests share: a bright ball or box in noise as a volume in any of the
`ORIENTATIONS`, a segment with a finer grid than its volume (and how to read a segment's own
grid back), and a box case written as image and mask files.

conftest.py skips this folder, saying why, when slicer-core is not installed.
"""

from __future__ import annotations

import os
import socket
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
PACKAGE_DIR = os.path.join(ROOT, "IBISAgentSlicer")
if PACKAGE_DIR not in sys.path:
    sys.path.insert(0, PACKAGE_DIR)

import SimpleITK as sitk  # noqa: E402
import slicer  # noqa: E402  (PyPI slicer-core; conftest.py skips the folder without it)
import vtk  # noqa: E402  (ships with slicer-core)
from vtk.util.numpy_support import vtk_to_numpy  # noqa: E402

from IBISAgentLib.slice_geometry import vtk_matrix_to_numpy  # noqa: E402

VIEWS = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}


def free_port() -> int:
    """A loopback port nothing listens on (just released by the OS)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

_CONVERTERS_REGISTERED = False


def _register_converters() -> None:
    global _CONVERTERS_REGISTERED
    if _CONVERTERS_REGISTERED:
        return
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    for rule in (
        slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
        slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule,
        slicer.vtkClosedSurfaceToFractionalLabelmapConversionRule,
        slicer.vtkFractionalLabelmapToClosedSurfaceConversionRule,
    ):
        factory.RegisterConverterRule(rule())
    _CONVERTERS_REGISTERED = True


def install_scene():
    """A fresh vtkMRMLScene installed as ``slicer.mrmlScene``, with the logics ``slicer.util``
    needs and the three slice views. Returns (scene, what to put back with `uninstall_scene`)."""
    import types

    _register_converters()
    mrml = slicer.vtkMRMLScene()
    application = slicer.vtkSlicerApplicationLogic()
    application.SetMRMLScene(mrml)
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLApplicationLogic(application)
    colors.SetMRMLScene(mrml)  # adds the default colour tables (labelmaps need "Labels")
    application.SetModuleLogic("Colors", colors)
    segmentations = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations.SetMRMLScene(mrml)
    volumes = slicer.vtkSlicerVolumesLogic()
    volumes.SetMRMLApplicationLogic(application)
    volumes.SetMRMLScene(mrml)
    previous = (getattr(slicer, "mrmlScene", None), getattr(slicer, "modules", None))
    slicer.mrmlScene = mrml
    slicer.modules = types.SimpleNamespace(
        segmentations=types.SimpleNamespace(logic=lambda: segmentations),
        volumes=types.SimpleNamespace(logic=lambda: volumes),
        # VTK logics point to each other without owning: keep every one alive with the scene.
        kept=(application, colors, segmentations, volumes),
    )
    for name, orientation in VIEWS.items():
        add_slice_node(mrml, name, orientation)
    return mrml, previous


def uninstall_scene(mrml, previous) -> None:
    mrml.Clear(1)
    slicer.mrmlScene, slicer.modules = previous


def add_slice_node(scene, name: str, orientation: str):
    node = slicer.vtkMRMLSliceNode()
    node.SetName(name)
    node.SetLayoutName(name)
    node.SetSingletonTag(name)
    scene.AddNode(node)
    m3 = vtk.vtkMatrix3x3()
    getattr(slicer.vtkMRMLSliceNode, f"Get{orientation}SliceToRASMatrix")(m3)
    m4 = node.GetSliceToRAS()
    for r in range(3):
        for c in range(3):
            m4.SetElement(r, c, m3.GetElement(r, c))
    node.UpdateMatrices()
    return node


def make_ijk_to_ras(directions, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 IJKToRAS from a 3x3 direction matrix (columns = RAS direction of i, j, k)."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(directions, dtype=float) * np.asarray(spacing, dtype=float)[None, :]
    matrix[:3, 3] = origin
    return matrix


def add_volume(scene, array_kji, ijk_to_ras, name="volume", vector=False, window=None):
    """A scalar (or vector, for [k, j, i, c] arrays) volume node with the given geometry."""
    import slicer.util

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(ijk_to_ras[r][c]))
    class_name = "vtkMRMLVectorVolumeNode" if vector else "vtkMRMLScalarVolumeNode"
    node = slicer.util.addVolumeFromArray(np.asarray(array_kji), ijkToRAS=matrix, name=name, nodeClassName=class_name)
    if window is not None and node.GetDisplayNode() is not None:
        low, high = window
        node.GetDisplayNode().AutoWindowLevelOff()
        node.GetDisplayNode().SetWindowLevel(high - low, (high + low) / 2.0)
    return node


def add_segmentation(scene, volume, names=("target",)):
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    ids = [node.GetSegmentation().AddEmptySegment(n, n) for n in names]
    return node, ids


def place_view_on_voxel(scene, view: str, volume, ijk) -> None:
    """Scroll ``view`` so its slice passes through the centre of voxel ``ijk``."""
    node = scene.GetNodeByID("vtkMRMLSliceNode" + view)
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    ras = matrix.MultiplyPoint(list(map(float, ijk)) + [1.0])[:3]
    slice_to_ras = node.GetSliceToRAS()
    normal = np.array([slice_to_ras.GetElement(r, 2) for r in range(3)])
    node.SetSliceOffset(float(np.dot(ras, normal)))


# Volume orientations exercised by the tests: RAS-aligned, LPS (DICOM-like), permuted
# (sagittal acquisition) and a mixed flip/permutation with anisotropic spacing.
ORIENTATIONS = {
    "ras": (np.eye(3), (1.0, 1.0, 1.0)),
    "lps": (np.diag([-1.0, -1.0, 1.0]), (0.8, 0.8, 2.0)),
    "permuted": (np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], dtype=float), (1.5, 0.7, 1.0)),
    "flipped-permuted": (np.array([[0, 1, 0], [0, 0, -1], [-1, 0, 0]], dtype=float), (1.0, 2.5, 0.9)),
}


def ball_mask(shape, centre, radius: float) -> np.ndarray:
    """bool [k, j, i] of ``shape``: the voxels within ``radius`` (voxels) of ``centre`` (k, j, i)."""
    k, j, i = np.indices(shape)
    return (k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2 <= radius ** 2


def add_bright_volume(scene, truth, orientation: str, rng, origin=(3.0, -2.0, 1.0), noise: float = 6.0,
                      contrast: float = 250.0, window=(0, 450)):
    """An int16 volume node: ``truth`` (bool [k, j, i]) ``contrast`` brighter than noise around
    100 (standard deviation ``noise``, drawn from ``rng``), in orientation ``orientation`` of
    `ORIENTATIONS`, first voxel at RAS ``origin``, shown through ``window``."""
    directions, spacing = ORIENTATIONS[orientation]
    pixels = (rng.normal(100, noise, truth.shape) + contrast * truth).astype(np.int16)
    return add_volume(scene, pixels, make_ijk_to_ras(directions, spacing, origin), window=window)


def set_fine_segment(segmentation, segment_id, volume, factor: int = 2, seed: int = 3, above: float = 0.5):
    """Replace the segment by a random labelmap ``factor`` times finer than the volume (as Segment
    Editor > Specify geometry with oversampling makes: voxel centres subdivide the volume's
    cells); a voxel is set where a uniform draw (``seed``) is above ``above``. Returns (its
    IJK-to-RAS matrix, 4x4; its voxels, uint8 [k, j, i])."""
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    coarse = vtk_matrix_to_numpy(ijk_to_ras)
    fine = coarse.copy()
    fine[:3, :3] = coarse[:3, :3] / factor
    fine[:3, 3] = coarse[:3, 3] - (0.5 - 0.5 / factor) * coarse[:3, :3].sum(axis=1)
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(fine[r, c]))
    image = slicer.vtkOrientedImageData()
    image.SetGeometryFromImageToWorldMatrix(matrix)
    shape = tuple(factor * n for n in slicer.util.arrayFromVolume(volume).shape)
    image.SetExtent(0, shape[2] - 1, 0, shape[1] - 1, 0, shape[0] - 1)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    voxels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)
    voxels[...] = np.random.default_rng(seed).random(shape) > above
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    segmentation.GetSegmentation().ClearSegment(segment_id)
    assert logic.SetBinaryLabelmapToSegment(image, segmentation, segment_id, logic.MODE_REPLACE)
    return fine, voxels.copy()


def own_labelmap(segmentation, segment_id, shape):
    """The segment's own labelmap as stored, on a canvas of ``shape`` [k, j, i] from its grid's
    voxel 0 (uint8; 0 outside the allocated extent), and that grid's IJK-to-RAS matrix (4x4)."""
    image = segmentation.GetBinaryLabelmapInternalRepresentation(segment_id)
    extent = image.GetExtent()
    data = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(tuple(reversed(image.GetDimensions())))
    full = np.zeros(shape, np.uint8)
    full[extent[4]:extent[5] + 1, extent[2]:extent[3] + 1, extent[0]:extent[1] + 1] = data
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return full, vtk_matrix_to_numpy(matrix)


def write_box_case(folder, name: str = "case1"):
    """(image file, mask file) in ``folder``: a bright box in noise (int16 [8, 20, 24], spacing
    (0.8, 0.9, 2.5), identity directions) and a rough start of it on array slice k = 4 only."""
    truth = np.zeros((8, 20, 24), np.uint8)
    truth[2:6, 5:15, 6:18] = 1
    pixels = (np.random.default_rng(2).normal(100, 5, truth.shape) + 300.0 * truth).astype(np.int16)
    image = sitk.GetImageFromArray(pixels)
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((10.0, -20.0, 5.0))
    image_file = os.path.join(str(folder), f"{name}.nii.gz")
    sitk.WriteImage(image, image_file)
    rough = np.zeros_like(truth)
    rough[4, 8:12, 9:14] = 1
    mask = sitk.GetImageFromArray(rough)
    mask.CopyInformation(image)
    mask_file = os.path.join(str(folder), f"{name}_mask.nii.gz")
    sitk.WriteImage(mask, mask_file)
    return image_file, mask_file
