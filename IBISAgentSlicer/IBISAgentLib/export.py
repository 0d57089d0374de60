"""Writing segments to disk: a .seg.nrrd segmentation and a NIfTI (or NRRD) labelmap.

Both files use the reference volume's geometry (origin, spacing, axis directions, extent), so
they overlay the image they were drawn on in any viewer. The labelmap holds 1 for the first
exported segment, 2 for the second, and so on, 0 elsewhere; the .seg.nrrd keeps segment names,
colours and tags (including the IBISAgent click history).

Nothing here changes the user's nodes or their storage nodes (the scene still saves where it
did). Inside Slicer files are written with ``slicer.util.exportNode``; where there is no Slicer
application (PyPI slicer-core, tests) a temporary MRML storage node writes them instead.

Every file goes through ``ibisagent.safe_io``: `write_labelmap` / `write_segmentation` write a
path a caller staged (a temporary file beside the target), `export_labelmap` /
`export_segmentation` replace their file atomically, and `save_segment` writes its one or two
files as one `OutputSet`: never over an input (``inputs``: the files the scene was loaded from),
never the two outputs the same file, both replaced at once at the end. `node_files` lists the
files a node was loaded from.
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, List, Optional, Sequence

from ibisagent import safe_io

SEGMENTATION_EXTENSIONS = (".seg.nrrd",)
LABELMAP_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr")


class ExportError(RuntimeError):
    """A file could not be written; the message names the file and the likely cause."""


def _write_node(node, path: str, storage_class: str, target: Optional[str] = None) -> None:
    """Write ``node`` to ``path`` as it is (a path a caller staged for the file ``target``)."""
    import slicer

    if hasattr(slicer, "app") and hasattr(slicer.util, "exportNode"):
        # A fresh properties dict each time: exportNode's default dict is shared between calls
        # and it stores the first file's "fileFormat" in it (Slicer 5.6 to main).
        ok = slicer.util.exportNode(node, path, {})
    else:
        storage = slicer.mrmlScene.AddNewNodeByClass(storage_class)
        try:
            storage.SetFileName(path)
            storage.SetUseCompression(True)
            ok = bool(storage.WriteData(node))
        finally:
            slicer.mrmlScene.RemoveNode(storage)
    if not ok or not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise ExportError(f"Could not write {target or path}; check that the folder exists and is writable.")


def node_files(node) -> List[str]:
    """The files ``node`` was loaded from or last saved to (its storage node's file names)."""
    storage = node.GetStorageNode() if node is not None and hasattr(node, "GetStorageNode") else None
    if storage is None:
        return []
    names = [storage.GetFileName()] + [storage.GetNthFileName(i) for i in range(storage.GetNumberOfFileNames())]
    return [name for name in names if name]


def _segment_ids(segmentation_node, segment_ids: Optional[Sequence[str]]) -> List[str]:
    segmentation = segmentation_node.GetSegmentation()
    if segment_ids is None:
        return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    ids = [segment_ids] if isinstance(segment_ids, str) else list(segment_ids)
    for segment_id in ids:
        if segmentation.GetSegment(segment_id) is None:
            raise ExportError(f"The segmentation '{segmentation_node.GetName()}' has no segment {segment_id!r}.")
    return ids


def write_labelmap(segmentation_node, path: str, reference_volume, segment_ids: Optional[Sequence[str]] = None,
                   target: Optional[str] = None) -> None:
    """Write the segments as one labelmap file in the reference volume's geometry to ``path`` as
    it is (a staged path), using vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode.
    ``target``: the file that ``path`` is staged for, whose ending counts (default: ``path``)."""
    import slicer
    import vtk

    if not (target or path).lower().endswith(LABELMAP_EXTENSIONS):
        raise ExportError(f"{path}: a labelmap file must end with one of {', '.join(LABELMAP_EXTENSIONS)}.")
    ids = vtk.vtkStringArray()
    for segment_id in _segment_ids(segmentation_node, segment_ids):
        ids.InsertNextValue(segment_id)
    scene = slicer.mrmlScene
    colours_before = _node_ids(scene, "vtkMRMLColorTableNode")
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__IBISAgent_export__")
    try:
        ok = slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(
            segmentation_node, ids, labelmap, reference_volume,
        )
        if not ok:
            raise ExportError(f"Slicer could not turn the segments of '{segmentation_node.GetName()}' into a labelmap.")
        _write_node(labelmap, path, "vtkMRMLVolumeArchetypeStorageNode", target)
    finally:
        display = labelmap.GetDisplayNode()
        if display is not None:
            scene.RemoveNode(display)
        scene.RemoveNode(labelmap)
        # ExportSegmentsToLabelmapNode adds a "<segmentation>_ColorTable" node for the labelmap.
        for node_id in _node_ids(scene, "vtkMRMLColorTableNode") - colours_before:
            scene.RemoveNode(scene.GetNodeByID(node_id))


def _node_ids(scene, class_name: str) -> set:
    nodes = scene.GetNodesByClass(class_name)
    return {nodes.GetItemAsObject(i).GetID() for i in range(nodes.GetNumberOfItems())}


def write_segmentation(segmentation_node, path: str, reference_volume, segment_ids: Optional[Sequence[str]] = None,
                       target: Optional[str] = None) -> None:
    """Write the segments (all by default) as a .seg.nrrd in the reference volume's geometry to
    ``path`` as it is (a staged path)."""
    import slicer

    if not (target or path).lower().endswith(SEGMENTATION_EXTENSIONS):
        raise ExportError(f"{path}: a segmentation file must end with .seg.nrrd.")
    ids = _segment_ids(segmentation_node, segment_ids)
    copy = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "__IBISAgent_export__")
    try:
        copy.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
        for segment_id in ids:
            if not copy.GetSegmentation().CopySegmentFromSegmentation(segmentation_node.GetSegmentation(), segment_id):
                raise ExportError(f"Could not copy segment {segment_id!r} for saving.")
        _write_node(copy, path, "vtkMRMLSegmentationStorageNode", target)
    finally:
        slicer.mrmlScene.RemoveNode(copy)


