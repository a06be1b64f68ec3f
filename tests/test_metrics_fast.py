"""The fast per-frame J/F core (bounding-box windows, rectangle-union dilation, cv2 boundaries) against a
straightforward whole-frame implementation written the official way: skimage disk + cv2.dilate over the frame."""
import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import disk

import cv2

from lpcache import metrics


def whole_frame_boundary(seg):
    """The official seg2bmap: E, S, SE neighbours, last row east only, last column south only."""
    seg = np.asarray(seg, bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1], s[:-1, :], se[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def whole_frame_scores(pred, gt, n_objects):
    """J and F per object exactly as davis2017-evaluation computes them, over the whole frame."""
    radius = int(np.ceil(0.008 * np.linalg.norm(gt.shape)))
    kernel = disk(radius).astype(np.uint8)
    j, f = [], []
    for k in range(1, n_objects + 1):
        p, g = pred == k, gt == k
        inter, union = np.sum(p & g), np.sum(p | g)
        j.append(1.0 if np.isclose(union, 0) else inter / union)
        pb, gb = whole_frame_boundary(p), whole_frame_boundary(g)
        fg_match = np.sum(pb * cv2.dilate(gb.astype(np.uint8), kernel))
        gt_match = np.sum(gb * cv2.dilate(pb.astype(np.uint8), kernel))
        n_fg, n_gt = np.sum(pb), np.sum(gb)
        if n_fg == 0 and n_gt > 0:
            precision, recall = 1, 0
        elif n_fg > 0 and n_gt == 0:
            precision, recall = 0, 1
        elif n_fg == 0 and n_gt == 0:
            precision, recall = 1, 1
        else:
            precision, recall = np.sum(fg_match) / float(n_fg), np.sum(gt_match) / float(n_gt)
        f.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    return np.array(j, np.float64), np.array(f, np.float64)


def assert_same(pred, gt, n_objects):
    j, f = metrics.frame_scores(pred, gt, n_objects)
    j_ref, f_ref = whole_frame_scores(pred, gt, n_objects)
    np.testing.assert_array_equal(j, j_ref)  # bit for bit
    np.testing.assert_array_equal(f, f_ref)
    prepared = metrics.prepare_gt_frame(gt, n_objects)
    for _ in range(2):  # the cached GT dilation gives the same numbers the second time
        again = metrics.frame_scores_prepared(pred, prepared)
        np.testing.assert_array_equal(again[0], j_ref)
        np.testing.assert_array_equal(again[1], f_ref)


@pytest.mark.parametrize("radius", range(0, 31))
def test_rectangle_union_dilation_is_the_disk_dilation(radius):
    rng = np.random.default_rng(radius)
    image = (rng.random((70, 90)) < 0.01).astype(np.uint8)
    image[0, 0] = image[-1, -1] = image[0, -1] = image[35, 0] = 1  # corners and an edge
    expected = cv2.dilate(image, disk(radius).astype(np.uint8))
    assert np.array_equal(metrics._dilate_disk(image, radius) != 0, expected != 0)
    # and scipy's binary dilation agrees (zero outside the image)
    assert np.array_equal(expected != 0, ndimage.binary_dilation(image, disk(radius).astype(bool)))


def test_boundary_map_is_the_official_one_on_random_masks_and_borders():
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (1, 7), (7, 1), (2, 2), (13, 17), (40, 33)]:
        for density in (0.0, 0.2, 0.5, 0.9, 1.0):
            mask = rng.random(shape) < density
            assert np.array_equal(metrics.boundary_map(mask), whole_frame_boundary(mask)), (shape, density)


