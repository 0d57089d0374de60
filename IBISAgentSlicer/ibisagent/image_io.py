"""Reading and writing images and masks: NIfTI, NRRD, PNG and JPEG, in 2D and 3D.

SimpleITK does the file work. Arrays follow its order: a 2D image is [row, col] (plus a trailing
channel axis for colour), a 3D volume is [k, j, i]. Geometry (spacing, origin, direction) is kept
so masks are written back on exactly the grid they were read from.

Volumes are sliced in *display orientation*: the volume is first reoriented to LPS axes, so the
slice looks the way 3D Slicer's view of that plane shows it (axial and coronal: patient right on
the left; sagittal: anterior on the left; superior or anterior at the top), whatever the file's
own axis order or flips. `VolumeSlice.put` writes a 2D mask back into exactly that slice.

Reading is whole or refused: before SimpleITK reads a file, `read_image` checks that the work on
it fits the memory budget (`ibisagent.memory`, from the header alone, before allocating) and that
the file holds every byte its header declares (`ibisagent.image_integrity`: a cut gzip stream,
a short NIfTI, a missing NRRD or MetaImage data file are refused as damaged); NaN and infinite
values are refused in every format. A volume mask must lie on its image's grid
(`check_same_grid`). Writing goes through `ibisagent.safe_io`: `write_mask` and `write_labels`
replace their file atomically; `save_image` writes a path a `safe_io.OutputSet` staged.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk

from . import image_integrity, memory, safe_io

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".png", ".jpg", ".jpeg", ".mha", ".mhd")
PLANES = ("axial", "coronal", "sagittal")


def suffix_of(path: str) -> str:
    """The file type suffix, with .nii.gz as one suffix; lower case."""
    name = os.path.basename(str(path)).lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return os.path.splitext(name)[1]


def case_name(path: str) -> str:
    """File name without its image suffix: how images and masks are paired."""
    name = os.path.basename(str(path))
    suffix = suffix_of(name)
    return name[: len(name) - len(suffix)] if suffix else name


def _check_readable(path: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path}")
    if suffix_of(path) not in IMAGE_SUFFIXES:
        raise ValueError(
            f"Unsupported file type {suffix_of(path) or '(none)'!r} for {path}; "
            f"use one of: {', '.join(IMAGE_SUFFIXES)}."
        )


def read_image(path: str, volume_work: int = memory.VOLUME_BYTES_PER_VOXEL) -> sitk.Image:
    """Read any supported file into a SimpleITK image, with a clear error if that fails: the work
    must fit the memory budget, the file must be whole (`check_file`), and its values finite.
    ``volume_work``: the work's bytes per voxel besides the voxels (`memory.work_bytes`)."""
    path = str(path)
    _check_readable(path)
    reader = check_file(path, volume_work)
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise ValueError(f"Could not read {path}: {_last_line(error)}") from error
    if image.GetPixelID() in _FLOAT_PIXELS and not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
        raise image_integrity.non_finite(path)
    return image


def check_file(path: str, volume_work: int = memory.VOLUME_BYTES_PER_VOXEL) -> sitk.ImageFileReader:
    """What is checked before any reader (SimpleITK here, MRML storage nodes in Slicer) loads an
    image file: it exists, its header reads, the work on it fits the memory budget (from the
    header, before anything is allocated; ``volume_work`` as in `memory.work_bytes`), and it is
    whole (`image_integrity.check_whole`). Returns the reader, its image information read."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path}")
    reader = _header(path)
    memory.check_fits(path, reader.GetSize(), reader.GetNumberOfComponents() * _component_bytes(reader.GetPixelID()),
                      volume_work)
    image_integrity.check_whole(path)
    return reader


def _header(path: str) -> sitk.ImageFileReader:
    """A reader of ``path`` with its image information (header) read, nothing else; a header
    that does not read is a ValueError (saying the file is damaged where it is)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        image_integrity.check_whole(path)  # a damaged file says so (e.g. its data file is missing)
        raise ValueError(f"Could not read {path}: {_last_line(error)}") from error
    return reader


_FLOAT_PIXELS = (sitk.sitkFloat32, sitk.sitkFloat64, sitk.sitkVectorFloat32, sitk.sitkVectorFloat64)


def _last_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else type(error).__name__


