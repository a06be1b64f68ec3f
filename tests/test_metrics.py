"""lpcache.metrics on small synthetic masks: hand-derived values and a brute-force re-derivation of the spec."""
import math

import numpy as np
import pytest

from lpcache import metrics


# ------------------------------------------------------------------ a slow, obviously-correct re-derivation
def naive_boundary(mask):
    mask = np.asarray(mask, bool)
    padded = np.pad(mask, ((0, 1), (0, 1)), mode="edge")  # replicate bottom row / right column
    east, south, south_east = padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]
    return (mask != east) | (mask != south) | (mask != south_east)


def naive_dilate(bmap, radius):
    out = np.zeros_like(bmap)
    h, w = bmap.shape
    for y, x in zip(*np.nonzero(bmap)):
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                if dx * dx + dy * dy <= radius * radius and 0 <= y + dy < h and 0 <= x + dx < w:
                    out[y + dy, x + dx] = True
    return out


def naive_scores(pred, gt, k):
    p, g = pred == k, gt == k
    union = np.sum(p | g)
    j = 1.0 if union == 0 else np.sum(p & g) / union
    r = math.ceil(0.008 * math.hypot(*pred.shape))
    pb, gb = naive_boundary(p), naive_boundary(g)
    n_fg, n_gt = pb.sum(), gb.sum()
    if n_fg == 0 and n_gt == 0:
        prec, rec = 1, 1
    elif n_fg == 0:
        prec, rec = 1, 0
    elif n_gt == 0:
        prec, rec = 0, 1
    else:
        prec = np.sum(pb & naive_dilate(gb, r)) / n_fg
        rec = np.sum(gb & naive_dilate(pb, r)) / n_gt
    f = 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)
    return j, f


def pairwise_mean(values):
    """numpy's pairwise summation (n <= 128) as the spec describes it, divided by n."""
    v = list(values)
    n = len(v)
    if n < 8:
        total = 0.0
        for x in v:
            total += x
        return total / n
    partial = v[:8]
    upto = n - n % 8
    for i in range(8, upto, 8):
        for lane in range(8):
            partial[lane] += v[i + lane]
    total = (((partial[0] + partial[1]) + (partial[2] + partial[3]))
             + ((partial[4] + partial[5]) + (partial[6] + partial[7])))
    for x in v[upto:]:
        total += x
    return total / n


# ------------------------------------------------------------------ boundary, radius, disk
def test_boundary_map_of_a_square_sits_on_the_top_left_side():
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:4] = True  # rows 1-2, cols 2-3
    expected = np.zeros((5, 6), bool)
    expected[0, 1:4] = True  # above the square (south / south-east neighbours are in it)
    expected[1, 1] = expected[2, 1] = True  # left of it
    expected[1, 3] = expected[2, 3] = True  # its right column (east neighbour is outside)
    expected[2, 2] = True  # its bottom row (south neighbour is outside)
    assert np.array_equal(metrics.boundary_map(mask), expected)


def test_image_border_creates_no_boundary():
    assert not metrics.boundary_map(np.ones((7, 9), bool)).any()
    assert not metrics.boundary_map(np.zeros((7, 9), bool)).any()
    mask = np.zeros((4, 4), bool)
    mask[:, 2:] = True  # object touching the right and bottom border
    assert metrics.boundary_map(mask)[:, 1].all() and metrics.boundary_map(mask).sum() == 4


def test_radius_and_disk():
    assert metrics.boundary_radius((480, 854)) == 8
    assert metrics.boundary_radius((480, 880)) == 9  # ceil(8.019)
    assert metrics.boundary_radius((100, 100)) == 2  # ceil(1.131)
    disk = metrics.disk_kernel(8)
    assert disk.shape == (17, 17) and int(disk.sum()) == 197
    assert disk[0, 8] == 1 and disk[0, 7] == 0  # strict radius: (8,1) is outside since 65 > 64


