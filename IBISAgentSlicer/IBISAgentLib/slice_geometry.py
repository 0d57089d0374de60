"""The one place where slice-view pixels, volume voxels (IJK) and patient coordinates (RAS) meet.

Frames and conventions used here and everywhere else in IBISAgentLib:

- **Volume arrays** (``slicer.util.arrayFromVolume``) are indexed ``[k, j, i]`` (scalar) or
  ``[k, j, i, component]`` (vector volumes). Voxel centres sit at integer IJK.
- **IJK -> RAS** is the volume's ``GetIJKToRASMatrix`` (millimetres, RAS). Volumes under a parent
  transform are refused: harden the transform first.
- **Slice pixels** are what the user sees in a Red/Yellow/Green view: a 2D array indexed
  ``[row, col]`` with row 0 at the *top* of the view and col 0 at its *left*. One pixel is one
  voxel of the volume (no resampling), so a click on pixel (col, row) is a click on exactly one
  voxel. Pixels of anisotropic volumes are not stretched to the view's aspect ratio.

A view is usable when its slice normal and its two in-plane axes (the columns of the slice
node's SliceToRAS matrix) are each parallel to one IJK axis of the volume, in either direction.
That covers all three standard views for any volume whose axes are permutations and flips of
RAS (LPS DICOM, RAS NIfTI, sagittal acquisitions, ...). Oblique views are refused with
`SliceGeometryError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

#: Standard slice views by layout name.
VIEW_NAMES = ("Red", "Yellow", "Green")
#: 1 - |cos(angle)| below which a slice axis counts as parallel to a volume axis (about 0.8 deg).
ALIGNMENT_TOLERANCE = 1e-4
#: How far (in voxels) a point may sit off the worked slice and still count as on it.
OFF_PLANE_TOLERANCE = 0.5 + 1e-3


class SliceGeometryError(ValueError):
    """The view cannot be mapped onto the volume's voxel grid (oblique, outside, transformed)."""


def vtk_matrix_to_numpy(matrix) -> np.ndarray:
    """A vtkMatrix4x4 (or 3x3) as a float64 numpy array."""
    size = 4 if matrix.IsA("vtkMatrix4x4") else 3
    return np.array([[matrix.GetElement(r, c) for c in range(size)] for r in range(size)], dtype=float)


def find_slice_node(view, scene=None):
    """The vtkMRMLSliceNode of ``view``: a slice node itself, or a layout name ("Red", ...)."""
    if hasattr(view, "GetSliceToRAS"):
        return view
    if scene is None:
        import slicer

        scene = slicer.mrmlScene
    node = scene.GetNodeByID("vtkMRMLSliceNode" + str(view))
    if node is not None:
        return node
    nodes = scene.GetNodesByClass("vtkMRMLSliceNode")
    for index in range(nodes.GetNumberOfItems()):
        candidate = nodes.GetItemAsObject(index)
        if candidate.GetLayoutName() == view or candidate.GetName() == view:
            return candidate
    raise SliceGeometryError(
        f"There is no slice view called {view!r}; use one of {', '.join(VIEW_NAMES)}."
    )


def check_untransformed(node, what: str) -> None:
    """Refuse nodes under a parent transform: their voxels are not where IJKToRAS says."""
    if node.GetParentTransformNode() is not None:
        raise SliceGeometryError(
            f"The {what} '{node.GetName()}' is under a transform. Harden the transform (Data "
            f"module, right-click, 'Harden transform') or remove it, then try again."
        )