def _component_bytes(pixel_id: int) -> int:
    """Bytes of one component of a SimpleITK pixel type ("32-bit float" -> 4)."""
    found = re.search(r"(\d+)-bit", sitk.GetPixelIDValueAsString(pixel_id))
    return int(found.group(1)) // 8 if found else 8


def is_volume_file(path: str) -> bool:
    """Whether ``path`` holds a 3D volume (more than one slice); reads only the file's header."""
    path = str(path)
    _check_readable(path)
    size = _header(path).GetSize()
    return len(size) == 3 and size[2] > 1


def is_colour(image: sitk.Image) -> bool:
    return image.GetNumberOfComponentsPerPixel() in (3, 4)


def spatial_dimension(image: sitk.Image) -> int:
    """2 for images (a 3D file with a single slice counts as 2D), 3 for volumes."""
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        return 2
    return image.GetDimension()


def read_2d(path: str) -> Tuple[np.ndarray, sitk.Image]:
    """A 2D image as an array [row, col] (grey) or [row, col, channel] (colour), plus the image
    it came from (for its geometry). Raises ValueError for volumes."""
    image = read_image(path)
    if spatial_dimension(image) != 2:
        raise ValueError(
            f"{path} is a 3D volume of size {image.GetSize()}; a 2D image is needed here "
            "(`ibisagent continue` takes one slice of a volume with --plane and --index)."
        )
    array = sitk.GetArrayFromImage(image)
    if image.GetDimension() == 3:
        array = array[0]
    return array, image


def read_mask_2d(path: str, shape: Tuple[int, int]) -> np.ndarray:
    """A 2D mask (any non-zero pixel is inside) that must match ``shape`` (rows, cols)."""
    return read_mask_values_2d(path, shape) != 0


def read_mask_values_2d(path: str, shape: Tuple[int, int]) -> np.ndarray:
    """A 2D mask's own values [row, col] (its labels and data type; a colour mask's largest
    channel), which must match ``shape`` (rows, cols)."""
    array, image = read_2d(path)
    if is_colour(image):
        array = array[..., :3].max(axis=-1)
    if array.shape != tuple(shape):
        raise ValueError(f"The mask {path} has shape {array.shape}, but the image has shape {tuple(shape)}.")
    return array


def read_mask_volume(path: str, image: sitk.Image, image_path: str = "the image") -> np.ndarray:
    """A volume mask's own values [k, j, i] (labels and data type kept), which must lie on
    ``image``'s grid (`check_same_grid`) and hold one value per voxel."""
    mask = read_image(path)
    check_same_grid(mask, image, path, image_path)
    if mask.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"The mask {path} has {mask.GetNumberOfComponentsPerPixel()} values per voxel; a mask "
                         "holds one (a label).")
    return sitk.GetArrayFromImage(mask)


#: How far two grids may differ and still be one: spacing (relative), origin (in voxels),
#: direction cosines (absolute). Loose enough for the float32 geometry of NIfTI headers.
GRID_TOLERANCE = {"spacing": 1e-4, "origin": 1e-3, "direction": 1e-4}


def check_same_grid(mask: sitk.Image, image: sitk.Image, mask_path: str = "the mask",
                    image_path: str = "the image") -> None:
    """Refuse a mask whose voxels are not the image's voxels: same size, and spacing, origin
    and direction within `GRID_TOLERANCE`; the message prints both geometries."""
    same = mask.GetDimension() == image.GetDimension() and mask.GetSize() == image.GetSize()
    if same:
        spacing, origin = np.array(image.GetSpacing()), np.array(image.GetOrigin())
        same = (np.allclose(mask.GetSpacing(), spacing, rtol=GRID_TOLERANCE["spacing"], atol=0)
                and np.all(np.abs(np.array(mask.GetOrigin()) - origin) <= GRID_TOLERANCE["origin"] * spacing.min())
                and np.allclose(mask.GetDirection(), image.GetDirection(), rtol=0, atol=GRID_TOLERANCE["direction"]))
    if not same:
        raise ValueError(f"The mask {mask_path} is not on the grid of the image {image_path}: image "
                         f"{describe_grid(image)}; mask {describe_grid(mask)}. Resample the mask onto the image "
                         "(e.g. in 3D Slicer) and try again.")


def describe_grid(image: sitk.Image) -> str:
    def numbers(values) -> str:
        return "(" + ", ".join(f"{v:g}" for v in values) + ")"

    return (f"size {numbers(image.GetSize())}, spacing {numbers(image.GetSpacing())} mm, origin "
            f"{numbers(image.GetOrigin())} mm, direction {numbers(round(v, 4) for v in image.GetDirection())}")


