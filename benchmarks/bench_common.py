"""Shared pieces of the benchmark scripts: timing statistics, the test slices, the 3D dev volumes
and MNI152 structures with their one target each, a server with a chosen engine, and plain-text
tables.

Timing convention: every figure is a wall-clock time from ``time.perf_counter`` in milliseconds,
reported as the median and the 95th percentile of repeated calls after one warm-up call. Goals
are compared with ratios against a baseline measured in the same run, never with absolute
thresholds inside tests, because the benchmark machines are shared and noisy.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(HERE, "results")
FIGURES_DIR = os.path.join(HERE, "figures")
#: The server test helpers (a real uvicorn server in a thread) are shared with the benchmarks.
SERVER_TEST_DIR = os.path.join(ROOT, "Testing", "tests", "server")
SLICER_TEST_DIR = os.path.join(ROOT, "Testing", "tests", "slicer")
#: The dev set's 3D volumes (NAME_image/_label/_initial.nii.gz, NAME_labels.json; SOURCES.md there).
DEVSET_3D = os.path.join(ROOT, "..", "shared", "data", "devset", "3d")
#: The MNI152 structures the 3D benchmarks measure: (tissue, what the target is).
MNI152_TARGETS = (("brain", "brain mask"), ("white", "white matter"), ("grey", "grey matter (thin ribbon)"))

for _path in (HERE, os.path.join(ROOT, "IBISAgentSlicer"), SERVER_TEST_DIR):
    if _path not in sys.path:
        sys.path.insert(0, _path)

SIZES = (256, 512, 1024)


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds, dtype=float), q) * 1000.0) if len(seconds) else float("nan")


def stats(seconds: Sequence[float]) -> Dict[str, float]:
    """{"median_ms", "p95_ms", "n"} of a list of durations in seconds."""
    return {"median_ms": round(percentile_ms(seconds, 50), 4), "p95_ms": round(percentile_ms(seconds, 95), 4),
            "n": len(seconds)}


def time_calls(function: Callable[[], object], repeats: int, warmup: int = 1) -> List[float]:
    """Seconds of ``repeats`` calls of ``function`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        function()
    durations = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        durations.append(time.perf_counter() - started)
    return durations


def baseline_copy(shape, repeats: int = 200) -> Dict[str, float]:
    """The in-run baseline for array work: ``np.copy`` of a bool mask of ``shape``."""
    mask = np.zeros(shape, dtype=bool)
    return stats(time_calls(lambda: np.copy(mask), repeats, warmup=5))


#: The MNI152 slice set's offsets (voxels) either side of the brain's centre slice.
SLICE_OFFSET = 12


def slice_set(quick: bool) -> List[tuple]:
    """[(name, float image (H, W), truth bool (H, W))] in display orientation: the MNI152 tissues
    brain, grey, white x planes axial, coronal, sagittal x the slice at the brain's centre and
    +-`SLICE_OFFSET` voxels (``quick``: the centre only); slices with under 50 mask pixels are left out."""
    from ibisagent.sample_data import PLANES, TISSUES, centre_index, display_slice, mni152_volume

    cases = []
    for tissue in TISSUES:
        t1, mask, _ = mni152_volume(tissue)
        for plane in PLANES:
            centre = centre_index(mask, plane)
            for index in ([centre] if quick else [centre - SLICE_OFFSET, centre, centre + SLICE_OFFSET]):
                truth = display_slice(mask, plane, index)
                if truth.sum() < 50:
                    continue
                cases.append((f"{tissue}/{plane}/{index}", display_slice(t1, plane, index), truth))
    return cases


def square_case(size: int, tissue: str = "white", plane: str = "axial"):
    """(RGB uint8 (size, size, 3), truth bool (size, size)): an MNI152 slice stretched to a square
    of ``size`` pixels (bilinear for the image, nearest for the mask)."""
    from PIL import Image

    from ibisagent.imaging import to_rgb
    from ibisagent.sample_data import mni152_slice

    image, truth = _cached_slice(tissue, plane, mni152_slice)
    rgb = np.asarray(Image.fromarray(to_rgb(image)).resize((size, size), Image.BILINEAR))
    mask = np.asarray(Image.fromarray(truth.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)) > 127
    return np.ascontiguousarray(rgb), mask


_SLICES: Dict[tuple, tuple] = {}


def _cached_slice(tissue: str, plane: str, loader):
    key = (tissue, plane)
    if key not in _SLICES:
        _SLICES[key] = loader(tissue, plane)
    return _SLICES[key]


def choose_target(name: str, labels: np.ndarray, names: Dict[str, str]):
    """(bool target, its description) for one dev volume's label map: BraTS, the whole tumour
    (every label > 0); DeepLesion, the lesion (label 1); otherwise the one label, or the largest
    (an instance map)."""
    if name.startswith("mri_brats"):
        return labels > 0, "whole tumour (all labels)"
    if name.startswith("ct_deeplesion"):
        return labels == 1, names.get("1", "label 1")
    values, counts = np.unique(labels[labels > 0], return_counts=True)
    if len(values) == 1:
        return labels == values[0], names.get(str(values[0]), f"label {values[0]}")
    largest = int(values[np.argmax(counts)])
    return labels == largest, f"{names.get(str(largest), f'label {largest}')} (the largest of {len(values)})"


def dev_volumes(devset: Optional[str], keep: Optional[Callable[[str], bool]] = None
                ) -> Iterator[Tuple[str, sitk.Image, sitk.Image, np.ndarray, str]]:
    """(name, image, label map, bool target [k, j, i], what the target is) of every 3D dev volume
    in ``devset`` that ``keep(name)`` accepts (all by default), by name, read one at a time; the
    target as `choose_target` picks it. A missing folder: one line on stderr, nothing yielded."""
    if not (devset and os.path.isdir(devset)):
        print(f"The 3D dev volumes are not at {devset}; only the MNI152 volumes are measured.", file=sys.stderr)
        return
    import json

    for entry in sorted(os.listdir(devset)):
        if not entry.endswith("_image.nii.gz"):
            continue
        name = entry[: -len("_image.nii.gz")]
        if keep is not None and not keep(name):
            continue
        image = sitk.ReadImage(os.path.join(devset, entry))
        label = sitk.ReadImage(os.path.join(devset, name + "_label.nii.gz"))
        with open(os.path.join(devset, name + "_labels.json")) as handle:
            names = json.load(handle)["labels"]
        target, what = choose_target(name, sitk.GetArrayFromImage(label), names)
        yield name, image, label, target, what


def ras_volume(array_ijk: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """An [i, j, k] array with a RAS voxel-to-world affine as a SimpleITK (LPS) image."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array_ijk).transpose(2, 1, 0)))
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple((lps / spacing).reshape(-1).tolist()))
    image.SetOrigin(tuple((np.diag([-1.0, -1.0, 1.0]) @ affine[:3, 3]).tolist()))
    return image


def mni152_images(tissue: str) -> Tuple[sitk.Image, sitk.Image]:
    """(T1 template, uint8 mask of ``tissue``) as SimpleITK images: nilearn's copies (the 'demo'
    extra; nothing downloaded), see `ibisagent.sample_data.mni152_volume`."""
    from ibisagent.sample_data import mni152_volume

    t1, mask, affine = mni152_volume(tissue)
    return ras_volume(t1, affine), ras_volume(mask.astype(np.uint8), affine)


def serve(engine_factory, **settings):
    """A real server on 127.0.0.1 in a thread, as a context manager with ``.url``; see
    Testing/tests/server/server_fakes.py. Returns (context manager, token)."""
    from server_fakes import TOKEN, ServerThread

    from ibisagent.server.app import make_app
    from ibisagent.server.settings import Settings

    options = dict(token=TOKEN, max_queue=64)
    options.update(settings)
    return ServerThread(make_app(Settings(**options), engine_factory)), TOKEN


def load_test_module(folder: str, filename: str, name: str):
    """Import a test helper file (e.g. a conftest.py, whose module name is not unique) by path
    under ``name``; its folder is put on sys.path for the helpers it imports itself."""
    import importlib.util

    if name in sys.modules:
        return sys.modules[name]
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, filename))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def count_embeddings(segmenter) -> Callable[[], int]:
    """Wrap ``segmenter._embed`` so every embedding is counted; returns a function giving the count."""
    calls = [0]
    original = segmenter._embed

    def counted(image):
        calls[0] += 1
        return original(image)

    segmenter._embed = counted
    return lambda: calls[0]


def format_table(rows: Iterable[Dict[str, object]], columns: Sequence[str], title: Optional[str] = None) -> str:
    """Rows of dicts as an aligned plain-text table (floats with 3 significant decimals)."""
    def cell(value) -> str:
        if isinstance(value, float):
            if value != value:  # NaN
                return "-"
            return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
        return "-" if value is None else str(value)

    rows = list(rows)
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = [title] if title else []
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def write_json(path: Optional[str], data) -> None:
    """Write ``data`` as indented JSON to ``path`` (nothing when ``path`` is None)."""
    if path:
        import json

        with open(path, "w") as handle:
            json.dump(data, handle, indent=2, default=str)


def save_figure(figure, name: str, out_dir: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    figure.tight_layout()
    figure.savefig(path)
    from matplotlib import pyplot

    pyplot.close(figure)
    return path


def new_figure(width: float = 6.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot.subplots(figsize=(width, height), dpi=100)
