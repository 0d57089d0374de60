"""The Slicer logic never loses what the user made on disk (issue 17): `runBatch` never writes into
a folder its images come from (finding 1: with the output folder equal to the input folder, the
default ".", the CT volume was replaced by the mask), its default output is a new folder beside
the first image, a bad case is reported and the batch goes on, and `saveSegment` never writes
over the file a volume or segmentation was loaded from. Real MRML scene (slicer-core), real files."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

from slicer_scene import write_box_case

from IBISAgentLib.logic import IBISAgentLogic


def _digest(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _logic() -> IBISAgentLogic:
    logic = IBISAgentLogic(log=lambda message: None)
    logic.useLocalEngine("heuristic", "graphcut")
    return logic


def test_finding_01_run_batch_never_writes_into_the_input_folder(scene, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    image_file, mask_file = write_box_case(data)
    before = {name: _digest(data / name) for name in os.listdir(data)}
    logic = _logic()
    with pytest.raises(ValueError, match="input folder"):
        logic.runBatch([image_file], [mask_file], str(data), "segment the box", maxSteps=2)
    monkeypatch.chdir(data)  # the old default "." was wherever the console stood: here, the data
    results = logic.runBatch([image_file], [mask_file], request="segment the box", maxSteps=2)
    assert "error" not in results[0], results[0]
    assert {name: _digest(data / name) for name in before} == before  # the CT volume is untouched
    out = data / "ibisagent-batch"
    assert sorted(os.listdir(out)) == [".ibisagent-outputs.json", "case1.nii.gz", "case1.seg.nrrd"]
    assert results[0]["files"] == [str(out / "case1.seg.nrrd"), str(out / "case1.nii.gz")]
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case1.nii.gz")))
    assert written.shape == (8, 20, 24) and set(np.unique(written)) <= {0, 1}
    # a second default run makes another new folder; an explicit earlier batch folder needs overwrite
    logic.runBatch([image_file], [mask_file], request="segment the box", maxSteps=1)
    assert (data / "ibisagent-batch-2" / "case1.nii.gz").exists()
    with pytest.raises(ValueError, match="overwrite"):
        logic.runBatch([image_file], [mask_file], str(out), "segment the box", maxSteps=1)
    assert "error" not in logic.runBatch([image_file], [mask_file], str(out), "x", maxSteps=1, overwrite=True)[0]
    # a file of the user's named like an output is never replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "case1.nii.gz").write_bytes(b"the user's own file")
    with pytest.raises(ValueError, match="case1.nii.gz, which this tool did not write"):
        logic.runBatch([image_file], [mask_file], str(mine), "x", maxSteps=1, overwrite=True)
    assert (mine / "case1.nii.gz").read_bytes() == b"the user's own file"
    assert scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 0


def test_a_bad_batch_case_is_reported_and_the_batch_goes_on(scene, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    image_file, mask_file = write_box_case(data)
    damaged_file, _ = write_box_case(data, "damaged")
    content = open(damaged_file, "rb").read()
    with open(damaged_file, "wb") as handle:
        handle.write(content[: len(content) // 2])
    other_file, other_mask = write_box_case(data, "other")
    moved = sitk.ReadImage(other_mask)
    moved.SetOrigin((500.0, -20.0, 5.0))  # a mask on another grid than its image
    sitk.WriteImage(moved, other_mask)
    results = _logic().runBatch([damaged_file, other_file, image_file], [mask_file, other_mask, mask_file],
                                str(tmp_path / "out"), "segment the box", maxSteps=1)
    assert "damaged" in results[0]["error"]
    assert "not on the image's grid" in results[1]["error"] and results[1]["error"].count("origin") == 2
    assert "error" not in results[2] and (tmp_path / "out" / "case1.nii.gz").exists()
    assert not (tmp_path / "out" / "other.nii.gz").exists() and not (tmp_path / "out" / "damaged.nii.gz").exists()


def test_save_segment_never_writes_over_a_loaded_file(scene, tmp_path):
    image_file, mask_file = write_box_case(tmp_path)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "case1")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(image_file)
    assert storage.ReadData(volume)
    volume.SetAndObserveStorageNodeID(storage.GetID())
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("", "target")
    array = np.zeros((8, 20, 24), np.uint8)
    array[3, 6:12, 7:15] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(array, segmentation, segment_id, volume)
    before = _digest(image_file)
    os.link(image_file, tmp_path / "alias.nii.gz")
    logic = _logic()
    for path in (image_file, str(tmp_path / "alias.nii.gz")):
        with pytest.raises(ValueError, match="must not overwrite an input"):
            logic.saveSegment(segmentation, segment_id, path, volume)
    assert _digest(image_file) == before
    written = logic.saveSegment(segmentation, segment_id, str(tmp_path / "tumour"), volume)
    assert written == [str(tmp_path / "tumour.seg.nrrd"), str(tmp_path / "tumour.nii.gz")]
    with pytest.raises(ValueError, match="already exists"):
        logic.saveSegment(segmentation, segment_id, str(tmp_path / "tumour"), volume, overwrite=False)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".ibisagent-tmp-")]