def mask_image(mask: np.ndarray, reference: Optional[sitk.Image] = None, suffix: str = ".nii.gz") -> sitk.Image:
    """A bool mask (2D [row, col] or 3D [k, j, i]) as an image to write with ``suffix``: PNG and
    JPEG get 0/255, other formats 0/1 uint8 on the reference image's grid when given."""
    mask = np.asarray(mask, dtype=bool)
    if suffix in (".png", ".jpg", ".jpeg"):
        if mask.ndim != 2:
            raise ValueError("PNG and JPEG masks must be 2D; write volumes as .nii.gz or .nrrd.")
        return sitk.GetImageFromArray(mask.astype(np.uint8) * 255)
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    if reference is not None:
        _copy_geometry(image, reference)
    return image


def result_image(mask: np.ndarray, reference: Optional[sitk.Image], suffix: str, labels=None) -> sitk.Image:
    """A command's resulting mask as an image to write with ``suffix``: 0/1 (`mask_image`), or,
    with ``labels`` (the input's `label_mask.LabelMask`), the input's values in which only the
    worked label's voxels changed (`LabelMask.merged`, written by `label_image`)."""
    if labels is None:
        return mask_image(mask, reference, suffix)
    return label_image(labels.merged(mask), reference, suffix)


def label_image(values: np.ndarray, reference: Optional[sitk.Image] = None, suffix: str = ".nii.gz") -> sitk.Image:
    """A mask's values (labels, any integer or float type) as an image to write with
    ``suffix``, values and data type unchanged (PNG holds only 8- or 16-bit whole numbers)."""
    values = np.asarray(values)
    if values.dtype == bool:
        values = values.astype(np.uint8)
    if suffix in (".png", ".jpg", ".jpeg"):
        if values.ndim != 2:
            raise ValueError("PNG masks must be 2D; write volumes as .nii.gz or .nrrd.")
        if values.dtype not in (np.uint8, np.uint16):
            for kind in (np.uint8, np.uint16):
                if np.array_equal(values, values.astype(kind)):
                    values = values.astype(kind)
                    break
            else:
                raise ValueError("The mask's labels do not fit a PNG (whole numbers 0..65535); write it as .nii.gz "
                                 "or .nrrd.")
    image = sitk.GetImageFromArray(values)
    if reference is not None:
        _copy_geometry(image, reference)
    return image


def save_image(image: sitk.Image, path: str) -> None:
    """Write ``image`` to ``path`` as it is (compressed where the format allows): for a path a
    `safe_io.OutputSet` or `safe_io.OwnedFolder` staged. Use `write_mask` / `write_labels`
    for a file written on its own."""
    try:
        sitk.WriteImage(image, str(path), True)
    except RuntimeError as error:
        raise OSError(f"SimpleITK could not write it: {_last_line(error)}; check that the folder is writable and has "
                      "free space") from error


def output_suffix(path: str) -> str:
    suffix = suffix_of(path)
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"Cannot write a mask as {suffix or '(no suffix)'!r}; use .nii.gz, .nrrd or .png.")
    return suffix


def write_mask(path: str, mask: np.ndarray, reference: Optional[sitk.Image] = None) -> None:
    """Write a bool mask (2D [row, col] or 3D [k, j, i]) atomically. PNG/JPEG get 0/255, other
    formats 0/1 uint8 on the reference image's grid when given."""
    image = mask_image(mask, reference, output_suffix(str(path)))
    with safe_io.atomic_path(str(path)) as temporary:
        save_image(image, temporary)


def write_labels(path: str, values: np.ndarray, reference: Optional[sitk.Image] = None) -> None:
    """Write a mask's values (`label_image`) atomically."""
    image = label_image(values, reference, output_suffix(str(path)))
    with safe_io.atomic_path(str(path)) as temporary:
        save_image(image, temporary)


def _copy_geometry(target: sitk.Image, reference: sitk.Image) -> None:
    if reference.GetDimension() == target.GetDimension():
        if reference.GetSize() != target.GetSize():
            raise ValueError(f"Mask size {target.GetSize()} differs from the image size {reference.GetSize()}.")
        target.CopyInformation(reference)
    elif reference.GetDimension() == 3 and target.GetDimension() == 2:
        target.SetSpacing(reference.GetSpacing()[:2])
        target.SetOrigin(reference.GetOrigin()[:2])