# ------------------------------------------------------------------ J and F per frame
def test_empty_and_full_conventions():
    h, w = 40, 50
    empty = np.zeros((h, w), np.uint8)
    gt = empty.copy()
    gt[10:20, 10:30] = 1
    assert metrics.frame_scores(empty, empty, 1) == ([1.0], [1.0])
    j, f = metrics.frame_scores(empty, gt, 1)
    assert (j[0], f[0]) == (0.0, 0.0)
    j, f = metrics.frame_scores(gt, empty, 1)
    assert (j[0], f[0]) == (0.0, 0.0)
    j, f = metrics.frame_scores(np.ones((h, w), np.uint8), gt, 1)
    assert j[0] == 200 / 2000 and f[0] == 0.0


def test_j_and_f_by_hand():
    gt = np.zeros((100, 100), np.uint8)
    gt[20:40, 20:40] = 1
    pred = np.zeros_like(gt)
    pred[20:40, 21:41] = 1  # shifted one column: every boundary pixel within r = 2
    j, f = metrics.frame_scores(pred, gt, 1)
    assert j[0] == 380 / 420 and f[0] == 1.0
    far = np.zeros_like(gt)
    far[60:80, 60:80] = 1
    j, f = metrics.frame_scores(far, gt, 1)
    assert j[0] == 0.0 and f[0] == 0.0  # disjoint boundaries: P = R = 0


