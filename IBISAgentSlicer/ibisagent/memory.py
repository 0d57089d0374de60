"""How much memory the work on an image may take: the budget a command checks before it reads an
image, and the machine figures the server's session cap starts from.

A command refuses an image whose work would not fit, before allocating anything for it, with
the image's size and what to do (crop or downsample), instead of dying half-way with a
``MemoryError`` traceback. The estimate is per pixel, measured (see `WORK_BYTES_PER_PIXEL`),
plus the volume itself for 3D work. The budget is ``IBISAGENT_MEMORY_MB`` when set, else
`BUDGET_FRACTION` of the memory available when the check runs.

`return_free_memory` hands memory the process freed back to the system (the server calls it when
a session ends): glibc keeps freed blocks of a large heap for reuse, so without it the server's
resident memory stays at its high-water mark after its sessions are closed.

Standard library only (``/proc/meminfo`` on Linux, ``os.sysconf`` elsewhere, ``ctypes`` for
glibc's ``malloc_trim``); imports on Python 3.9.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Optional, Sequence

#: Environment variable: the memory budget of one command, in MB (overrides the default).
BUDGET_ENV = "IBISAGENT_MEMORY_MB"
#: The default budget: this fraction of the memory available when a command starts.
BUDGET_FRACTION = 0.5
#: Peak bytes per pixel of a 2D episode (the RGB image, the masks and undo history, the tool's
#: per-pixel state, the look-ahead's trial masks): measured peak RSS growth of `ibisagent
#: continue` at 2000 x 2000 against 64 x 64 with the default heuristic policy and graphcut tool,
#: 46 B per pixel for 3 steps (the server holds 52 to 69 per session after one step,
#: `benchmarks/bench_server_memory.py`); 120 leaves room for a long undo history and the
#: tool's transients on harder images.
WORK_BYTES_PER_PIXEL = 120
#: Peak bytes per voxel of a volume command besides the voxels themselves (the reoriented copy,
#: the slice stack, the masks on the file's grid and in display order): `ibisagent propagate`
#: on int16 volumes of 200 x 256 x 256 and 300 x 384 x 384 voxels peaked 16 B per voxel above
#: a tiny volume's run, 2 of them the voxels.
VOLUME_BYTES_PER_VOXEL = 14
#: The same for a session on the whole volume (`ibisagent continue` without ``--plane``): the
#: grey levels as RGB slices of three planes, the session's masks and undo boxes, the 3D tool's
#: per-voxel state and each click's working arrays over the region it re-decides. Peak RSS
#: growth against a tiny volume's run, float32 volumes, graphcut3d (the default): 39 B per
#: voxel beyond the voxels for three clicks on a BraTS tumour (240 x 240 x 155; a click
#: re-decides the tumour's surroundings), 85 for two clicks on the MNI152 whole brain
#: (197 x 233 x 189; it re-decides nearly the whole volume). The larger, rounded up.
SESSION3D_BYTES_PER_VOXEL = 90


class ImageTooLargeError(ValueError):
    """The image's work would take more memory than the budget allows."""


def machine_bytes() -> int:
    """The machine's physical memory in bytes (0 if unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 0


def available_bytes() -> int:
    """Memory available to a new allocation now: ``MemAvailable`` of /proc/meminfo, else the
    machine's physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return machine_bytes()


def budget_bytes() -> Optional[int]:
    """The budget of this command in bytes (None: unknown, nothing is refused)."""
    given = os.environ.get(BUDGET_ENV, "").strip()
    if given:
        try:
            megabytes = float(given)
        except ValueError:
            raise ValueError(f"{BUDGET_ENV}={given!r}: give the memory budget in MB, e.g. 4000.") from None
        if megabytes <= 0:
            raise ValueError(f"{BUDGET_ENV}={given!r}: the memory budget must be positive.")
        return int(megabytes * 2**20)
    available = available_bytes()
    return int(available * BUDGET_FRACTION) if available else None


def work_bytes(size: Sequence[int], bytes_per_voxel: int, volume_work: int = VOLUME_BYTES_PER_VOXEL) -> int:
    """Estimated peak bytes of working on an image of ``size`` (SimpleITK order: (x, y) or
    (x, y, z)) whose voxels take ``bytes_per_voxel`` each: a 2D episode on its largest slice,
    plus, for a volume, the volume and ``volume_work`` bytes per voxel for its copies
    (`VOLUME_BYTES_PER_VOXEL`, or `SESSION3D_BYTES_PER_VOXEL` for a whole-volume session)."""
    extents = sorted((int(n) for n in size), reverse=True)
    plane = extents[0] * (extents[1] if len(extents) > 1 else 1)
    voxels = 1
    for extent in extents:
        voxels *= extent
    total = plane * WORK_BYTES_PER_PIXEL
    if len(extents) > 2 and extents[2] > 1:
        total += voxels * (bytes_per_voxel + volume_work)
    return total


def check_fits(path: str, size: Sequence[int], bytes_per_voxel: int, volume_work: int = VOLUME_BYTES_PER_VOXEL) -> None:
    """Refuse (`ImageTooLargeError`) an image whose work (`work_bytes`) exceeds the budget,
    naming its size."""
    budget = budget_bytes()
    if budget is None:
        return
    needed = work_bytes(size, bytes_per_voxel, volume_work)
    if needed <= budget:
        return
    shape = " x ".join(str(int(n)) for n in size)
    where = f"{BUDGET_ENV}" if os.environ.get(BUDGET_ENV, "").strip() else (
        f"{int(BUDGET_FRACTION * 100)}% of the memory available now; set {BUDGET_ENV} to change it")
    raise ImageTooLargeError(
        f"{path} is {shape} {'voxels' if len(size) > 2 and size[2] > 1 else 'pixels'}: working on it would take "
        f"about {format_bytes(needed)}, more than the memory budget of {format_bytes(budget)} ({where}). Crop it "
        "to the region you segment, or downsample it, and try again.")


def format_bytes(count: float) -> str:
    """1536 -> '1.5 KB' (binary units, one decimal)."""
    value = float(count)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def return_free_memory() -> bool:
    """Give the memory freed so far back to the system (glibc ``malloc_trim(0)``); False where
    there is no glibc (macOS, Windows, musl), which return large blocks by themselves."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        return False
    trim(0)
    return True
