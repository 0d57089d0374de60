"""The module's sample data (what Sample Data lists as IBISAgent > IBISAgentBrain): small files
that are exactly the ones recorded, with their source and licence, that load into real MRML
(slicer-core storage nodes, as Slicer loads them) and that the agent continues as the README's
tutorial says: the proposal fills the missing band of the rough segment, on the worked slice only;
on the whole segment (Work on: volume) a negative point placed on the blob in the Yellow view
takes the blob out on every slice, and Undo brings the segment back exactly."""

from __future__ import annotations

import hashlib
import os
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np
import slicer
import vtk

from slicer_scene import place_view_on_voxel

from IBISAgentLib import segment_masks
from IBISAgentLib.actions import VOLUME
from IBISAgentLib.logic import IBISAgentLogic
from IBISAgentLib.sample_data_source import SAMPLE, sample_dir, sample_paths, source_arguments, thumbnail_path


def test_the_shipped_files_are_the_recorded_ones_with_source_and_licence():
    arguments = source_arguments()
    paths = [url2pathname(urlsplit(uri).path) for uri in arguments["uris"]]
    assert paths == sample_paths() and os.path.isfile(arguments["thumbnailFileName"])
    for path, checksum in zip(paths, SAMPLE["checksums"]):
        with open(path, "rb") as handle:
            assert f"SHA256:{hashlib.sha256(handle.read()).hexdigest()}" == checksum, path
    assert sum(os.path.getsize(p) for p in paths + [thumbnail_path()]) < 300_000  # small enough for the repository
    with open(os.path.join(sample_dir(), "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    assert "nilearn" in readme and "Licence" in readme and "tools/make_slicer_sample_data.py" in readme
    with open(os.path.join(sample_dir(), "NOTICE"), encoding="utf-8") as handle:
        assert "McConnell Brain Imaging Centre" in handle.read()
    assert len({len(SAMPLE[key]) for key in ("fileNames", "nodeNames", "loadFileTypes", "checksums")}) == 1


def _load(scene):
    """The two files through the storage nodes Slicer's readers use."""
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", SAMPLE["nodeNames"][0])
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", SAMPLE["nodeNames"][1])
    for node, storage_class, path in ((volume, "vtkMRMLVolumeArchetypeStorageNode", sample_paths()[0]),
                                      (segmentation, "vtkMRMLSegmentationStorageNode", sample_paths()[1])):
        storage = scene.AddNewNodeByClass(storage_class)
        storage.SetFileName(path)
        node.SetAndObserveStorageNodeID(storage.GetID())
        assert storage.ReadData(node), path
    volume.CreateDefaultDisplayNodes()
    return volume, segmentation, segmentation.GetSegmentation().GetNthSegmentID(0)


def test_the_sample_loads_and_the_agent_continues_its_rough_segment(scene):
    volume, segmentation, segment_id = _load(scene)
    assert slicer.util.arrayFromVolume(volume).shape == (24, 101, 82)
    assert segmentation.GetSegmentation().GetSegment(segment_id).GetName() == "brain (rough)"
    before = segment_masks.read_volume_mask(segmentation, segment_id, volume).astype(bool)
    assert before.any()
    place_view_on_voxel(scene, "Red", volume, (41, 50, 12))
    logic = IBISAgentLogic()  # the CPU default: weight-free heuristic policy, graphcut tool
    result = logic.continueMask(volume, segmentation, segment_id, "Segment the brain.", view="Red", maxSteps=4)
    assert result["steps"] and result["steps"][0]["action"].startswith("Positive Point")
    after = segment_masks.read_volume_mask(segmentation, segment_id, volume).astype(bool)
    changed = np.argwhere(after != before)
    assert len(changed) and set(changed[:, 0].tolist()) == {12}  # the worked slice only
    assert after[12].sum() > before[12].sum()  # the missing band is filled in


def test_on_the_whole_segment_a_negative_point_takes_the_blob_out_of_every_slice(scene):
    from scipy import ndimage

    volume, segmentation, segment_id = _load(scene)
    before = segment_masks.read_volume_mask(segmentation, segment_id, volume).astype(bool)
    labels, _count = ndimage.label(before)
    blob = labels == labels[12, 70, 76]  # the blob outside the head: a column through all 24 slices
    assert blob.sum() < 0.05 * before.sum() and set(np.argwhere(blob)[:, 0].tolist()) == set(range(24))
    for view in ("Red", "Yellow", "Green"):
        place_view_on_voxel(scene, view, volume, (41, 50, 12))
    logic = IBISAgentLogic()  # the CPU default: weight-free policy, the 3D graph cut
    logic.startEpisode(volume, segmentation, segment_id, "Segment the brain.", view="Red", workOn=VOLUME)
    proposal = logic.proposeNext()
    assert proposal.plane in ("Red", "Yellow", "Green") and proposal.looked[0]["plane"] == "Red"  # the user's first
    place_view_on_voxel(scene, "Yellow", volume, (76, 70, 12))
    placement = logic.startPlacingPoint(False)
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    placement.node.AddControlPoint(*matrix.MultiplyPoint([76.0, 70.0, 12.0, 1.0])[:3])
    placement.end()
    step = logic.acceptProposal()
    after = segment_masks.read_volume_mask(segmentation, segment_id, volume).astype(bool)
    assert not (after & blob).any() and step.removed >= blob.sum()
    assert logic.undo() and np.array_equal(segment_masks.read_volume_mask(segmentation, segment_id, volume), before)
    logic.finish()
