"""Batch cases: an image file (and optional mask file) loaded into the scene for the logic.

Each `BatchCase` adds a volume node, a segmentation with one segment (filled from the mask file
when given) and a private slice node oriented like the chosen standard view and placed on the
chosen slice; `remove()` takes them all out again. Files are read with MRML storage nodes, so
this works inside Slicer and with PyPI slicer-core alike, after the same checks the headless
commands make (``ibisagent.image_integrity``: a damaged file is refused; ``ibisagent.memory``:
an image too large for the memory budget is refused; NaN or infinite mask values are refused;
a mask must lie on its image's grid). `batch_folder` is the output folder of a batch (a
``safe_io.OwnedFolder``) and `BatchCase.save` writes a case's two files into it.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

import numpy as np

from ibisagent import image_integrity
from ibisagent.safe_io import OwnedFolder

from . import export
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


#: The default output folder's name, beside the first image (``-2``, ``-3``... when it exists).
DEFAULT_FOLDER = "ibisagent-batch"


def batch_folder(image_files: Sequence[str], mask_files: Optional[Sequence[Optional[str]]],
                 output_folder: Optional[str], overwrite: bool = False) -> OwnedFolder:
    """The output folder of a batch, checked before any case runs: ``output_folder``, or a new
    folder beside the first image. Refused: a folder the images or masks are in, two cases with
    one name, a file of the user's named like an output, an earlier batch unless ``overwrite``."""
    if not image_files:
        raise ValueError("No image files given.")
    inputs = [path for path in list(image_files) + list(mask_files or []) if path]
    if output_folder is None or not str(output_folder).strip():
        beside = os.path.dirname(os.path.abspath(image_files[0]))
        output_folder = os.path.join(beside, DEFAULT_FOLDER)
        number = 2
        while os.path.lexists(output_folder):
            output_folder = os.path.join(beside, f"{DEFAULT_FOLDER}-{number}")
            number += 1
    names: List[str] = []
    seen = {}
    for path in image_files:
        name = case_name(path)
        if name in seen:
            raise ValueError(f"{seen[name]} and {path} are both case {name!r}; their results would have one name. "
                             "Rename one of them or run them in two batches.")
        seen[name] = path
        names += [f"{name}.seg.nrrd", f"{name}.nii.gz"]
    folders = sorted({os.path.dirname(os.path.abspath(path)) for path in inputs})
    return OwnedFolder(output_folder, overwrite, "outputFolder", names, inputs + folders, kind="batch",
                       what="the results of an earlier batch")


def _check_file(path: str) -> int:
    """Refuse a missing, damaged or too large image file before MRML reads it
    (``ibisagent.image_io.check_file``); returns its number of components."""
    from ibisagent.image_io import check_file

    return int(check_file(path).GetNumberOfComponents())


def _read(scene, path: str, class_name: str, name: str):
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

        vector = _check_file(image_file) > 1
        self.volume = self._keep(_read(self.scene, image_file, "vtkMRMLVectorVolumeNode" if vector else "vtkMRMLScalarVolumeNode", self.name))
        if vector and self.volume.GetDisplayNode() is None:
            self.volume.CreateDefaultDisplayNodes()
        self.segmentation = self._keep(self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", self.name + " segmentation"))
        self.segmentation.CreateDefaultDisplayNodes()
        self.segmentation.SetReferenceImageGeometryParameterFromVolumeNode(self.volume)
        self.segment_id = self.segmentation.GetSegmentation().AddEmptySegment("", "IBISAgent")
        start = None
        if mask_file:
            _check_file(mask_file)
            labelmap = _read(self.scene, mask_file, "vtkMRMLLabelMapVolumeNode", "__IBISAgent_mask__")
            try:
                _check_same_grid(labelmap, self.volume, mask_file)
                values = slicer.util.arrayFromVolume(labelmap)
                if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
                    raise image_integrity.non_finite(mask_file)
                start = values != 0
            finally:
                self.scene.RemoveNode(labelmap)
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

    def save(self, folder: OwnedFolder) -> List[str]:
        """Write the case's segment as ``<case>.seg.nrrd`` and ``<case>.nii.gz`` (a labelmap in
        the image's geometry) into the batch's ``folder``; returns the files written."""
        written = []
        for kind, name in (("segmentation", f"{self.name}.seg.nrrd"), ("labelmap", f"{self.name}.nii.gz")):
            with folder.stage(name) as temporary:
                export.write_segment_file(kind, self.segmentation, self.segment_id, temporary, self.volume, target=name)
            written.append(folder.path(name))
        return written

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


def _geometry(node) -> dict:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = vtk_matrix_to_numpy(matrix)
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    return {"size": tuple(node.GetImageData().GetDimensions()), "spacing": spacing,
            "origin": ijk_to_ras[:3, 3], "direction": ijk_to_ras[:3, :3] / spacing}


def _describe(geometry: dict) -> str:
    def numbers(values) -> str:
        return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"

    return (f"size {numbers(geometry['size'])}, spacing {numbers(geometry['spacing'])} mm, origin "
            f"{numbers(geometry['origin'])} mm (RAS), directions {numbers(np.round(geometry['direction'].T.ravel(), 4))}")


def _check_same_grid(mask_node, volume_node, mask_file: str) -> None:
    """Refuse a mask whose voxels are not the image's (size, spacing, origin, directions; the
    tolerances of ``ibisagent.image_io.GRID_TOLERANCE``), printing both geometries."""
    from ibisagent.image_io import GRID_TOLERANCE

    mask, image = _geometry(mask_node), _geometry(volume_node)
    same = (mask["size"] == image["size"]
            and np.allclose(mask["spacing"], image["spacing"], rtol=GRID_TOLERANCE["spacing"], atol=0)
            and np.all(np.abs(mask["origin"] - image["origin"]) <= GRID_TOLERANCE["origin"] * image["spacing"].min())
            and np.allclose(mask["direction"], image["direction"], rtol=0, atol=GRID_TOLERANCE["direction"]))
    if not same:
        raise ValueError(f"The mask {mask_file} is not on the image's grid: image {_describe(image)}; mask "
                         f"{_describe(mask)}. Resample the mask onto the image and try again.")
