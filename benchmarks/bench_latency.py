"""Where one interactive step's time goes, on 256, 512 and 1024 px slices.

Parts timed separately (median and p95 over repeated calls, milliseconds):

- ``policy``: the weight-free `heuristic` policy's `respond` on a partly wrong mask.
- ``tool embed``: the CPU tool's `set_image` (done once per image).
- ``tool click``: the tool's per-click `predict` along a 20-click simulated-annotator episode
  (the same image embedding is reused: ``embeddings`` counts `set_image` work, must be 1).
- ``overlay``: the model's view (`imaging.model_view`: green blend, resized to <= 512x512).
- ``mask delta``: `mask_codec` encode + decode of one step's change; ``image upload``: the
  one-off `image_codec.encode_image`.
- ``http empty``: an empty round trip (GET /health) through the real client; ``server step``:
  propose + apply through a real server with an instant policy and tool, minus the tool's own
  time (from benchmarks/bench_server.py's fakes), i.e. the server's overhead per step.
- ``slicer``: Slicer-side array work on a real MRML scene (PyPI slicer-core): the slice taken out
  of a volume node, and the segment's slice read back and written.

Every part is also given as a ratio to the in-run baseline ``np.copy`` of the mask.

    python benchmarks/bench_latency.py [--quick] [--sizes 256 512 1024] [--tools graphcut growcut]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Dict, List, Optional, Sequence

import bench_common as common
import numpy as np
from bench_common import baseline_copy, count_embeddings, format_table, square_case, stats, time_calls

from ibisagent.clicks import Click
from ibisagent.episode import Episode
from ibisagent.imaging import model_view
from ibisagent.policies import build_policy
from ibisagent.policies.base import Observation
from ibisagent.policies.simulated import SimulatedPolicy
from ibisagent.sample_data import rough_mask
from ibisagent.segmenters import build_segmenter

COLUMNS = ("size", "part", "median_ms", "p95_ms", "x_copy", "n")


def tool_parts(tool: str, image: np.ndarray, truth: np.ndarray, clicks: int, embeds: int) -> List[dict]:
    segmenter = build_segmenter(tool)
    embed = stats(time_calls(lambda: segmenter.set_image(image), embeds, warmup=0))
    embeddings = count_embeddings(segmenter)
    episode = Episode(image, segmenter, SimulatedPolicy(truth), max_steps=clicks)
    result = episode.run()
    per_click = stats([s.seconds for s in result.steps])
    return [dict(part=f"{tool} embed", **embed),
            dict(part=f"{tool} click", embeddings=embeddings(), **per_click)]


def codec_parts(image: np.ndarray, truth: np.ndarray, repeats: int) -> List[dict]:
    from ibisagent import mask_codec
    from ibisagent.image_codec import encode_image

    before = rough_mask(truth, "cut")
    after = before.copy()
    rows, cols = np.nonzero(truth & ~before)
    if rows.size:  # one step's typical change: a blob of the missed part filled in
        r, c = rows[rows.size // 2], cols[rows.size // 2]
        after[max(0, r - 20): r + 20, max(0, c - 20): c + 20] |= truth[max(0, r - 20): r + 20, max(0, c - 20): c + 20]

    def delta():
        mask_codec.decode_mask(mask_codec.encode_mask(after, base=before), base=before)

    return [dict(part="mask delta", **stats(time_calls(delta, repeats))),
            dict(part="image upload", **stats(time_calls(lambda: encode_image(image), max(3, repeats // 10))))]


def policy_parts(image: np.ndarray, truth: np.ndarray, repeats: int) -> List[dict]:
    policy = build_policy("heuristic")
    mask = rough_mask(truth, "cut")
    observation = Observation(image, mask, "Segment the white matter.", 1, (Click(5, 5, True),))
    return [dict(part="policy heuristic", **stats(time_calls(lambda: policy.respond(observation), repeats))),
            dict(part="overlay", **stats(time_calls(lambda: model_view(image, mask), repeats)))]


def server_parts(size: int, steps: int) -> List[dict]:
    """Empty HTTP round trip and the server's own cost per step (instant fakes)."""
    import bench_server

    from ibisagent import protocol
    from ibisagent.client import AgentClient

    server, thread, url = bench_server.start_server()
    try:
        with AgentClient(url, token=bench_server.TOKEN) as client:
            empty = time_calls(lambda: client.call("GET", protocol.HEALTH), steps * 2, warmup=10)
            overheads: List[float] = []
            image = bench_server.slice_image(size)
            while len(overheads) < steps:
                with client.open_session(image, "bench", max_steps=1000) as session:
                    for _ in range(min(20, steps - len(overheads))):
                        started = time.perf_counter()
                        proposal = session.propose()
                        step = session.apply([proposal.click])
                        overheads.append(time.perf_counter() - started - step.seconds)
    finally:
        server.should_exit = True
        thread.join(10)
    return [dict(part="http empty", **stats(empty)), dict(part="server step", **stats(overheads))]


