"""Helpers for the Slicer adapter tests: a real MRML scene from PyPI slicer-core (no Qt, no
Slicer application), set up the way the IBISAgentLib adapters expect to find it inside Slicer:

- ``slicer.mrmlScene`` is a fresh vtkMRMLScene for every test;
- segmentation converter rules are registered once (Slicer does this at startup);
- ``slicer.modules.segmentations.logic()`` and ``slicer.modules.volumes.logic()`` return real
  logic objects bound to the scene (``slicer.util`` calls them);
- Red/Yellow/Green slice nodes carry Slicer's own Axial/Sagittal/Coronal SliceToRAS matrices.

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

import slicer  # noqa: E402  (PyPI slicer-core; conftest.py skips the folder without it)
import vtk  # noqa: E402  (ships with slicer-core)

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
