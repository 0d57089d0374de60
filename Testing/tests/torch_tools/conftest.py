"""Fixtures for the torch tools: small randomly initialised checkpoints written to temporary
files, so each tool is loaded through the same path a user's checkpoint takes. Nothing is
downloaded."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch tools need the 'torch' extra")

#: A ViT small enough for the CPU at SAM's full 1024 input (the real ViT-B has ~90M parameters).
TINY_SAM_ENCODER = {"embed_dim": 32, "depth": 2, "num_heads": 2, "global_attn_indexes": (1,)}
TINY_SAM2_SIZE = 256  # sam2 stretches images to this square; the low-res frame is a quarter


@pytest.fixture(scope="session")
def tiny_sam_encoder():
    return TINY_SAM_ENCODER


@pytest.fixture(scope="session")
def tiny_sam2_size():
    return TINY_SAM2_SIZE


@pytest.fixture(autouse=True)
def _few_threads():
    """The test machine's cores are shared; keep torch from taking them all."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_sam_checkpoint(tmp_path_factory):
    pytest.importorskip("segment_anything", reason="the 'sam' tool needs the 'sam' extra")
    from ibisagent.segmenters.sam import build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    torch.save(build_model("vit_b", TINY_SAM_ENCODER).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_sam2_checkpoint(tmp_path_factory):
    pytest.importorskip("sam2", reason="the 'sam2' tool needs the 'sam2' extra")
    from sam2.build_sam import build_sam2

    from ibisagent.segmenters.sam2 import DEFAULT_CONFIG

    torch.manual_seed(0)
    model = build_sam2(DEFAULT_CONFIG, None, device="cpu", hydra_overrides_extra=[f"++model.image_size={TINY_SAM2_SIZE}"])
    path = tmp_path_factory.mktemp("sam2") / "tiny_sam2.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture
def blob_image():
    """RGB uint8 (48, 64, 3): a bright disc on a dark background, and its bool mask."""
    yy, xx = np.mgrid[:48, :64]
    disc = (yy - 24) ** 2 + (xx - 30) ** 2 <= 12 ** 2
    image = np.where(disc, 200, 40).astype(np.uint8)
    return np.repeat(image[..., None], 3, axis=2), disc


class CallCounter:
    """Wraps a module's forward and counts calls, recording the keyword arguments."""

    def __init__(self, module):
        self.calls = []
        self._forward = module.forward
        module.forward = self

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self._forward(*args, **kwargs)


@pytest.fixture
def count_calls():
    return CallCounter
