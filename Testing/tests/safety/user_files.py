"""Small real inputs for the safety tests: a 2D picture with a bright disk and a rough mask of it,
and a volume with a bright ball on a tilted, offset grid with a label mask (several labels)."""

from __future__ import annotations

import hashlib
import os
from typing import Dict

import numpy as np
import SimpleITK as sitk
from PIL import Image


def digest(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def digests(folder) -> Dict[str, str]:
    """Every file under ``folder`` (relative name -> sha256): a folder's state, to compare."""
    found = {}
    for here, _folders, files in os.walk(folder):
        for name in files:
            path = os.path.join(here, name)
            found[os.path.relpath(path, folder)] = digest(path)
    return found


def picture(folder, name: str = "image.png", size: int = 64, seed: int = 0):
    """(image path, rough mask path, truth path): a grey disk picture and masks as PNG."""
    rows, cols = np.mgrid[:size, :size]
    truth = (rows - size / 2) ** 2 + (cols - size / 2) ** 2 < (size / 4) ** 2
    noise = np.random.default_rng(seed).normal(0, 6, (size, size))
    pixels = np.clip(60 + 120 * truth + noise, 0, 255).astype(np.uint8)
    rough = truth.copy()
    rough[: size // 2] = False  # the upper half is missing
    paths = []
    for suffix, array in (("", pixels), ("_rough", rough.astype(np.uint8) * 255), ("_truth", truth.astype(np.uint8) * 255)):
        path = os.path.join(str(folder), name.replace(".png", f"{suffix}.png"))
        Image.fromarray(array).save(path)
        paths.append(path)
    return tuple(paths)


def ball_volume(shape=(16, 40, 44)) -> np.ndarray:
    """[k, j, i] bool ball in the middle."""
    k, j, i = np.mgrid[: shape[0], : shape[1], : shape[2]]
    centre = np.array(shape) / 2
    return ((k - centre[0]) / (shape[0] / 3)) ** 2 + ((j - centre[1]) / 12) ** 2 + ((i - centre[2]) / 12) ** 2 < 1


def volume(folder, suffix: str = ".nrrd", shape=(16, 40, 44)) -> str:
    """A CT-like int16 volume with a bright ball, on a grid with spacing, origin and a flipped axis."""
    ball = ball_volume(shape)
    values = (np.random.default_rng(3).normal(40, 8, ball.shape) + 200 * ball).astype(np.int16)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.9, 0.8, 2.5))
    image.SetOrigin((-20.0, 15.0, 40.0))
    image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    path = os.path.join(str(folder), "volume" + suffix)
    sitk.WriteImage(image, path, True)
    return path


def label_mask(folder, image_path: str, name: str = "labels.nrrd", dtype=np.uint8) -> str:
    """A mask on the volume's grid with labels 1..4: 1 the ball's left half (the label worked
    on), 2 a block touching it, 3 and 4 elsewhere."""
    image = sitk.ReadImage(image_path)
    ball = ball_volume(sitk.GetArrayViewFromImage(image).shape)
    labels = np.zeros(ball.shape, dtype)
    labels[ball] = 1
    half = ball.shape[2] // 2
    labels[:, :, half:][ball[:, :, half:]] = 0  # the right half of the ball is missing
    labels[6:10, 8:14, 18:30] = 2
    labels[2:5, 30:36, 2:8] = 3
    labels[12:15, 2:6, 36:42] = 4
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    path = os.path.join(str(folder), name)
    sitk.WriteImage(mask, path, True)
    return path


def binary_mask(folder, image_path: str, name: str = "mask.nrrd") -> str:
    """Label 1 of `label_mask` alone (0/1 uint8): a one-label mask on the volume's grid."""
    labels = sitk.ReadImage(label_mask(folder, image_path, "all_" + name))
    mask = sitk.GetImageFromArray((sitk.GetArrayFromImage(labels) == 1).astype(np.uint8))
    mask.CopyInformation(labels)
    path = os.path.join(str(folder), name)
    sitk.WriteImage(mask, path, True)
    return path