@dataclass
class VolumeSlice:
    """One slice of a volume in display orientation, and how to put a 2D result back.

    ``pixels``: [row, col] (or [row, col, channel]) as the view shows it. ``put(volume_mask,
    slice_mask)`` returns a copy of ``volume_mask`` ([k, j, i] in the file's own order) with only
    this slice replaced.
    """

    pixels: np.ndarray
    plane: str
    index: int
    _orientation: str
    _reference: sitk.Image

    def take(self, volume_array: np.ndarray) -> np.ndarray:
        """The same slice of another array on the file's grid (e.g. a mask) in display order."""
        array = np.asarray(volume_array)
        if array.dtype == bool:
            array = array.astype(np.uint8)
        oriented = _to_lps(_array_like(array, self._reference))
        return _display_slice(sitk.GetArrayFromImage(oriented), self.plane, self.index).copy()

    def put(self, volume_mask: np.ndarray, slice_mask: np.ndarray) -> np.ndarray:
        image = _array_like(np.asarray(volume_mask).astype(np.uint8), self._reference)
        oriented = sitk.GetArrayFromImage(_to_lps(image))
        view = _display_slice(oriented, self.plane, self.index)
        if view.shape != np.shape(slice_mask):
            raise ValueError(f"The slice mask has shape {np.shape(slice_mask)}; the slice has {view.shape}.")
        view[...] = np.asarray(slice_mask, dtype=np.uint8)
        back = sitk.GetImageFromArray(oriented)
        back.CopyInformation(_to_lps(image))
        restored = sitk.DICOMOrient(back, self._orientation)
        return sitk.GetArrayFromImage(restored) != 0


def volume_slice(image: sitk.Image, plane: str, index: Optional[int] = None) -> VolumeSlice:
    """Slice ``image`` (3D) along ``plane`` at ``index``, the middle by default.

    ``index`` counts voxels along the volume's axis after reorienting to LPS: axial from the
    inferior end, coronal from the anterior end, sagittal from the patient's right.
    """
    if plane not in PLANES:
        raise ValueError(f"Unknown plane {plane!r}; choose one of: {', '.join(PLANES)}.")
    if image.GetDimension() != 3:
        raise ValueError("Only 3D volumes can be sliced; this image is 2D.")
    orientation = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    oriented = sitk.GetArrayFromImage(_to_lps(image))
    axis = {"axial": 0, "coronal": 1, "sagittal": 2}[plane]
    count = oriented.shape[axis]
    if index is None:
        index = count // 2
    if not 0 <= index < count:
        raise ValueError(f"Slice index {index} is outside 0..{count - 1} for the {plane} plane.")
    return VolumeSlice(_display_slice(oriented, plane, index).copy(), plane, index, orientation, image)


def _to_lps(image: sitk.Image) -> sitk.Image:
    return sitk.DICOMOrient(image, "LPS")


def _array_like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(np.asarray(array))
    if image.GetSize() != reference.GetSize():
        raise ValueError(f"Array of shape {np.shape(array)} does not match the volume size {reference.GetSize()}.")
    image.CopyInformation(reference)
    return image


def _display_slice(lps_array: np.ndarray, plane: str, index: int) -> np.ndarray:
    """A view (not a copy) into an LPS-ordered [k=S, j=P, i=L] array, in display orientation."""
    if plane == "axial":  # rows anterior -> posterior (j up), cols right -> left (i up)
        return lps_array[index, :, :]
    if plane == "coronal":  # rows superior -> inferior (k down), cols right -> left
        return lps_array[::-1, index, :]
    return lps_array[::-1, :, index]  # sagittal: rows superior -> inferior, cols anterior -> posterior


#: The axis of an LPS-ordered [k=S, j=P, i=L] array that each plane's slices are taken along.
_PLANE_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}


def _display_stack(lps_array: np.ndarray, plane: str) -> np.ndarray:
    """A view (not a copy) of every slice of ``plane`` at once, [index, row, col(, channel)];
    ``stack[n]`` is ``_display_slice(lps_array, plane, n)``."""
    if plane == "axial":
        return lps_array
    return np.moveaxis(lps_array[::-1], _PLANE_AXIS[plane], 0)