@dataclass(frozen=True)
class SliceGeometry:
    """How one slice of one volume is laid out as a 2D image in display orientation.

    ``col_axis``/``row_axis``/``normal_axis`` are IJK axis numbers (0 = i, 1 = j, 2 = k).
    ``col_sign`` is +1 when moving right on screen increases that index, else -1; ``row_sign``
    is +1 when moving *up* on screen increases the row axis index. ``slice_index`` is the
    voxel index along ``normal_axis``. ``dimensions`` are (ni, nj, nk).
    """

    view: str
    ijk_to_ras: np.ndarray
    dimensions: Tuple[int, int, int]
    col_axis: int
    col_sign: int
    row_axis: int
    row_sign: int
    normal_axis: int
    slice_index: int

    # -- shape -------------------------------------------------------------------------------
    @property
    def shape(self) -> Tuple[int, int]:
        """(rows, cols) of the slice image."""
        return self.dimensions[self.row_axis], self.dimensions[self.col_axis]

    # -- pixel <-> IJK -------------------------------------------------------------------------
    def pixel_to_ijk(self, col, row) -> np.ndarray:
        """Integer IJK of pixel (col, row); scalars give shape (3,), arrays give (..., 3)."""
        col = np.asarray(col, dtype=np.int64)
        row = np.asarray(row, dtype=np.int64)
        rows, cols = self.shape
        if np.any((col < 0) | (col >= cols) | (row < 0) | (row >= rows)):
            raise SliceGeometryError(f"Pixel (col={col}, row={row}) is outside the {cols}x{rows} slice image.")
        ijk = np.empty(np.broadcast(col, row).shape + (3,), dtype=np.int64)
        n_col = self.dimensions[self.col_axis]
        n_row = self.dimensions[self.row_axis]
        ijk[..., self.col_axis] = col if self.col_sign > 0 else n_col - 1 - col
        ijk[..., self.row_axis] = (n_row - 1 - row) if self.row_sign > 0 else row
        ijk[..., self.normal_axis] = self.slice_index
        return ijk

    def ijk_to_pixel(self, ijk) -> Tuple[int, int]:
        """(col, row) of integer voxel ``ijk``; raises if it is not on this slice."""
        ijk = [int(v) for v in ijk]
        if ijk[self.normal_axis] != self.slice_index:
            raise SliceGeometryError(
                f"Voxel {tuple(ijk)} is not on the worked slice (index {self.slice_index} along "
                f"IJK axis {'ijk'[self.normal_axis]})."
            )
        n_col = self.dimensions[self.col_axis]
        n_row = self.dimensions[self.row_axis]
        c = ijk[self.col_axis] if self.col_sign > 0 else n_col - 1 - ijk[self.col_axis]
        r = (n_row - 1 - ijk[self.row_axis]) if self.row_sign > 0 else ijk[self.row_axis]
        if not (0 <= c < n_col and 0 <= r < n_row):
            raise SliceGeometryError(f"Voxel {tuple(ijk)} is outside the volume.")
        return c, r

    # -- IJK <-> RAS ---------------------------------------------------------------------------
    def ijk_to_ras_point(self, ijk) -> np.ndarray:
        """RAS (mm) of continuous IJK ``ijk``."""
        return (self.ijk_to_ras @ np.append(np.asarray(ijk, dtype=float), 1.0))[:3]

    def ras_to_ijk_point(self, ras) -> np.ndarray:
        """Continuous IJK of RAS (mm) ``ras``."""
        return (np.linalg.inv(self.ijk_to_ras) @ np.append(np.asarray(ras, dtype=float), 1.0))[:3]

    def ras_to_voxel(self, ras) -> Tuple[int, int, int]:
        """(k, j, i) of the voxel containing RAS point ``ras``, on any slice (a point placed in any
        view). Raises SliceGeometryError outside the volume."""
        ijk = np.floor(self.ras_to_ijk_point(ras) + 0.5).astype(np.int64)
        if np.any(ijk < 0) or np.any(ijk >= np.asarray(self.dimensions)):
            raise SliceGeometryError(
                f"The point at RAS ({ras[0]:.1f}, {ras[1]:.1f}, {ras[2]:.1f}) is outside the volume; move it "
                f"inside the image or delete it."
            )
        return int(ijk[2]), int(ijk[1]), int(ijk[0])

    def plane_axes(self):
        """This view's slices as an ``ibisagent.volume_views.PlaneAxes`` of the [k, j, i] array:
        the slice index runs along IJK ``normal_axis``, rows along ``row_axis`` (backwards when
        moving up the screen raises the index), columns along ``col_axis``."""
        from ibisagent.volume_views import PlaneAxes

        return PlaneAxes((2 - self.normal_axis, False), (2 - self.row_axis, self.row_sign > 0),
                         (2 - self.col_axis, self.col_sign < 0))

    # -- pixel <-> RAS -------------------------------------------------------------------------
    def pixel_to_ras(self, col: int, row: int) -> np.ndarray:
        """RAS (mm) of the centre of the voxel under pixel (col, row)."""
        return self.ijk_to_ras_point(self.pixel_to_ijk(col, row))

    def ras_to_pixel(self, ras) -> Tuple[int, int]:
        """(col, row) of the voxel containing RAS point ``ras``.

        Raises SliceGeometryError when the point is more than half a voxel off the worked
        slice or outside the slice image.
        """
        ijk = self.ras_to_ijk_point(ras)
        off = abs(ijk[self.normal_axis] - self.slice_index)
        if off > OFF_PLANE_TOLERANCE:
            raise SliceGeometryError(
                f"The point at RAS ({ras[0]:.1f}, {ras[1]:.1f}, {ras[2]:.1f}) is {off:.1f} voxels "
                f"off the worked slice of the {self.view} view; move it onto that slice or delete it."
            )
        nearest = np.floor(ijk + 0.5).astype(np.int64)
        nearest[self.normal_axis] = self.slice_index
        if np.any(nearest < 0) or np.any(nearest >= np.asarray(self.dimensions)):
            raise SliceGeometryError(
                f"The point at RAS ({ras[0]:.1f}, {ras[1]:.1f}, {ras[2]:.1f}) is outside the "
                f"volume; move it inside the image or delete it."
            )
        return self.ijk_to_pixel(nearest)

    # -- arrays ----------------------------------------------------------------------------------
    def kji_index(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Index arrays (k, j, i), each (rows, cols), picking the slice out of a [k, j, i] array."""
        rows, cols = self.shape
        r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        ijk = self.pixel_to_ijk(c, r)
        return ijk[..., 2], ijk[..., 1], ijk[..., 0]

    def extract(self, array_kji: np.ndarray) -> np.ndarray:
        """The slice of a [k, j, i] (or [k, j, i, c]) array as (rows, cols[, c]), display order."""
        return np.ascontiguousarray(np.asarray(array_kji)[self.kji_index()])

    def insert(self, array_kji: np.ndarray, slice_2d: np.ndarray) -> np.ndarray:
        """A copy of ``array_kji`` with this slice replaced by ``slice_2d`` (rows, cols)."""
        out = np.array(array_kji, copy=True)
        if np.shape(slice_2d) != self.shape:
            raise ValueError(f"The slice array has shape {np.shape(slice_2d)}; expected {self.shape}.")
        out[self.kji_index()] = slice_2d
        return out

    def to_dict(self) -> dict:
        """JSON-ready description (stored with click histories)."""
        return {
            "view": self.view,
            "dimensions": list(self.dimensions),
            "col_axis": self.col_axis, "col_sign": self.col_sign,
            "row_axis": self.row_axis, "row_sign": self.row_sign,
            "normal_axis": self.normal_axis, "slice_index": self.slice_index,
        }


def _aligned_axis(direction: np.ndarray, axes: np.ndarray, what: str, view: str) -> Tuple[int, int]:
    """The IJK axis parallel to ``direction`` and the sign of the match."""
    direction = direction / np.linalg.norm(direction)
    cosines = axes.T @ direction
    axis = int(np.argmax(np.abs(cosines)))
    if 1.0 - abs(cosines[axis]) > ALIGNMENT_TOLERANCE:
        raise SliceGeometryError(
            f"The {view} view is oblique to the volume (its {what} is not parallel to a volume "
            f"axis). Reset the view's orientation to Axial, Sagittal or Coronal, or use a view "
            f"aligned with the volume, then try again."
        )
    return axis, 1 if cosines[axis] > 0 else -1


def slice_geometry(volume_node, view="Red", scene=None, clamp: bool = False) -> SliceGeometry:
    """The geometry of the slice currently shown in ``view`` (layout name or slice node).
    ``clamp``: a view scrolled off the volume gives its nearest slice instead of an error (for
    the view's layout alone)."""
    check_untransformed(volume_node, "volume")
    image = volume_node.GetImageData()
    if image is None:
        raise SliceGeometryError(f"The volume '{volume_node.GetName()}' has no image data.")
    slice_node = find_slice_node(view, scene)
    name = slice_node.GetLayoutName() or slice_node.GetName()
    slice_to_ras = vtk_matrix_to_numpy(slice_node.GetSliceToRAS())
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = vtk_matrix_to_numpy(matrix)
    axes = ijk_to_ras[:3, :3] / np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    col_axis, col_sign = _aligned_axis(slice_to_ras[:3, 0], axes, "horizontal axis", name)
    row_axis, row_sign = _aligned_axis(slice_to_ras[:3, 1], axes, "vertical axis", name)
    normal_axis, _ = _aligned_axis(slice_to_ras[:3, 2], axes, "normal", name)
    if len({col_axis, row_axis, normal_axis}) != 3:
        raise SliceGeometryError(f"The {name} view's axes do not match three distinct volume axes.")
    dimensions = tuple(int(d) for d in image.GetDimensions())
    origin_ijk = (np.linalg.inv(ijk_to_ras) @ slice_to_ras[:, 3])[:3]
    position = origin_ijk[normal_axis]
    index = int(np.floor(position + 0.5))
    if clamp:
        index = min(max(index, 0), dimensions[normal_axis] - 1)
    if not 0 <= index < dimensions[normal_axis]:
        raise SliceGeometryError(
            f"The {name} view shows a slice outside the volume '{volume_node.GetName()}'; "
            f"scroll that view onto the volume and try again."
        )
    return SliceGeometry(name, ijk_to_ras, dimensions, col_axis, col_sign, row_axis, row_sign, normal_axis, index)


def set_view_to_slice(geometry: SliceGeometry, view=None, scene=None) -> None:
    """Move ``view``'s slice offset onto the centre of the worked slice (e.g. after undo)."""
    slice_node = find_slice_node(view or geometry.view, scene)
    centre = geometry.pixel_to_ras(0, 0)
    normal = vtk_matrix_to_numpy(slice_node.GetSliceToRAS())[:3, 2]
    slice_node.SetSliceOffset(float(np.dot(centre, normal / np.linalg.norm(normal))))


# -- what the user sees ---------------------------------------------------------------------------
def slice_array(volume_node, geometry: SliceGeometry) -> np.ndarray:
    """Raw voxel values of the slice, (rows, cols) or (rows, cols, components), display order."""
    from slicer.util import arrayFromVolume

    return geometry.extract(arrayFromVolume(volume_node))


def display_window(volume_node) -> Optional[Tuple[float, float]]:
    """(low, high) of the volume's window/level in its display node, or None if unset."""
    display = volume_node.GetDisplayNode()
    if display is None or not hasattr(display, "GetWindow"):
        return None
    window, level = float(display.GetWindow()), float(display.GetLevel())
    if not window > 0:
        return None
    return level - window / 2.0, level + window / 2.0


def window_to_rgb(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    """Grey (rows, cols) -> RGB uint8 (rows, cols, 3) as a slice view draws it: linear between
    ``low`` (black) and ``high`` (white), clamped outside."""
    values = np.asarray(pixels, dtype=np.float64)
    grey = np.rint(np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def slice_rgb(volume_node, geometry: SliceGeometry) -> np.ndarray:
    """The slice as the model should see it: RGB uint8 (rows, cols, 3) in display order.

    Scalar volumes go through the display node's window/level (falling back to the slice's
    1st-99th percentile when no window is set); colour (vector) volumes keep their colours.
    """
    from ibisagent.imaging import to_rgb

    pixels = slice_array(volume_node, geometry)
    if pixels.ndim == 3:
        return to_rgb(pixels)
    window = display_window(volume_node)
    if window is None:
        return to_rgb(pixels)
    return window_to_rgb(pixels, *window)
