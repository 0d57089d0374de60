"""The GPU benchmark: the real policy and tools at full size with random weights, no download.

What it measures, on one GPU (H100/H200), within about 5 minutes:

1. ``qwen``: Qwen2.5-VL-7B (the released IBISAgent checkpoint's architecture, config written
   below) built with random weights in bfloat16 directly on the GPU, driven through the real
   `QwenPolicy.respond` (chat template, processor, 512x512 green overlay, greedy generate). Random
   weights never stop on their own and never follow the grammar, so each generation is forced to
   exactly N new tokens (``min_new_tokens`` = ``max_new_tokens`` = N) for N in 64, 150, 300.
   Reported: prompt tokens, time to first token (prefill), decode tokens/s, the whole step.
2. ``sam2`` (SAM2.1 Hiera-L, 1024) and ``sam`` (ViT-B), untrained, loaded through the tools' own
   builders from a temporary checkpoint: image embedding (`set_image`) and per-click `predict`
   along a 20-click simulated-annotator episode (one embedding per image, checked).
3. ``server``: 20-step episodes end to end through a real server (uvicorn on 127.0.0.1 in this
   process) with the GPU tool (SAM2 Hiera-L) and a policy that runs the real Qwen generation
   (``--episode-tokens`` new tokens) and then answers like the annotator of the image's bright
   target, so episodes really last 20 steps. Each step is propose + apply through the real client.

Prints one table and writes ``gpu_benchmark.json`` to ``--out``.

``--tiny`` runs the same code paths with tiny configs on the CPU (or any device) in well under a
minute; the smoke test uses it. See benchmarks/README.md for running it on the device machine
(benchmarks/gpu_run.sh).

    python benchmarks/gpu_benchmark.py --out OUT_DIR [--tiny] [--device cuda] [--skip server]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from typing import Dict, List, Optional, Sequence
from unittest import mock

import bench_common as common
import numpy as np
from bench_common import format_table, stats

POLICY_TEST_DIR = os.path.join(common.ROOT, "Testing", "tests", "policies")

#: Qwen2.5-VL-7B-Instruct's architecture (its config.json), the base of the IBISAgent checkpoint.
QWEN_7B_TEXT = {
    "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
    "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6, "hidden_act": "silu", "sliding_window": 32768, "use_sliding_window": False,
    "max_window_layers": 28, "attention_dropout": 0.0,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
}
QWEN_7B_VISION = {
    "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "in_chans": 3,
    "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
    "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "hidden_act": "silu", "tokens_per_second": 2,
}
QWEN_TINY_TEXT = {
    "vocab_size": 151680, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
    "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 4096,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
}
QWEN_TINY_VISION = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32,
                    "fullatt_block_indexes": [0]}
SPECIAL_IDS = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
               "vision_end_token_id": 151653, "bos_token_id": 151643, "eos_token_id": 151645}

FULL = {"warmup": True, "tokens": (64, 150, 300), "repeats": 3, "size": 512, "clicks": 20, "embeds": 5, "episodes": 2,
        "episode_steps": 20, "sam2_config": "configs/sam2.1/sam2.1_hiera_l.yaml", "sam2_size": None,
        "sam_encoder": None}
TINY = {"warmup": False, "tokens": (2, 4), "repeats": 1, "size": 96, "clicks": 2, "embeds": 1, "episodes": 1,
        "episode_steps": 2,
        "sam2_config": "configs/sam2.1/sam2.1_hiera_t.yaml", "sam2_size": 256,
        "sam_encoder": {"embed_dim": 32, "depth": 2, "num_heads": 2, "global_attn_indexes": (1,)}}


def sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def target_image(size: int, seed: int = 0):
    """(RGB uint8 (size, size, 3), truth bool): a noisy grey slice with one bright disc."""
    from server_fakes import blob_image

    image = blob_image(size, size, (size // 2, size // 2), size // 4, seed)
    return image, image[..., 0] > 127


def timed(function, repeats: int, device: str) -> List[float]:
    """Seconds of ``repeats`` calls, the GPU synchronised before and after each."""
    seconds = []
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        function()
        sync(device)
        seconds.append(time.perf_counter() - started)
    return seconds


# -- Qwen --------------------------------------------------------------------------------------
def qwen_checkpoint_folder(folder: str, tiny: bool):
    """Write config, tokenizer, processor and chat template (no weights) and return the config."""
    import transformers

    # The offline Qwen tokenizer and chat template of the policy tests (Testing/tests/policies).
    fixtures = common.load_test_module(POLICY_TEST_DIR, "conftest.py", "ibis_bench_policy_conftest")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(fixtures.qwen_tokenizer_dir()), local_files_only=True)
    processor = transformers.Qwen2_5_VLProcessor(
        image_processor=transformers.Qwen2VLImageProcessor(), tokenizer=tokenizer,
        video_processor=transformers.Qwen2VLVideoProcessor(), chat_template=fixtures.CHAT_TEMPLATE,
    )
    processor.save_pretrained(folder)
    config = transformers.Qwen2_5_VLConfig(
        text_config=dict(QWEN_TINY_TEXT if tiny else QWEN_7B_TEXT),
        vision_config=dict(QWEN_TINY_VISION if tiny else QWEN_7B_VISION),
        tie_word_embeddings=tiny, **SPECIAL_IDS,
    )
    config.save_pretrained(folder)
    # check_checkpoint asks for a weights file; the model itself is built in memory (below).
    from safetensors.torch import save_file

    save_file({}, os.path.join(folder, "model.safetensors"))
    return config


def build_qwen_model(config, device: str, dtype):
    """Random weights, created directly on ``device`` in ``dtype`` (no slow CPU initialisation)."""
    import torch
    import transformers

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = transformers.Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    finally:
        torch.set_default_dtype(previous)
    return model.to(device=device, dtype=dtype).eval()


def build_qwen_policy(folder: str, model, device: str, dtype_name: str):
    """The real QwenPolicy over ``folder``, its model replaced by the in-memory random one."""
    import transformers

    from ibisagent.policies.qwen import QwenPolicy

    with mock.patch.object(transformers.Qwen2_5_VLForConditionalGeneration, "from_pretrained",
                           lambda *args, **kwargs: model):
        return QwenPolicy(folder, device=device, dtype=dtype_name)


def force_length(policy, tokens: int) -> None:
    """Make every generation exactly ``tokens`` long (random weights: no EOS, no grammar)."""
    policy.max_new_tokens = tokens
    policy.model.generation_config.min_new_tokens = tokens


def qwen_rows(policy, settings: Dict, device: str) -> List[Dict]:
    from ibisagent.policies.base import Observation
    from ibisagent.sample_data import rough_mask

    image, truth = target_image(settings["size"])
    observation = Observation(image, rough_mask(truth, "cut"), "Segment the bright disc.", 1)
    rows = []
    for tokens in settings["tokens"]:
        force_length(policy, tokens)
        if settings["warmup"]:
            policy.respond(observation)  # warm-up (kernels, caches)
        timings: List[Dict] = []

        def one() -> None:
            policy.respond(observation)
            timings.append(dict(policy.last_timings))

        steps = timed(one, settings["repeats"], device)
        first = [t["first_token_s"] or 0.0 for t in timings]
        new = [t["new_tokens"] for t in timings]
        decode = [t["generate_s"] - f for t, f in zip(timings, first)]
        rates = [(n - 1) / d if d > 0 else float("nan") for n, d in zip(new, decode)]
        rows.append({"part": f"qwen {tokens} tokens", "prompt_tokens": policy.last_timings["prompt_tokens"],
                     "new_tokens": int(np.median(new)), "ttft_ms": round(float(np.median(first)) * 1000, 1),
                     "tokens_per_s": round(float(np.median(rates)), 1), **stats(steps)})
    return rows


# -- SAM / SAM2 --------------------------------------------------------------------------------
def tool_options(tool: str, settings: Dict, folder: str, device: str) -> Dict:
    """Build options for ``tool`` from an untrained checkpoint saved in ``folder``."""
    import torch

    torch.manual_seed(0)
    path = os.path.join(folder, f"{tool}.pt")
    if tool == "sam":
        from ibisagent.segmenters.sam import build_model

        torch.save(build_model("vit_b", settings["sam_encoder"]).state_dict(), path)
        return {"checkpoint": path, "model_type": "vit_b", "device": device, "encoder": settings["sam_encoder"]}
    from sam2.build_sam import build_sam2

    overrides = [f"++model.image_size={settings['sam2_size']}"] if settings["sam2_size"] else []
    model = build_sam2(settings["sam2_config"], None, device="cpu", hydra_overrides_extra=overrides)
    torch.save({"model": model.state_dict()}, path)
    return {"config": settings["sam2_config"], "checkpoint": path, "device": device,
            "image_size": settings["sam2_size"]}


def tool_rows(tool: str, options: Dict, settings: Dict, device: str) -> List[Dict]:
    from ibisagent.episode import Episode
    from ibisagent.policies.simulated import SimulatedPolicy
    from ibisagent.segmenters import build_segmenter

    segmenter = build_segmenter(tool, **options)
    image, truth = target_image(settings["size"])
    if settings["warmup"]:
        segmenter.set_image(image)  # warm-up
    embeds = timed(lambda: segmenter.set_image(image), settings["embeds"], device)
    embeddings = common.count_embeddings(segmenter)
    episode = Episode(image, segmenter, SimulatedPolicy(truth), max_steps=settings["clicks"])
    clicks = [s.seconds for s in episode.run().steps]
    return [{"part": f"{tool} embed", **stats(embeds)},
            {"part": f"{tool} click", "embeddings": embeddings(), **stats(clicks)}]


# -- server ------------------------------------------------------------------------------------
class GeneratingAnnotator:
    """A policy that pays for a real Qwen generation, then answers as the annotator of the
    image's bright target (random weights cannot follow the grammar)."""

    name = "qwen-timed-annotator"
    description = "benchmark: real Qwen2.5-VL generation, answers from the simulated annotator"

    def __init__(self, qwen) -> None:
        from server_fakes import BrightPolicy

        self.qwen = qwen
        self.answer = BrightPolicy(stop_iou=1.01)  # never stops early: episodes last their steps
        self.generate_s: List[float] = []

    def respond(self, observation) -> str:
        self.qwen.respond(observation)
        self.generate_s.append(self.qwen.last_timings["generate_s"])
        return self.answer.respond(observation)

    def close(self) -> None:
        pass


