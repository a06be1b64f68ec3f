"""J/F counts on a torch device (lpcache.metrics_device) against the official definitions and lpcache.metrics.

The expected counts come from the spec's definitions written out here with numpy and cv2 on whole frames
(seg2bmap of davis-metric-spec.md section 3, cv2.dilate with the scikit-image disk); the expected scores from
`metrics.frame_scores_prepared`, compared with ==. The `cuda` cases run where CUDA is available.
"""
import os

import cv2
import numpy as np
import pytest
import torch

from lpcache import metrics
from lpcache.images import read_ids
from lpcache.metrics_device import (COUNT_FIELDS, boundary_maps, dilate_disk, frame_counts, prepare_gt_batch,
                                    scores_from_counts)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA not available (torch.cuda.is_available() is False)"))]


def seg2bmap(seg):
    """The official boundary map, as davis-metric-spec.md section 3 states it."""
    seg = np.asarray(seg, dtype=bool)
    east, south, south_east = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    east[:, :-1], south[:-1, :], south_east[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
    bmap = seg ^ east | seg ^ south | seg ^ south_east
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


def official_counts(pred_ids, gt_ids, n_objects):
    """(n_objects, 6) counts in COUNT_FIELDS order, by the spec on whole frames."""
    disk = metrics.disk_kernel(metrics.boundary_radius(gt_ids.shape))
    rows = []
    for k in range(1, n_objects + 1):
        pred, gt = pred_ids == k, gt_ids == k
        pred_b, gt_b = seg2bmap(pred), seg2bmap(gt)
        pred_d = cv2.dilate(pred_b.astype(np.uint8), disk) > 0
        gt_d = cv2.dilate(gt_b.astype(np.uint8), disk) > 0
        rows.append([np.sum(pred & gt), np.sum(pred | gt), pred_b.sum(), gt_b.sum(),
                     np.sum(pred_b & gt_d), np.sum(gt_b & pred_d)])
    return np.array(rows, dtype=np.int64)


def device_counts(preds, gt_ids, n_objects, device, **kwargs):
    prepared = prepare_gt_batch(torch.from_numpy(gt_ids).to(device), n_objects)
    counts = frame_counts(torch.from_numpy(np.ascontiguousarray(preds)).to(device), prepared, **kwargs)
    assert counts.dtype == torch.int64 and counts.device.type == device
    return counts.cpu()


def assert_scores_equal_cpu_metrics(preds, gt_ids, n_objects, device):
    """J and F from the device counts == metrics.frame_scores_prepared, per prediction (float64, exact)."""
    j, f = scores_from_counts(device_counts(preds, gt_ids, n_objects, device))
    prepared = metrics.prepare_gt_frame(gt_ids, n_objects)
    for index, pred in enumerate(preds):
        ref_j, ref_f = metrics.frame_scores_prepared(pred, prepared)
        assert j.dtype == f.dtype == np.float64
        assert j[index].tolist() == ref_j.tolist() and f[index].tolist() == ref_f.tolist(), index


def blobs(rng, shape, n_ids, n_blobs=6):
    """An id map of random rectangles and discs (ids 1..n_ids), some of them on the image border."""
    ids = np.zeros(shape, dtype=np.uint8)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for _ in range(n_blobs):
        k = rng.integers(1, n_ids + 1)
        cy, cx = rng.integers(-5, shape[0] + 5), rng.integers(-5, shape[1] + 5)
        size = rng.integers(2, max(3, min(shape) // 2))
        if rng.random() < 0.5:
            ids[(yy - cy) ** 2 + (xx - cx) ** 2 <= size ** 2] = k
        else:
            ids[max(cy, 0):cy + size, max(cx, 0):cx + size] = k
    return ids


@pytest.mark.parametrize("device", DEVICES)
def test_boundary_maps_are_seg2bmap_and_metrics_boundary_map(device):
    rng = np.random.default_rng(0)
    masks = [rng.random((h, w)) < 0.5 for h, w in [(1, 1), (1, 7), (7, 1), (2, 2), (13, 17), (40, 31)]]
    masks += [np.ones((9, 11), bool), np.zeros((9, 11), bool), blobs(rng, (50, 60), 1) > 0]
    for mask in masks:
        got = boundary_maps(torch.from_numpy(mask).to(device)).cpu().numpy()
        np.testing.assert_array_equal(got, seg2bmap(mask))
        np.testing.assert_array_equal(got, metrics.boundary_map(mask))
    stack = np.stack([blobs(rng, (30, 40), 1) > 0 for _ in range(3)])
    np.testing.assert_array_equal(boundary_maps(torch.from_numpy(stack).to(device)).cpu().numpy(),
                                  np.stack([seg2bmap(m) for m in stack]))


@pytest.mark.parametrize("device", DEVICES)
def test_dilation_is_cv2_dilate_with_the_disk(device):
    rng = np.random.default_rng(1)
    images = rng.random((3, 37, 53)) < 0.01
    images[0, 0, 0] = images[1, -1, -1] = images[2, 18, 0] = True       # sources on the border
    for radius in (0, 1, 2, 3, 5, 8, 9, 16):
        expected = np.stack([cv2.dilate(m.astype(np.uint8), metrics.disk_kernel(radius)) > 0 for m in images])
        got = dilate_disk(torch.from_numpy(images).to(device), radius).cpu().numpy()
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_counts_follow_the_official_definitions(device, one_thread):
    """Multi-object synthetic frames at 480x880 (r = 9): objects on the border, an object absent from the
    ground truth, an empty and a full prediction, and ids above n_objects in the ground truth (ignored)."""
    rng = np.random.default_rng(2)
    shape = (480, 880)
    gt = blobs(rng, shape, 3, n_blobs=8)
    gt[gt == 2] = 0                                                     # object 2: empty in the GT
    gt[:40, -60:] = 5                                                   # id above n_objects: ignored
    preds = np.stack([blobs(rng, shape, 3, n_blobs=8) for _ in range(3)]
                     + [np.zeros(shape, np.uint8), np.full(shape, 1, np.uint8), np.where(gt == 5, 0, gt)])
    got = device_counts(preds, gt, 4, device).numpy()
    for index, pred in enumerate(preds):
        np.testing.assert_array_equal(got[index], official_counts(pred, gt, 4), err_msg=f"prediction {index}")
    assert_scores_equal_cpu_metrics(preds, gt, 4, device)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_ground_truth_and_predictions(device):
    shape = (48, 88)
    empty = np.zeros(shape, np.uint8)
    square = empty.copy()
    square[10:20, 30:50] = 1
    preds = np.stack([empty, square, np.ones(shape, np.uint8)])
    for gt in (empty, square, np.ones(shape, np.uint8)):
        got = device_counts(preds, gt, 1, device).numpy()
        for index, pred in enumerate(preds):
            np.testing.assert_array_equal(got[index], official_counts(pred, gt, 1))
        assert_scores_equal_cpu_metrics(preds, gt, 1, device)
    j, f = scores_from_counts(device_counts(preds[:1], empty, 1, device))
    assert (j.tolist(), f.tolist()) == ([[1.0]], [[1.0]])               # both empty: J = F = 1 (spec 2, 3.6)


def real_frames(gt_root, osvos_root, name, every):
    """(gt ids, OSVOS ids) of every `every`-th evaluated frame (first and last excluded) of one sequence."""
    folder = os.path.join(gt_root, "Annotations", "480p", name)
    frames = sorted(os.listdir(folder))[1:-1][::every]
    for frame in frames:
        gt = read_ids(os.path.join(folder, frame))
        yield np.where(gt == 255, 0, gt).astype(np.uint8), read_ids(os.path.join(osvos_root, name, frame))


def test_real_annotations_against_osvos(davis_root, osvos_root, one_thread):
    """The 20 shared sequences, every 8th evaluated frame (174 frames): DAVIS-2016 GT vs OSVOS binarised,
    shifted and empty (one object); OSVOS frame t as a multi-object GT vs OSVOS frame t + 3 and itself (the
    sequences with 2 or 3 objects, 8 frames each)."""
    names = sorted(os.listdir(os.path.join(davis_root, "Annotations", "480p")))
    assert len(names) == 20
    for name in names:
        for gt, osvos in real_frames(davis_root, osvos_root, name, 8):
            binary = (osvos > 0).astype(np.uint8)
            preds = np.stack([binary, np.roll(binary, (7, -40), (0, 1)), np.zeros_like(binary)])
            assert_scores_equal_cpu_metrics(preds, gt, 1, "cpu")
    for name in ("bmx-trees", "kite-surf", "soapbox", "horsejump-high"):
        folder = os.path.join(osvos_root, name)
        frames = sorted(os.listdir(folder))
        n_objects = int(read_ids(os.path.join(folder, frames[0])).max())
        for t in range(0, 36, 5):
            gt = read_ids(os.path.join(folder, frames[t]))
            pred = np.minimum(read_ids(os.path.join(folder, frames[t + 3])), n_objects)
            assert_scores_equal_cpu_metrics(np.stack([pred, gt]), gt, n_objects, "cpu")


@pytest.mark.parametrize("device", DEVICES)
def test_batches_of_settings_give_the_same_counts(device):
    rng = np.random.default_rng(3)
    gt = blobs(rng, (60, 90), 2)
    preds = np.stack([blobs(rng, (60, 90), 2) for _ in range(5)])
    whole = device_counts(preds, gt, 2, device)
    for max_batch in (1, 2, 5, 9):
        assert torch.equal(device_counts(preds, gt, 2, device, max_batch=max_batch), whole)
    assert whole.shape == (5, 2, len(COUNT_FIELDS))


def test_bad_arguments_are_refused():
    prepared = prepare_gt_batch(torch.zeros(8, 10, dtype=torch.uint8), 2)
    with pytest.raises(ValueError, match="holds id 3 but the ground truth has 2"):
        frame_counts(torch.full((2, 8, 10), 3, dtype=torch.uint8), prepared)
    with pytest.raises(ValueError, match="uint8 tensor"):
        frame_counts(torch.zeros(2, 8, 11, dtype=torch.uint8), prepared)
    with pytest.raises(ValueError, match="uint8 tensor"):
        frame_counts(torch.zeros(2, 8, 10, dtype=torch.int64), prepared)
    with pytest.raises(ValueError, match="max_batch"):
        frame_counts(torch.zeros(2, 8, 10, dtype=torch.uint8), prepared, max_batch=0)
    with pytest.raises(ValueError, match="uint8 tensor"):
        prepare_gt_batch(torch.zeros(8, 10, dtype=torch.int32), 2)
