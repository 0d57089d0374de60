"""Batch cases: an image file (and optional mask file) loaded into the scene for the logic.

Each `BatchCase` adds a volume node, a segmentation with one segment (filled from the mask file
when given) and a private slice node oriented like the chosen standard view and placed on the
chosen slice; `remove()` takes them all out again. Files are read with MRML storage nodes, so
this works inside Slicer and with PyPI slicer-core alike.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from .slice_geometry import VIEW_NAMES, slice_geometry, vtk_matrix_to_numpy

ORIENTATION_OF_VIEW = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}
_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def case_name(path: str) -> str:
    """File name without folder and without its (double) extension."""
    name = os.path.basename(path)
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0]


def _components(path: str) -> int:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return int(reader.GetNumberOfComponents())


def _read(scene, path: str, class_name: str, name: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist.")
    node = scene.AddNewNodeByClass(class_name, name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(path)
    try:
        if not storage.ReadData(node) or node.GetImageData() is None:
            scene.RemoveNode(node)
            raise ValueError(f"Could not read {path} as an image.")
    finally:
        scene.RemoveNode(storage)
    node.CreateDefaultDisplayNodes()
    return node


class BatchCase:
    """One image (+ mask) in the scene, with a slice node on the slice to work on."""

    def __init__(self, image_file: str, mask_file: Optional[str], view: str = "Red", slice_index: Optional[int] = None, scene=None) -> None:
        import slicer

        if view not in VIEW_NAMES:
            raise ValueError(f"Batch view must be one of {', '.join(VIEW_NAMES)}; got {view!r}.")
        self.scene = scene or slicer.mrmlScene
        self.name = case_name(image_file)
        self._nodes = []
        try:
            self._load(image_file, mask_file, view, slice_index)
        except BaseException:
            self.remove()
            raise

    def _load(self, image_file, mask_file, view, slice_index) -> None:
        import slicer
        import vtk

        vector = _components(image_file) > 1
        self.volume = self._keep(_read(self.scene, image_file, "vtkMRMLVectorVolumeNode" if vector else "vtkMRMLScalarVolumeNode", self.name))
        if vector and self.volume.GetDisplayNode() is None:
            self.volume.CreateDefaultDisplayNodes()
        self.segmentation = self._keep(self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", self.name + " segmentation"))
        self.segmentation.CreateDefaultDisplayNodes()
        self.segmentation.SetReferenceImageGeometryParameterFromVolumeNode(self.volume)
        self.segment_id = self.segmentation.GetSegmentation().AddEmptySegment("", "IBISAgent")
        start = None
        if mask_file:
            labelmap = _read(self.scene, mask_file, "vtkMRMLLabelMapVolumeNode", "__IBISAgent_mask__")
            try:
                start = slicer.util.arrayFromVolume(labelmap) != 0
            finally:
                self.scene.RemoveNode(labelmap)
            expected = slicer.util.arrayFromVolume(self.volume).shape[:3]
            if start.shape != expected:
                raise ValueError(f"The mask {mask_file} has {start.shape[::-1]} voxels; the image has {expected[::-1]}.")
            slicer.util.updateSegmentBinaryLabelmapFromArray(start.astype(np.uint8), self.segmentation, self.segment_id, self.volume)
        # A private slice node (not shown in any layout) oriented like the standard view.
        self.slice_node = self._keep(slicer.vtkMRMLSliceNode())
        self.slice_node.SetName("IBISAgent batch " + view)
        self.slice_node.SetLayoutName("IBISAgentBatch" + view)
        self.slice_node.SetHideFromEditors(True)
        self.scene.AddNode(self.slice_node)
        m3 = vtk.vtkMatrix3x3()
        getattr(slicer.vtkMRMLSliceNode, f"Get{ORIENTATION_OF_VIEW[view]}SliceToRASMatrix")(m3)
        slice_to_ras = self.slice_node.GetSliceToRAS()
        for r in range(3):
            for c in range(3):
                slice_to_ras.SetElement(r, c, m3.GetElement(r, c))
        self.slice_node.UpdateMatrices()
        self._place(self._centre_index(), None)
        geometry = slice_geometry(self.volume, self.slice_node, self.scene)
        if slice_index is None:
            if start is not None and start.any():
                counts = start.sum(axis=tuple(a for a in range(3) if a != 2 - geometry.normal_axis))
                slice_index = int(np.argmax(counts))
            else:
                slice_index = geometry.dimensions[geometry.normal_axis] // 2
        self._place(slice_index, geometry)

    def _keep(self, node):
        self._nodes.append(node)
        return node

    def _centre_index(self):
        dims = self.volume.GetImageData().GetDimensions()
        return [(d - 1) / 2.0 for d in dims]

    def _place(self, index, geometry) -> None:
        """Move the private slice onto voxel index ``index`` along the normal (or the centre)."""
        import vtk

        matrix = vtk.vtkMatrix4x4()
        self.volume.GetIJKToRASMatrix(matrix)
        ijk = self._centre_index()
        if geometry is not None:
            if not 0 <= index < geometry.dimensions[geometry.normal_axis]:
                raise ValueError(f"Slice index {index} is outside 0..{geometry.dimensions[geometry.normal_axis] - 1}.")
            ijk[geometry.normal_axis] = index
        ras = (vtk_matrix_to_numpy(matrix) @ np.append(ijk, 1.0))[:3]
        normal = vtk_matrix_to_numpy(self.slice_node.GetSliceToRAS())[:3, 2]
        self.slice_node.SetSliceOffset(float(np.dot(ras, normal)))

    def remove(self) -> None:
        for node in reversed(self._nodes):
            if node.GetScene() is not None:
                display = node.GetDisplayNode() if hasattr(node, "GetDisplayNode") else None
                if display is not None:
                    self.scene.RemoveNode(display)
                self.scene.RemoveNode(node)
        self._nodes = []
