"""`sam2` as a 3D click tool: the box goes to sam2 on its slice, each voxel click to sam2 on its
own slice, and sam2's video memory carries the result through the volume. A randomly initialised
SAM2.1 Hiera-T at a small image size (random weights make arbitrary masks, so the test checks
what reaches the model, the shapes, and that the same clicks give the same mask)."""

import numpy as np
import pytest

from ibisagent import cvpr25
from ibisagent.segmenters import build_volume_segmenter
from ibisagent.segmenters.volume_base import VoxelClick

pytest.importorskip("sam2", reason="the 'sam2' tool needs the 'sam2' extra")
pytestmark = pytest.mark.slow


def _volume():
    kk, yy, xx = np.mgrid[:5, :48, :64]
    truth = (yy - 24) ** 2 + (xx - 30) ** 2 + (6 * (kk - 2)) ** 2 <= 12 ** 2
    return np.where(truth, 200.0, 40.0).astype(np.float32), truth


def test_box_and_clicks_reach_sam2_on_their_slices(tiny_sam2_checkpoint, tiny_sam2_size, count_calls):
    tool = build_volume_segmenter("sam2", checkpoint=tiny_sam2_checkpoint, device="cpu", image_size=tiny_sam2_size)
    assert tool.name == "sam2" and tool.tool.can_propagate
    volume, truth = _volume()
    tool.set_volume(volume, (3.0, 1.0, 1.0))
    prompts = count_calls(tool.tool.predictor.model.sam_prompt_encoder)
    box = cvpr25.box_of(truth)
    start = tool.predict([], box=box)
    assert start.mask.shape == truth.shape and start.mask.dtype == bool
    first = prompts.calls[0][1]
    assert first["boxes"] is not None or first["points"][1].shape[1] >= 2  # the box went in (as sam2 encodes it)
    click = VoxelClick(3, 24, 30, True, "user")
    made = tool.predict([click], prior_mask=start.mask, prior_state=start.state, box=box)
    scale = tiny_sam2_size / 64.0
    sent = [call[1]["points"] for call in prompts.calls[1:] if call[1].get("points") is not None]
    assert any(np.allclose(points[0][0, -1].numpy(), [30 * scale, 24 * scale * 64 / 48], atol=1.0) for points in sent)
    again = tool.predict([click], prior_mask=start.mask, prior_state=start.state, box=box)
    assert np.array_equal(again.mask, made.mask)  # the same clicks, the same mask: undo is exact
    outside = np.ones(truth.shape[0], bool)
    outside[box.k0: box.k1 + 1] = False
    assert not start.mask[outside].any()  # the box start stays in the box's slice range