def export_labelmap(segmentation_node, path: str, reference_volume, segment_ids: Optional[Sequence[str]] = None) -> str:
    """`write_labelmap`, replacing ``path`` atomically; returns ``path``."""
    with safe_io.atomic_path(path) as temporary:
        write_labelmap(segmentation_node, temporary, reference_volume, segment_ids, target=path)
    return path


def export_segmentation(segmentation_node, path: str, reference_volume, segment_ids: Optional[Sequence[str]] = None) -> str:
    """`write_segmentation`, replacing ``path`` atomically; returns ``path``."""
    with safe_io.atomic_path(path) as temporary:
        write_segmentation(segmentation_node, temporary, reference_volume, segment_ids, target=path)
    return path


def segment_files(path: str) -> Dict[str, str]:
    """What `save_segment` writes for ``path``: {"segmentation": ...} for a .seg.nrrd,
    {"labelmap": ...} for .nii.gz/.nii/.nrrd, both (``path`` + ending) for any other path."""
    lower = path.lower()
    if lower.endswith(SEGMENTATION_EXTENSIONS):
        return {"segmentation": path}
    if lower.endswith(LABELMAP_EXTENSIONS):
        return {"labelmap": path}
    return {"segmentation": path + ".seg.nrrd", "labelmap": path + ".nii.gz"}


def write_segment_file(kind: str, segmentation_node, segment_id: str, path: str, reference_volume,
                       target: Optional[str] = None) -> None:
    """Write one file of `segment_files` (``kind``) to ``path`` as it is (a staged path)."""
    writer = write_segmentation if kind == "segmentation" else write_labelmap
    writer(segmentation_node, path, reference_volume, [segment_id], target=target)


def save_segment(segmentation_node, segment_id: str, path: str, reference_volume,
                 inputs: Iterable[Optional[str]] = (), overwrite: bool = True) -> List[str]:
    """Save one segment: ``path`` ending in .seg.nrrd gives a segmentation file, .nii.gz/.nii/
    .nrrd a labelmap. A path with no such ending gets both, ``path + ".seg.nrrd"`` and
    ``path + ".nii.gz"``. Never over a file of ``inputs`` (raises ValueError); an existing file
    is replaced only with ``overwrite``; both files appear together. Returns the files written."""
    files = segment_files(path)
    with safe_io.OutputSet(files, inputs, overwrite) as outputs:
        for kind, target in files.items():
            with outputs.stage(kind) as temporary:
                write_segment_file(kind, segmentation_node, segment_id, temporary, reference_volume, target=target)
        return outputs.commit()
