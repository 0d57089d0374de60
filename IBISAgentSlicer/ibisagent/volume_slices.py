"""A volume's slices as the model and the tools see them, with one window for the whole volume.

Propagation compares neighbouring slices, so every slice must be shown through the *same* grey
window: a per-slice window (the 2D default) would change the contrast from slice to slice. The
window follows `ibisagent.imaging.to_rgb`'s rules, taken over the whole volume: 8-bit grey data
is shown unchanged, other grey data through a CT preset, an explicit (low, high), or the
volume's 1st-99th percentile; colour volumes keep their colours. Slices are made on demand, so a
large volume is never held twice in RGB.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .imaging import Window, resolve_window

#: Voxels sampled (evenly spaced) to estimate the volume's percentile window.
PERCENTILE_SAMPLE = 2_000_000


class RGBSlices:
    """``stack`` [index, row, col] (grey) or [index, row, col, 3|4] (colour) as a sequence of RGB
    uint8 (row, col, 3) slices; ``window`` as in `ibisagent.imaging.to_rgb`."""

    def __init__(self, stack: np.ndarray, window: Window = None) -> None:
        stack = np.asarray(stack)
        if stack.ndim not in (3, 4) or (stack.ndim == 4 and stack.shape[3] not in (3, 4)):
            raise ValueError(f"Expected slices [index, row, col] or [index, row, col, 3]; got shape {stack.shape}.")
        if stack.shape[0] == 0 or stack.shape[1] < 2 or stack.shape[2] < 2:
            raise ValueError(f"The volume is too small to propagate through: {stack.shape[:3]}.")
        if stack.dtype == bool:
            stack = stack.astype(np.uint8)
        if not np.issubdtype(stack.dtype, np.number):
            raise ValueError(f"The volume must hold numbers; got {stack.dtype}.")
        self.stack = stack
        self.window: Optional[Tuple[float, float]] = None
        if stack.dtype != np.uint8 or window is not None:
            self.window = _volume_window(stack, window)

    def __len__(self) -> int:
        return int(self.stack.shape[0])

    def __getitem__(self, index: int) -> np.ndarray:
        pixels = self.stack[int(index)]
        if pixels.ndim == 3:
            pixels = pixels[..., :3]
        if self.window is None:
            rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2)
            return np.ascontiguousarray(rgb, dtype=np.uint8)
        low, high = self.window
        scaled = np.clip((pixels.astype(np.float64) - low) / (high - low), 0.0, 1.0) * 255.0
        grey = np.rint(scaled).astype(np.uint8)
        return grey if grey.ndim == 3 else np.repeat(grey[:, :, None], 3, axis=2)

    @property
    def shape(self) -> Tuple[int, int]:
        """(rows, cols) of every slice."""
        return int(self.stack.shape[1]), int(self.stack.shape[2])


def _volume_window(stack: np.ndarray, window: Window) -> Tuple[float, float]:
    if np.issubdtype(stack.dtype, np.floating) and not np.isfinite(stack).all():
        raise ValueError("The volume contains NaN or infinite values; fix or mask them before segmenting.")
    values = stack.reshape(-1)
    if values.size > PERCENTILE_SAMPLE:
        values = values[:: values.size // PERCENTILE_SAMPLE]
    values = values.astype(np.float64)
    if window is None and values.min() == values.max():
        raise ValueError(f"The volume is constant (every voxel is {values.min():g}); there is nothing to segment.")
    return resolve_window(window, values)
