"""The CVPR 2025 3D protocol (`ibisagent.cvpr25`) on volumes whose answers can be worked out by
hand: the box of the median slice, where the next click lands, DSC, NSD and the AUC."""

import numpy as np
import pytest
from scipy import integrate

from volume_doubles import blob_volume

from ibisagent import cvpr25
from ibisagent.segmenters import build_volume_segmenter

pytest.importorskip("cc3d", reason="the cvpr25 protocol needs the 'eval3d' extra")
pytest.importorskip("surface_distance", reason="the cvpr25 protocol needs the 'eval3d' extra")


def test_the_box_is_the_slice_range_and_the_2d_box_on_the_median_target_slice():
    truth = np.zeros((10, 20, 30), bool)
    truth[2, 3:5, 4:6] = True
    truth[3, 1:9, 2:12] = True
    truth[4, 6:8, 20:25] = True  # z_indices = [2, 3, 4, 7]: the median slice is z_indices[4 // 2] = 4
    truth[7, 10, 10] = True
    box = cvpr25.box_of(truth)
    assert (box.k0, box.k1, box.k_mid) == (2, 7, 4)
    assert (box.j0, box.j1, box.i0, box.i1) == (6, 7, 20, 24)  # inclusive ends, no random shift
    with pytest.raises(ValueError, match="empty"):
        cvpr25.box_of(np.zeros((4, 4, 4), bool))


def test_an_empty_prediction_gets_a_positive_click_at_the_centre_of_the_target():
    truth = np.zeros((11, 11, 11), bool)
    truth[2:9, 2:9, 2:9] = True
    click = cvpr25.next_click(np.zeros_like(truth), truth)
    assert click.voxel == (5, 5, 5) and click.positive


def test_the_click_is_in_the_largest_26_connected_error_component():
    truth = np.zeros((50, 50, 50), bool)
    truth[2:9, 2:9, 2:9] = True
    prediction = truth.copy()
    prediction[3:6, 3:6, 3:6] = False  # a missed core: 27 face-connected voxels
    for step in range(40):  # a wrong diagonal chain: 40 voxels touching only at their corners
        prediction[10 + step, 10 + step, 10 + step] = True
    errors = prediction != truth
    from scipy import ndimage

    _, six = ndimage.label(errors)
    twenty_six, count = ndimage.label(errors, structure=np.ones((3, 3, 3)))
    assert six > count  # with 6-neighbours the chain would fall apart into small pieces
    click = cvpr25.next_click(prediction, truth)
    sizes = np.bincount(twenty_six.ravel())
    sizes[0] = 0
    assert twenty_six[click.voxel] == np.argmax(sizes) and sizes.max() >= 40
    assert not click.positive and prediction[click.voxel] and not truth[click.voxel]


def test_the_array_border_counts_as_outside_the_error():
    truth = np.zeros((10, 10, 10), bool)
    prediction = np.zeros_like(truth)
    prediction[:, :, :4] = True  # a slab against the border: its middle is 2 voxels deep
    click = cvpr25.next_click(prediction, truth)
    assert click.i in (1, 2) and 1 <= click.k <= 8 and 1 <= click.j <= 8 and not click.positive
    assert cvpr25.next_click(prediction, truth) == click  # ties are broken the same way every time
    assert cvpr25.next_click(truth, truth) is None


def test_dsc_and_nsd_on_hand_computable_cases():
    truth = np.zeros((20, 20, 20), bool)
    truth[5:15, 5:15, 5:15] = True
    half = np.zeros_like(truth)
    half[5:15, 5:15, 5:10] = True
    assert cvpr25.dsc(half, truth) == pytest.approx(2 * 500 / 1500)
    assert cvpr25.dsc(np.zeros_like(truth), truth) == 0.0
    assert cvpr25.nsd(truth, truth, (1, 1, 1)) == pytest.approx(1.0)
    shifted = np.roll(truth, 1, axis=2)
    assert cvpr25.nsd(shifted, truth, (1.0, 1.0, 1.0)) == pytest.approx(1.0)  # 1 mm off, 2 mm tolerance
    assert cvpr25.nsd(shifted, truth, (1.0, 1.0, 3.0)) < 1.0  # 3 mm off along that axis
    tiny = np.zeros_like(truth)
    tiny[5:7, 5:7, 5:7] = True
    assert cvpr25.dsc(tiny, truth) <= cvpr25.NSD_MIN_DSC
    assert cvpr25.nsd(tiny, truth, (1, 1, 1)) == 0.0  # the script's rule: no NSD below DSC 0.2


def test_the_auc_is_the_trapezoid_over_the_clicks_at_unit_spacing():
    assert cvpr25.auc([1, 1, 1, 1, 1]) == pytest.approx(4.0)
    assert cvpr25.auc([0.0, 0.25, 0.5, 0.75, 1.0]) == pytest.approx(2.0)
    values = [0.5, 0.7, 0.8, 0.85, 0.9]
    script = integrate.cumulative_trapezoid(np.array(values[-5:]), np.arange(5))[-1]
    assert cvpr25.auc(values) == pytest.approx(script)


@pytest.mark.parametrize("start", ["box", "mask"])
def test_a_case_runs_the_start_and_five_clicks(start):
    grey, truth = blob_volume()
    initial = np.zeros_like(truth)
    initial[:, :, : truth.shape[2] // 2] = truth[:, :, : truth.shape[2] // 2]  # half of the target
    run = cvpr25.run_case(build_volume_segmenter("graphcut3d"), grey, (2.0, 1.0, 1.0), truth, start, initial, 5)
    assert len(run.dscs) == len(run.nsds) == len(run.seconds) == 6
    assert 1 <= len(run.clicks) <= 5 and run.mask.shape == truth.shape and run.mask.dtype == bool
    assert run.dsc_auc == pytest.approx(cvpr25.auc(run.dscs[1:]))
    if start == "mask":
        assert run.dscs[0] == pytest.approx(cvpr25.dsc(initial, truth))
    assert run.dscs[-1] > 0.85 and run.dscs[-1] >= run.dscs[0] - 0.02
    with pytest.raises(ValueError, match="start"):
        cvpr25.run_case(build_volume_segmenter("graphcut3d"), grey, (1, 1, 1), truth, "points")