def slicer_parts(size: int, repeats: int, depth: int = 32) -> List[dict]:
    """Slice extraction and segment read/write on a real MRML scene; [] without slicer-core."""
    scene = open_scene()
    if scene is None:
        return []
    with scene as mrml:
        from IBISAgentLib.slice_geometry import slice_array, slice_geometry
        from IBISAgentLib.slice_labelmap import SliceLabelmap
        from slicer_scene import add_segmentation, add_volume, make_ijk_to_ras, place_view_on_voxel

        volume_array = np.random.default_rng(0).integers(0, 1000, (depth, size, size)).astype(np.int16)
        volume = add_volume(mrml, volume_array, make_ijk_to_ras(np.eye(3)))
        segmentation, ids = add_segmentation(mrml, volume)
        place_view_on_voxel(mrml, "Red", volume, (size // 2, size // 2, depth // 2))
        geometry = slice_geometry(volume, "Red", mrml)
        labelmap = SliceLabelmap(segmentation, ids[0], volume, geometry)
        masks = [np.zeros(geometry.shape, bool), np.zeros(geometry.shape, bool)]
        masks[1][size // 4: size // 2, size // 4: size // 2] = True
        flip = [0]

        def write():
            flip[0] ^= 1
            labelmap.write(masks[flip[0]])

        return [
            dict(part="slicer slice", **stats(time_calls(lambda: slice_array(volume, geometry), repeats))),
            dict(part="slicer mask read", **stats(time_calls(labelmap.read, repeats))),
            dict(part="slicer mask write", **stats(time_calls(write, max(3, repeats // 2)))),
        ]


class _Scene:
    """The Slicer tests' ``scene`` fixture used as a context manager (one fresh MRML scene)."""

    def __init__(self, fixture) -> None:
        self._generator = fixture()

    def __enter__(self):
        return next(self._generator)

    def __exit__(self, *_exc) -> None:
        self._generator.close()


def open_scene() -> Optional[_Scene]:
    """A fresh MRML scene set up like the Slicer tests do, or None when slicer-core is missing."""
    try:
        slicer_conftest = common.load_test_module(common.SLICER_TEST_DIR, "conftest.py", "ibis_bench_slicer_conftest")
    except BaseException as error:  # pytest.skip raises a BaseException when slicer-core is absent
        print(f"  (Slicer-side timings skipped: {error})")
        return None
    import vtk

    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)  # MRML's colour-table warnings
    return _Scene(slicer_conftest.scene.__wrapped__)


def run(sizes: Sequence[int] = common.SIZES, tools: Sequence[str] = ("graphcut",), quick: bool = False) -> Dict:
    repeats = 10 if quick else 50
    clicks = 10 if quick else 20
    rows: List[dict] = []
    for size in sizes:
        image, truth = square_case(size)
        copy = baseline_copy(truth.shape)
        part_rows = [dict(part="baseline np.copy", **copy)]
        part_rows += policy_parts(image, truth, repeats)
        for tool in tools:
            part_rows += tool_parts(tool, image, truth, clicks, 2 if quick else 5)
        part_rows += codec_parts(image, truth, repeats)
        part_rows += server_parts(size, 20 if quick else 100)
        part_rows += slicer_parts(size, 5 if quick else 20)
        for row in part_rows:
            row["size"] = size
            row["x_copy"] = round(row["median_ms"] / copy["median_ms"], 1) if copy["median_ms"] > 0 else None
        rows += part_rows
    return {"rows": rows, "sizes": list(sizes), "tools": list(tools), "clicks": clicks}


def plot(result: Dict, out_dir: str) -> List[str]:
    """Stacked bars of one step's parts (policy, tool click, overlay, mask delta, server step)."""
    figure, axes = common.new_figure()
    parts = ["policy heuristic", f"{result['tools'][0]} click", "overlay", "mask delta", "server step"]
    bottom = np.zeros(len(result["sizes"]))
    for part in parts:
        values = np.array([next((r["median_ms"] for r in result["rows"] if r["size"] == s and r["part"] == part), 0.0)
                           for s in result["sizes"]])
        axes.bar([str(s) for s in result["sizes"]], values, bottom=bottom, label=part)
        bottom += values
    axes.set_xlabel("slice size (px)")
    axes.set_ylabel("median ms per step")
    axes.set_title("One step's time by part (2-core CPU)")
    axes.legend()
    return [common.save_figure(figure, "latency_breakdown.png", out_dir)]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(common.SIZES))
    parser.add_argument("--tools", nargs="+", default=["graphcut"])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    result = run(args.sizes, args.tools, args.quick)
    print(format_table(result["rows"], COLUMNS + ("embeddings",), "per-step latency"))
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