def server_rows(qwen, sam2_options: Dict, settings: Dict, tokens: int) -> List[Dict]:
    from ibisagent.client import AgentClient
    from ibisagent.policies.base import Policy
    from ibisagent.segmenters import build_segmenter
    from ibisagent.engine import Engine

    Policy.register(GeneratingAnnotator)
    policy = GeneratingAnnotator(qwen)
    force_length(qwen, tokens)
    context, token = common.serve(lambda: Engine(policy, build_segmenter("sam2", **sam2_options)))
    steps, proposes, applies, server_model, sessions_open = [], [], [], [], []
    with context as server, AgentClient(server.url, token=token, timeout=600, upload_timeout=600) as client:
        for episode in range(settings["episodes"]):
            image, _ = target_image(settings["size"], seed=episode)
            started = time.perf_counter()
            session = client.open_session(image, "Segment the bright disc.", max_steps=settings["episode_steps"])
            sessions_open.append(time.perf_counter() - started)
            with session:
                for _ in range(settings["episode_steps"]):
                    started = time.perf_counter()
                    proposal = session.propose()
                    middle = time.perf_counter()
                    if proposal.click is None:
                        break
                    step = session.apply([proposal.click])
                    ended = time.perf_counter()
                    steps.append(ended - started)
                    proposes.append(middle - started)
                    applies.append(ended - middle)
                    server_model.append(proposal.seconds + step.seconds)
    overhead = [s - m for s, m in zip(steps, server_model)]
    label = f"server step (qwen {tokens} tok + sam2)"
    return [{"part": "server open session (upload + embed)", **stats(sessions_open)},
            {"part": label, "steps": len(steps), **stats(steps)},
            {"part": "  propose (policy)", **stats(proposes)},
            {"part": "  apply (tool)", **stats(applies)},
            {"part": "  server overhead (step - model time)", **stats(overhead)}]