@pytest.mark.parametrize("seed", range(6))
def test_frame_scores_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(20, 70, 2)
    n = 3
    gt = np.zeros((h, w), np.uint8)
    pred = np.zeros((h, w), np.uint8)
    for k in range(1, n + 1):  # random rectangles, overlapping, plus salt noise
        y, x = rng.integers(0, h - 5), rng.integers(0, w - 5)
        gt[y:y + rng.integers(3, h // 2), x:x + rng.integers(3, w // 2)] = k
        pred[y + rng.integers(-3, 4):y + rng.integers(2, h // 2), max(0, x - 2):x + rng.integers(2, w // 2)] = k
    pred[rng.random((h, w)) < 0.02] = rng.integers(0, n + 1)
    if seed == 5:
        pred[pred == 2] = 0  # one object missing
    j, f = metrics.frame_scores(pred, gt, n)
    for k in range(1, n + 1):
        j_ref, f_ref = naive_scores(pred, gt, k)
        assert j[k - 1] == j_ref and f[k - 1] == f_ref


def test_prepared_frame_gives_the_same_numbers():
    rng = np.random.default_rng(7)
    gt = np.zeros((60, 80), np.uint8)
    gt[5:30, 10:50] = 1
    gt[35:55, 30:70] = 2
    prepared = metrics.prepare_gt_frame(gt, 2)
    for _ in range(5):
        pred = np.roll(gt, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
        direct = metrics.frame_scores(pred, gt, 2)
        again = metrics.frame_scores_prepared(pred, prepared)
        assert np.array_equal(direct[0], again[0]) and np.array_equal(direct[1], again[1])


def test_gt_ids_above_n_are_ignored_and_prediction_ids_above_n_refused():
    gt = np.zeros((30, 30), np.uint8)
    gt[5:15, 5:15] = 1
    gt[20:25, 20:25] = 2  # not an object when n_objects = 1
    pred = (gt == 1).astype(np.uint8)
    assert metrics.frame_scores(pred, gt, 1) == ([1.0], [1.0])
    with pytest.raises(ValueError, match="id 2"):
        metrics.frame_scores(gt, gt, 1)
    with pytest.raises(ValueError, match="shape"):
        metrics.frame_scores(pred[:, :20], gt, 1)


# ------------------------------------------------------------------ statistics
def test_decay_cut_points_round_half_up():
    assert metrics.decay_cut_points(48).tolist() == [0, 12, 24, 35, 47]
    assert metrics.decay_cut_points(47).tolist() == [0, 12, 23, 35, 46]
    assert metrics.decay_cut_points(38).tolist() == [0, 9, 19, 28, 37]


def test_object_statistics_by_hand():
    mean, recall, decay = metrics.object_statistics([1.0, 0.0, 1.0, 0.0, 1.0])
    assert (mean, recall, decay) == (0.6, 0.6, 0.0)  # bins [0:2] and [3:5] overlap their neighbours
    assert metrics.object_statistics([0.5, 0.5, 0.5])[1] == 0.0  # recall is strictly > 0.5
    assert metrics.object_statistics([0.9]) == (0.9, 1.0, 0.0)  # T = 1: every bin is the one frame
    values = np.array([1.0] * 3 + [0.5] * 4 + [0.0] * 3)  # T = 10, cuts [0, 2, 5, 7, 9]
    assert metrics.object_statistics(values)[2] == pytest.approx(1.0 - 0.0)
    values = np.array([1.0, 1.0, 1.0, 0.2, 0.2, 0.2, 0.2, 0.2])  # T = 8, cuts [0, 2, 4, 5, 7]
    assert metrics.object_statistics(values)[2] == pytest.approx(1.0 - 0.2)


def test_means_use_pairwise_summation():
    rng = np.random.default_rng(3)
    for _ in range(50):  # find an array where left-to-right summation differs in the last bit
        values = rng.random(rng.integers(9, 100))
        naive = sum(values.tolist()) / len(values)
        if naive != pairwise_mean(values):
            break
    else:
        pytest.fail("no array separated the two summations")
    assert metrics.object_statistics(values)[0] == pairwise_mean(values) != naive
    rows = [metrics.ObjectRow(f"s_{i}", v, 0.0, 0.0, 1 - v, 0.0, 0.0) for i, v in enumerate(values)]
    scores = metrics.global_statistics(rows)
    assert scores["J-Mean"] == pairwise_mean(values)
    assert scores["J&F-Mean"] == (scores["J-Mean"] + scores["F-Mean"]) / 2


def test_sequence_scores_accumulate_frames_in_order():
    acc = metrics.SequenceScores("seq", 2)
    for t in range(5):
        acc.add([t / 4, 1.0], [1.0, t / 4])
    rows = acc.rows()
    assert [r.key for r in rows] == ["seq_1", "seq_2"]
    assert rows[0].j_mean == 0.5 and rows[0].j_recall == 0.4 and rows[0].j_decay == -0.75
    assert rows[1].f_decay == -0.75 and rows[1].j_decay == 0.0
    with pytest.raises(ValueError):
        acc.add([1.0], [1.0])
    with pytest.raises(ValueError, match="at least 3"):
        metrics.SequenceScores("empty", 1).rows()


def test_global_statistics_accepts_official_dicts():
    rows = [metrics.ObjectRow("a_1", 0.5, 1.0, 0.1, 0.7, 1.0, 0.2),
            metrics.ObjectRow("b_1", 0.25, 0.0, -0.1, 0.3, 0.5, 0.0)]
    from_rows = metrics.global_statistics(rows)
    assert metrics.global_statistics([r.as_dict() for r in rows]) == from_rows
    assert from_rows == {"J&F-Mean": 0.4375, "J-Mean": 0.375, "J-Recall": 0.5, "J-Decay": 0.0,
                         "F-Mean": 0.5, "F-Recall": 0.75, "F-Decay": 0.1}


def test_disk_kernel_is_scikit_image_disk_and_the_strict_radius_disk():
    """The kernel comes from skimage.morphology.disk (as in the official code) and equals, bit for bit, the
    disk {dx^2 + dy^2 <= r^2} for radii 1..20."""
    from skimage.morphology import disk

    for radius in range(1, 21):
        kernel = metrics.disk_kernel(radius)
        expected = np.array([[1 if dx * dx + dy * dy <= radius * radius else 0 for dx in range(-radius, radius + 1)]
                             for dy in range(-radius, radius + 1)], dtype=np.uint8)
        assert kernel.dtype == np.uint8 and kernel.flags.c_contiguous and not kernel.flags.writeable
        np.testing.assert_array_equal(kernel, expected)
        np.testing.assert_array_equal(kernel, disk(radius))
