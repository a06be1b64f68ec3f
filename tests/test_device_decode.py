"""Batched decoding on a torch device (lpcache.propagation.device_decode) against the cv2 path of labels.py.

Bit-identity is checked against cv2 with IPP off (cv2's generic float32 resize, the arithmetic the device code
follows); the agreement of the masks with `labels.upsample_argmax` as the CPU path runs it (IPP on, the
default) is measured on real-looking and random soft maps and must be at least 0.9999. The `cuda` cases run
where CUDA is available (same values expected: separate float32 products and sums round the same there).
"""
import os

import cv2
import numpy as np
import pytest
import torch

from lpcache.images import read_ids
from lpcache.propagation import labels
from lpcache.propagation.device_decode import upsample_argmax_batch, upsample_linear

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA not available (torch.cuda.is_available() is False)"))]
OUT_HW = (480, 880)
GRID_HW = (60, 110)


@pytest.fixture
def no_ipp():
    """cv2 without IPP (its generic float32 resize) for the duration of a test."""
    before = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    yield
    cv2.ipp.setUseIPP(before)


def cv2_resize(soft, out_hw):
    """One cv2.resize INTER_LINEAR call per map: (B, H, W, K) float32."""
    height, width = out_hw
    return np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR).reshape(height, width, -1)
                     for m in soft])


def cv2_masks(soft, ids, out_hw):
    """The CPU path: labels.upsample_argmax of each map."""
    return np.stack([labels.upsample_argmax(m, ids, out_hw) for m in soft])


