"""The module's sample data, as Slicer's Sample Data module lists it: a small MRI volume and a
rough segment to continue (File > Download Sample Data > IBISAgent > IBISAgentBrain).

The files ship with the module (Resources/SampleData: a 2 mm MNI ICBM152 2009a T1 crop of
82 x 101 x 24 voxels and its brain mask made rough on purpose; README.md there gives the source,
the licence and how tools/make_slicer_sample_data.py remakes them), so nothing is downloaded:
the sample's URIs are ``file:`` URIs of those files, checked against the SHA256 recorded here.
The self-test and the README's Slicer tutorial load them. Qt-free: `register` takes Slicer's
``SampleData.SampleDataLogic``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List

MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CATEGORY = "IBISAgent"

#: What Sample Data needs to load the sample (one entry per file, volume first).
SAMPLE: Dict[str, object] = {
    "sampleName": "IBISAgentBrain",
    "fileNames": ["IBISAgentBrainT1.nrrd", "IBISAgentBrainRough.seg.nrrd"],
    "nodeNames": ["IBISAgentBrainT1", "IBISAgentBrainRough"],
    "loadFileTypes": ["VolumeFile", "SegmentationFile"],
    "checksums": [
        "SHA256:8479c56e7fcfd579e3c4fef9b930ff5be0a22c71c3f15d44c7ef74bce92a6d16",
        "SHA256:0b642a9aaadc52258227414165495eaf23e52a7c46029b2e61395ad926525d18",
    ],
}


def sample_dir() -> str:
    return os.path.join(MODULE_DIR, "Resources", "SampleData")


def thumbnail_path() -> str:
    return os.path.join(MODULE_DIR, "Resources", "Icons", f"{SAMPLE['sampleName']}.png")


def sample_paths() -> List[str]:
    return [os.path.join(sample_dir(), name) for name in SAMPLE["fileNames"]]


def source_arguments() -> Dict[str, object]:
    """The keyword arguments of ``SampleDataLogic.registerCustomSampleDataSource`` for the sample:
    ``file:`` URIs of the shipped files, their checksums, names and load types."""
    return dict(SAMPLE, category=CATEGORY, thumbnailFileName=thumbnail_path(),
                uris=[Path(path).as_uri() for path in sample_paths()])


def register(sample_data_logic) -> None:
    """Add the sample to Slicer's Sample Data module (``SampleData.SampleDataLogic``)."""
    if hasattr(sample_data_logic, "registerCustomSampleDataCategory"):  # Slicer 5.8+: a titled section
        sample_data_logic.registerCustomSampleDataCategory(CATEGORY, title=CATEGORY)
    sample_data_logic.registerCustomSampleDataSource(**source_arguments())
