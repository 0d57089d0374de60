"""Fixtures for the training tests: small labelled images, cold-start records made from them,
and the tiny random Qwen2.5-VL checkpoint folder of the policy tests (built by the same code, so
the training tests load exactly the checkpoint layout a user's IBISAgent folder has)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ibisagent.segmenters import build_segmenter
from ibisagent.training.trajectories import generate_trajectories
from training_data import two_blobs

REQUEST = "Segment the bright structures."


def _policy_fixtures():
    """The policy tests' conftest, loaded by path (pytest gives each folder its own conftest)."""
    path = Path(__file__).resolve().parents[1] / "policies" / "conftest.py"
    spec = importlib.util.spec_from_file_location("policies_tiny_qwen", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return _policy_fixtures().tiny_qwen_dir.__wrapped__(tmp_path_factory)


@pytest.fixture(scope="session")
def labelled_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for k in range(2):
        image, target = two_blobs(shift=4 * k)
        Image.fromarray(image).save(root / "images" / f"case{k}.png")
        Image.fromarray((target * 255).astype(np.uint8)).save(root / "masks" / f"case{k}.png")
    return root


@pytest.fixture(scope="session")
def cold_start_records(labelled_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("records") / "cold"
    generate_trajectories(str(labelled_folder / "images"), str(labelled_folder / "masks"), str(out),
                          build_segmenter("graphcut"), request=REQUEST, stop_iou=0.95, log=lambda line: None)
    return out