def real_soft_maps(root, sequences, rng):
    """(ids, (B, 60, 110, K) float32) per sequence: frame 20's OSVOS mask at 480x880 as a down-sampled one-hot,
    blurred at 3 widths and perturbed with noise (soft maps like the propagation's, with near-ties)."""
    for name in sequences:
        mask = cv2.resize(read_ids(os.path.join(root, name, "00020.png")), OUT_HW[::-1],
                          interpolation=cv2.INTER_NEAREST)
        ids = labels.label_ids(mask)
        small = labels.downsample_onehot(mask, ids, GRID_HW)
        maps = [cv2.GaussianBlur(small, (0, 0), sigma).reshape(small.shape)
                + rng.normal(0, 0.02, small.shape).astype(np.float32) for sigma in (0.5, 1.0, 2.0)]
        yield ids, np.ascontiguousarray(np.stack(maps), dtype=np.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("grid_hw, out_hw", [((60, 110), (480, 880)), ((60, 107), (480, 854)),
                                             ((30, 55), (480, 880)), ((7, 5), (33, 41)), ((1, 3), (4, 9)),
                                             ((6, 9), (6, 9))])
def test_upsampling_is_cv2_generic_resize_to_the_bit(no_ipp, device, grid_hw, out_hw):
    soft = np.random.default_rng(1).random((2, *grid_hw, 3), dtype=np.float32)
    got = upsample_linear(torch.from_numpy(soft).to(device), out_hw).cpu().numpy()
    np.testing.assert_array_equal(got, cv2_resize(soft, out_hw))


def ulp_ties(rng, n_maps):
    """(n_maps, 60, 110, 3) maps whose channels 0 and 1 differ by one ulp everywhere: which one wins after
    up-sampling depends on every rounding (an argmax of F.interpolate's values agrees at only 87% here)."""
    first = rng.random((n_maps, *GRID_HW), dtype=np.float32)
    up = rng.random(first.shape) < 0.5
    second = np.where(up, np.nextafter(first, np.float32(2)), np.nextafter(first, np.float32(-1)))
    return np.stack([first, second, rng.random(first.shape, dtype=np.float32) * 0.5], axis=-1)


@pytest.mark.parametrize("device", DEVICES)
def test_masks_equal_the_cv2_path_without_ipp(no_ipp, device):
    rng = np.random.default_rng(2)
    ids = np.array([0, 1, 2], dtype=np.uint8)
    for soft in (rng.random((3, *GRID_HW, 3), dtype=np.float32), ulp_ties(rng, 3)):
        got = upsample_argmax_batch(torch.from_numpy(soft).to(device), torch.from_numpy(ids), OUT_HW)
        assert got.dtype == torch.uint8 and got.device.type == device
        np.testing.assert_array_equal(got.cpu().numpy(), cv2_masks(soft, ids, OUT_HW))


def test_agreement_with_the_cv2_path_on_real_looking_maps(osvos_root, one_thread):
    """The CPU path as it runs (IPP on): >= 0.9999 of the pixels equal (measured: 1.0, all 12,672,000 pixels
    of these 30 maps)."""
    rng = np.random.default_rng(3)
    sequences = ["kite-surf", "soapbox", "bmx-trees", "blackswan", "paragliding-launch", "scooter-black",
                 "dog", "parkour", "horsejump-high", "motocross-jump"]
    equal = total = 0
    for ids, soft in real_soft_maps(osvos_root, sequences, rng):
        got = upsample_argmax_batch(torch.from_numpy(soft), labels.final_ids(ids), OUT_HW).numpy()
        reference = cv2_masks(soft, ids, OUT_HW)
        equal += int(np.count_nonzero(got == reference))
        total += reference.size
    assert equal / total >= 0.9999, f"agreement {equal / total}"


def test_agreement_with_the_cv2_path_on_random_maps(one_thread):
    """Random maps have many more near-ties (measured: 1.0 on these 16 maps; 0.99999993 on 64 such maps, 2 of
    27,033,600 pixels differing)."""
    soft = np.random.default_rng(4).random((16, *GRID_HW, 4), dtype=np.float32)
    ids = np.array([0, 1, 2, 3], dtype=np.uint8)
    got = upsample_argmax_batch(torch.from_numpy(soft), ids, OUT_HW).numpy()
    assert np.mean(got == cv2_masks(soft, ids, OUT_HW)) >= 0.9999


@pytest.mark.parametrize("device", DEVICES)
def test_first_maximum_wins_and_names_are_written(device):
    """Constant maps: equal channels give the first one's name; void (255) is written as its given name."""
    soft = np.zeros((3, 4, 5, 3), dtype=np.float32)
    soft[0] = 0.5                                  # all tied -> channel 0
    soft[1] = [0.2, 0.4, 0.4]                      # channels 1 and 2 tied -> channel 1
    soft[2] = [0.1, 0.2, 0.7]                      # channel 2
    ids = np.array([0, 255, 3], dtype=np.uint8)    # void sorts anywhere; final_ids writes it as 0
    got = upsample_argmax_batch(torch.from_numpy(soft).to(device), labels.final_ids(ids), (8, 10)).cpu()
    assert [np.unique(m).tolist() for m in got.numpy()] == [[0], [0], [3]]
    got = upsample_argmax_batch(torch.from_numpy(soft).to(device), torch.tensor([7, 8, 9], dtype=torch.uint8),
                                (8, 10)).cpu()
    assert [np.unique(m).tolist() for m in got.numpy()] == [[7], [8], [9]]


def test_batches_of_settings_give_the_same_masks():
    soft = torch.from_numpy(np.random.default_rng(5).random((7, 6, 9, 3), dtype=np.float32))
    names = np.array([0, 1, 2], dtype=np.uint8)
    whole = upsample_argmax_batch(soft, names, (48, 72))
    for max_batch in (1, 3, 7, 20):
        assert torch.equal(upsample_argmax_batch(soft, names, (48, 72), max_batch=max_batch), whole)


@pytest.mark.parametrize("soft, names, out_hw, max_batch, message", [
    (torch.zeros(2, 4, 5, 3, dtype=torch.float64), [0, 1, 2], (8, 10), None, "float32"),
    (torch.zeros(4, 5, 3), [0, 1, 2], (8, 10), None, "float32 tensor"),
    (torch.zeros(2, 4, 5, 3), [0, 1], (8, 10), None, "3 uint8 ids"),
    (torch.zeros(2, 4, 5, 3), [0, 1, 256], (8, 10), None, "3 uint8 ids"),
    (torch.zeros(2, 4, 5, 3), [0, 1, 2], (2, 10), None, "smaller than the grid"),
    (torch.zeros(2, 4, 5, 3), [0, 1, 2], (8, 10), 0, "max_batch"),
])
def test_bad_arguments_are_refused(soft, names, out_hw, max_batch, message):
    with pytest.raises(ValueError, match=message):
        upsample_argmax_batch(soft, names, out_hw, max_batch=max_batch)