@dataclass
class VolumeStack:
    """Every slice of a volume along one plane, in display orientation (as `VolumeSlice`, but
    all at once, for propagating a mask from slice to slice).

    ``slices``: [index, row, col] (or [index, row, col, channel]); ``slices[n]`` is what
    ``volume_slice(image, plane, n).pixels`` gives. `take` slices another array on the file's grid
    the same way; `put` writes 2D masks back into chosen slices of a volume mask.
    """

    slices: np.ndarray
    plane: str
    _orientation: str
    _reference: sitk.Image

    def take(self, volume_array: np.ndarray) -> np.ndarray:
        """Another array on the file's grid ([k, j, i], e.g. a mask) as [index, row, col]."""
        array = np.asarray(volume_array)
        if array.dtype == bool:
            array = array.astype(np.uint8)
        oriented = sitk.GetArrayFromImage(_to_lps(_array_like(array, self._reference)))
        return np.ascontiguousarray(_display_stack(oriented, self.plane))

    def put(self, volume_mask: np.ndarray, slice_masks: dict) -> np.ndarray:
        """A copy of ``volume_mask`` (bool [k, j, i], the file's order) with the slices named in
        ``slice_masks`` ({index: bool (rows, cols)}) replaced; every other voxel is unchanged."""
        image = _array_like(np.asarray(volume_mask).astype(np.uint8), self._reference)
        lps = _to_lps(image)
        oriented = sitk.GetArrayFromImage(lps)
        stack = _display_stack(oriented, self.plane)
        for index, mask in slice_masks.items():
            if not 0 <= int(index) < stack.shape[0]:
                raise ValueError(f"Slice index {index} is outside 0..{stack.shape[0] - 1} for the {self.plane} plane.")
            if stack[int(index)].shape != np.shape(mask):
                raise ValueError(f"The mask for slice {index} has shape {np.shape(mask)}; the slice has "
                                 f"{stack[int(index)].shape}.")
            stack[int(index)] = np.asarray(mask, dtype=np.uint8)
        back = sitk.GetImageFromArray(oriented)
        back.CopyInformation(lps)
        return sitk.GetArrayFromImage(sitk.DICOMOrient(back, self._orientation)) != 0


def display_axes(image: sitk.Image, plane: str) -> Tuple[Tuple[int, bool], Tuple[int, bool], Tuple[int, bool]]:
    """How `volume_stack` lays out ``plane`` of ``image`` (3D), as axes of the file's own array
    [k, j, i]: ((axis, reversed) of the slice index, of the rows, of the columns). ``reversed``:
    that display axis counts the array axis backwards. So ``stack[n, r, c]`` is
    ``array[...]`` at the three array indices these give, without reorienting the volume.

    Found by putting a small probe volume with the image's direction through the very
    reorientation `volume_stack` uses, so the two can never disagree."""
    if plane not in PLANES:
        raise ValueError(f"Unknown plane {plane!r}; choose one of: {', '.join(PLANES)}.")
    sizes = (3, 4, 5)  # [k, j, i]; distinct, so each display axis names one array axis
    steps = (100, 10, 1)
    probe = sitk.GetImageFromArray(np.add.outer(np.add.outer(100 * np.arange(3), 10 * np.arange(4)),
                                                np.arange(5)).astype(np.int16))
    probe.SetDirection(image.GetDirection())
    stack = _display_stack(sitk.GetArrayFromImage(_to_lps(probe)), plane)
    axes = []
    for display_axis in range(3):
        index = [0, 0, 0]
        index[display_axis] = 1
        step = int(stack[tuple(index)]) - int(stack[0, 0, 0])
        axis = steps.index(abs(step))
        if stack.shape[display_axis] != sizes[axis]:
            raise RuntimeError(f"Could not map the {plane} display axes onto the volume's array axes.")
        axes.append((axis, step < 0))
    return tuple(axes)


def volume_stack(image: sitk.Image, plane: str) -> VolumeStack:
    """All slices of the 3D ``image`` along ``plane``, indexed as `volume_slice` counts them."""
    if plane not in PLANES:
        raise ValueError(f"Unknown plane {plane!r}; choose one of: {', '.join(PLANES)}.")
    if spatial_dimension(image) != 3:
        raise ValueError("Only 3D volumes have slices to propagate through; this image is 2D.")
    orientation = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    oriented = sitk.GetArrayFromImage(_to_lps(image))
    return VolumeStack(np.ascontiguousarray(_display_stack(oriented, plane)), plane, orientation, image)