@pytest.mark.parametrize("seed", range(12))
def test_random_multi_object_frames(seed):
    rng = np.random.default_rng(100 + seed)
    h, w = (int(v) for v in rng.integers(30, 160, 2))
    n = int(rng.integers(1, 4))
    gt = np.zeros((h, w), np.uint8)
    pred = np.zeros((h, w), np.uint8)
    for k in range(1, n + 1):
        y, x = int(rng.integers(-5, h)), int(rng.integers(-5, w))
        gt[max(0, y):y + int(rng.integers(2, h)), max(0, x):x + int(rng.integers(2, w))] = k
        dy, dx = (int(v) for v in rng.integers(-4, 5, 2))
        pred[max(0, y + dy):y + dy + int(rng.integers(1, h)), max(0, x + dx):x + dx + int(rng.integers(1, w))] = k
    pred[rng.random((h, w)) < 0.01] = rng.integers(0, n + 1)
    gt[rng.random((h, w)) < 0.005] = rng.integers(0, n + 2)  # ids above n are ignored
    assert_same(pred, gt, n)


def test_empty_masks():
    empty = np.zeros((48, 85), np.uint8)
    blob = empty.copy()
    blob[10:30, 20:50] = 1
    assert_same(empty, empty, 1)
    assert_same(empty, blob, 1)
    assert_same(blob, empty, 1)
    assert_same(empty, empty, 3)  # objects absent from both


def test_masks_touching_and_filling_the_border():
    h, w = 60, 107
    full = np.ones((h, w), np.uint8)
    corner = np.zeros((h, w), np.uint8)
    corner[:20, :30] = 1
    bottom_right = np.zeros((h, w), np.uint8)
    bottom_right[45:, 80:] = 1
    band = np.zeros((h, w), np.uint8)
    band[:, 50:] = 1
    for pred, gt in [(full, corner), (corner, full), (bottom_right, band), (band, bottom_right),
                     (corner, bottom_right), (full, full)]:
        assert_same(pred, gt, 1)


def test_boundaries_within_the_radius_of_the_border():
    h, w = 100, 160  # radius ceil(0.008 * 188.7) = 2
    for offset in range(0, 5):
        gt = np.zeros((h, w), np.uint8)
        gt[offset:offset + 30, offset:offset + 40] = 1
        pred = np.zeros((h, w), np.uint8)
        pred[h - 30 - offset:h - offset, w - 40 - offset:w - offset] = 1
        pred[offset:offset + 29, offset + 1:offset + 40] = 1
        assert_same(pred, gt, 1)
    large = np.zeros((480, 854), np.uint8)  # radius 8 at the DAVIS size
    large[3:200, 2:300] = 1
    shifted = np.zeros_like(large)
    shifted[0:190, 0:310] = 1
    shifted[470:, 840:] = 1
    assert_same(shifted, large, 1)


def test_single_pixels():
    h, w = 40, 60
    for (py, px), (gy, gx) in [((0, 0), (0, 0)), ((0, 0), (1, 1)), ((h - 1, w - 1), (h - 1, w - 1)),
                               ((5, 5), (5, 8)), ((5, 5), (20, 40)), ((h - 1, 0), (0, w - 1))]:
        pred = np.zeros((h, w), np.uint8)
        gt = np.zeros((h, w), np.uint8)
        pred[py, px] = 1
        gt[gy, gx] = 1
        assert_same(pred, gt, 1)


def test_non_uint8_and_bool_inputs_give_the_same_numbers():
    rng = np.random.default_rng(5)
    gt = np.zeros((50, 70), np.uint8)
    gt[10:40, 5:50] = 1
    gt[20:30, 55:68] = 2
    pred = np.roll(gt, (2, -3), axis=(0, 1))
    pred[rng.random(gt.shape) < 0.02] = 0
    expected = whole_frame_scores(pred, gt, 2)
    for dtype in (np.int32, np.int64, np.uint16):
        j, f = metrics.frame_scores(pred.astype(dtype), gt.astype(dtype), 2)
        np.testing.assert_array_equal(j, expected[0])
        np.testing.assert_array_equal(f, expected[1])
    binary = whole_frame_scores(pred == 1, gt == 1, 1)
    j, f = metrics.frame_scores(pred == 1, gt == 1, 1)
    np.testing.assert_array_equal(j, binary[0])
    np.testing.assert_array_equal(f, binary[1])