# -- main --------------------------------------------------------------------------------------
COLUMNS = ("part", "median_ms", "p95_ms", "n", "prompt_tokens", "new_tokens", "ttft_ms", "tokens_per_s", "embeddings",
           "steps")


def environment(device: str) -> Dict:
    import torch
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "device": device}
    if str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1)
    return info


def run(out_dir: str, tiny: bool, device: str, skip: Sequence[str], episode_tokens: Optional[int]) -> Dict:
    import torch

    settings = dict(TINY if tiny else FULL)
    result: Dict = {"tiny": tiny, "settings": {k: v for k, v in settings.items()}, "environment": environment(device),
                    "rows": [], "errors": {}, "seconds": {}}
    dtype_name = "float32" if tiny else "bfloat16"
    folder = tempfile.mkdtemp(prefix="ibis-gpu-bench-")
    qwen = None
    sam2_options = None

    @contextlib.contextmanager
    def part(name: str):
        started = time.perf_counter()
        print(f"-- {name}", flush=True)
        try:
            yield
        except Exception as error:  # noqa: BLE001 - one failed part must not lose the others
            result["errors"][name] = f"{type(error).__name__}: {error}"
            traceback.print_exc()
        finally:
            result["seconds"][name] = round(time.perf_counter() - started, 1)
            if str(device).startswith("cuda"):
                result.setdefault("peak_gpu_gb", {})[name] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)

    if "qwen" not in skip or "server" not in skip:
        with part("qwen build"):
            config = qwen_checkpoint_folder(os.path.join(folder, "qwen"), tiny)
            model = build_qwen_model(config, device, getattr(torch, dtype_name))
            result["qwen_parameters_b"] = round(sum(p.numel() for p in model.parameters()) / 1e9, 3)
            qwen = build_qwen_policy(os.path.join(folder, "qwen"), model, device, dtype_name)
    if qwen is not None and "qwen" not in skip:
        with part("qwen"):
            result["rows"] += qwen_rows(qwen, settings, device)
    for tool in ("sam2", "sam"):
        if tool in skip:
            continue
        with part(tool):
            options = tool_options(tool, settings, folder, device)
            if tool == "sam2":
                sam2_options = options
            result["rows"] += tool_rows(tool, options, settings, device)
    if "server" not in skip and qwen is not None:
        with part("server"):
            if sam2_options is None:
                sam2_options = tool_options("sam2", settings, folder, device)
            tokens = episode_tokens or settings["tokens"][0]
            result["rows"] += server_rows(qwen, sam2_options, settings, tokens)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "gpu_benchmark.json"), "w") as handle:
        json.dump(result, handle, indent=2, default=str)
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu_benchmark.json (on the device machine: $OUT)")
    parser.add_argument("--tiny", action="store_true", help="tiny configs: test the code paths on a CPU")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--skip", nargs="*", default=[], choices=("qwen", "sam2", "sam", "server"))
    parser.add_argument("--episode-tokens", type=int, help="new tokens per policy step in the server episodes "
                        "(default: the smallest measured length)")
    args = parser.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not args.tiny and not str(device).startswith("cuda"):
        print("warning: the full-size models on a CPU take far longer than the GPU's 8 minutes; use --tiny.")
    started = time.perf_counter()
    result = run(args.out, args.tiny, device, args.skip, args.episode_tokens)
    env = result["environment"]
    print(format_table(result["rows"], COLUMNS,
                       f"\nGPU benchmark ({'tiny configs' if args.tiny else 'full size, random weights'}) on "
                       f"{env.get('gpu', device)}, torch {env['torch']}, transformers {env['transformers']}"))
    print(f"parts (s): {result['seconds']}")
    if result.get("peak_gpu_gb"):
        print(f"peak GPU memory (GiB) after each part: {result['peak_gpu_gb']}")
    for name, error in result["errors"].items():
        print(f"ERROR in {name}: {error}")
    print(f"total {time.perf_counter() - started:.0f} s; wrote {os.path.join(args.out, 'gpu_benchmark.json')}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
