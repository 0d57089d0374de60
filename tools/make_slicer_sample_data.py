"""Make the Slicer sample data the module registers with Sample Data (IBISAgentSlicer/Resources/SampleData).

A small MRI volume and a rough segment to continue: the MNI ICBM152 2009a T1 template at 2 mm, as
nilearn ships it, cropped around the brain to 24 axial slices, and its brain mask made rough on
purpose (one voxel eroded, a band of rows missing, a blob spilling out) so that Continue my mask
has both positive and negative clicks to propose. Written with slicer-core's own storage nodes,
so the files are the NRRD and .seg.nrrd Slicer writes; a thumbnail PNG for the Sample Data panel.
Prints each file's size and SHA256, which IBISAgentLib/sample_data_source.py records.

    .venv/bin/python tools/make_slicer_sample_data.py

Needs nilearn and slicer-core (the test extra). Deterministic: run it again and the checksums match.
"""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np
from scipy import ndimage

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "IBISAgentSlicer"))
sys.path.insert(0, os.path.join(ROOT, "Testing", "tests", "slicer"))  # slicer_scene: slicer-core set up as in Slicer

from IBISAgentLib.sample_data_source import SAMPLE, sample_dir, thumbnail_path  # noqa: E402
from ibisagent import safe_io  # noqa: E402

#: The crop of the 2 mm template ([i, j, k] voxel ranges): the brain, 24 axial slices around its widest.
CROP = (slice(8, 90), slice(8, 109), slice(25, 49))


def volume_and_rough_mask():
    from nilearn import datasets

    template = datasets.load_mni152_template(resolution=2)
    brain = datasets.load_mni152_brain_mask(resolution=2).get_fdata()[CROP] > 0.5
    t1 = np.round(template.get_fdata()[CROP] * 1000).astype(np.int16)  # nilearn scales to 0..1
    affine = np.array(template.affine, dtype=float)
    affine[:3, 3] += affine[:3, :3] @ np.array([s.start for s in CROP], dtype=float)
    rough = ndimage.binary_erosion(brain, iterations=1)
    j_centre = int(np.mean(np.nonzero(brain)[1]))
    rough[:, j_centre - 6:j_centre + 3, :] = False  # a band missing
    ii, jj, kk = np.ogrid[: brain.shape[0], : brain.shape[1], : brain.shape[2]]
    edge_i = int(np.nonzero(brain.any(axis=(1, 2)))[0].max())
    rough |= (ii - edge_i) ** 2 + (jj - j_centre - 20) ** 2 + ((kk - brain.shape[2] // 2) / 2.0) ** 2 <= 36
    return t1, rough, affine


def write(t1, rough, affine) -> None:
    import slicer.util
    import vtk
    from slicer_scene import install_scene, uninstall_scene

    scene, previous = install_scene()
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(affine[r, c]))
    volume = slicer.util.addVolumeFromArray(np.ascontiguousarray(t1.transpose(2, 1, 0)), ijkToRAS=matrix,
                                            name=SAMPLE["nodeNames"][0])
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", SAMPLE["nodeNames"][1])
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("brain", "brain (rough)", [0.9, 0.7, 0.2])
    slicer.util.updateSegmentBinaryLabelmapFromArray(np.ascontiguousarray(rough.transpose(2, 1, 0)).astype(np.uint8),
                                                     segmentation, segment_id, volume)
    folder = sample_dir()
    os.makedirs(folder, exist_ok=True)
    for node, name in ((volume, SAMPLE["fileNames"][0]), (segmentation, SAMPLE["fileNames"][1])):
        node.AddDefaultStorageNode()
        storage = node.GetStorageNode()
        storage.SetUseCompression(True)
        with safe_io.atomic_path(os.path.join(folder, name)) as temporary:
            storage.SetFileName(temporary)
            if not storage.WriteData(node):
                raise RuntimeError(f"could not write {name}")
    uninstall_scene(scene, previous)


def thumbnail(t1, rough) -> None:
    from PIL import Image

    k = t1.shape[2] // 2
    grey = np.clip(t1[:, :, k].astype(float) / 8.0, 0, 255).T[::-1, ::-1]  # axial, as the Red view shows it
    mask = rough[:, :, k].T[::-1, ::-1]
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgb[mask] = 0.6 * rgb[mask] + 0.4 * np.array([230, 180, 50])
    with safe_io.atomic_path(thumbnail_path()) as temporary:
        Image.fromarray(rgb.astype(np.uint8)).resize((260, 280), Image.BILINEAR).save(temporary, "PNG", optimize=True)


def main() -> int:
    t1, rough, affine = volume_and_rough_mask()
    write(t1, rough, affine)
    thumbnail(t1, rough)
    for name in SAMPLE["fileNames"]:
        path = os.path.join(sample_dir(), name)
        with open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        print(f"{name}: {os.path.getsize(path)} bytes, SHA256:{digest}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
