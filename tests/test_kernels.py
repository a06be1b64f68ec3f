"""Tile plans, windowed scores, top-k lists and label mixing (lpcache.propagation.kernels)."""
import numpy as np
import pytest
import torch

from lpcache.propagation import kernels


@pytest.mark.parametrize("radius,expected", [(18, 17), (17.5, 17), (1, 0), (1.5, 1), (2, 1)])
def test_reach(radius, expected):
    assert kernels.reach(radius) == expected


def test_radius_18_has_1005_positions_on_an_open_grid():
    plan = kernels.plan_tiles((40, 40), [18.0], (1, 1))
    centre = [t for t in plan.tiles if t.rows == (20, 21) and t.cols == (20, 21)][0]
    assert int((~centre.outside[18.0]).sum()) == 1005


@pytest.mark.parametrize("grid,radii,tile", [((9, 13), [2.0, 3.5], (2, 5)), ((7, 6), [18.0], None),
                                             ((12, 15), [4.0, 1.0], (4, 4))])
def test_plan_covers_every_query_once_with_every_in_radius_key(grid, radii, tile):
    plan = kernels.plan_tiles(grid, radii, tile)
    h, w = grid
    seen = torch.cat([t.query_index for t in plan.tiles]).sort().values
    assert torch.equal(seen, torch.arange(h * w))
    ys, xs = np.divmod(np.arange(h * w), w)
    for t in plan.tiles:
        assert t.key_index.numel() == (t.key_rows[1] - t.key_rows[0]) * (plan.blocks[t.block][1] - plan.blocks[t.block][0])
        for radius in radii:
            inside = (~t.outside[radius]).numpy()
            for row, q in enumerate(t.query_index.tolist()):
                dist2 = (ys - ys[q]) ** 2 + (xs - xs[q]) ** 2
                want = set(np.flatnonzero(dist2 < radius * radius).tolist())
                got = set(t.key_index[inside[row]].tolist())
                assert got == want


def test_window_scores_equal_dense_products():
    """Raw scores come per query with the frames side by side, whatever runs of frames they are given in."""
    torch.manual_seed(0)
    plan = kernels.plan_tiles((6, 8), [2.5], (3, 4))
    frames = torch.randn(4, 6, 8, 5)
    for t in plan.tiles:
        (y0, y1), (x0, x1), (ky0, ky1) = t.rows, t.cols, t.key_rows
        kx0, kx1 = plan.blocks[t.block]
        queries = frames[0, y0:y1, x0:x1].reshape(-1, 5)
        keys = frames[1:, ky0:ky1, kx0:kx1].reshape(3, -1, 5)
        want = torch.stack([torch.einsum("mc,nc->mn", queries, frames[f].reshape(-1, 5))[:, t.key_index]
                            for f in (1, 2, 3)], 1)
        for segments in ([keys], [keys[:1], keys[1:]], [keys[:1], keys[1:2], keys[2:]]):
            got = kernels.window_scores(queries, segments)
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        stacked = kernels.window_scores(torch.cat([queries, 2 * queries]), [keys])   # a block of 2
        torch.testing.assert_close(stacked, torch.cat([want, 2 * want]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("levels", [3, 50, None])
def test_bands_topk_equals_topk_of_each_masked_band(levels):
    """Several bands of one score tensor at once, restricted to a rectangle of the window, with ties (few
    levels) and short windows: per band, the same values as `topk_ordered` of the masked band, and the same
    columns for every finite value once ties inside the list are put in index order."""
    generator = torch.Generator().manual_seed(levels or 7)
    for trial in range(150):
        rows, frames, height, width, k = (int(torch.randint(low, high, (), generator=generator))
                                          for low, high in ((1, 12), (1, 6), (1, 7), (1, 7), (1, 12)))
        shape = (2 * rows, frames + 2, (height + 2) * (width + 3))
        scores = (torch.randint(0, levels, shape, generator=generator).float() if levels
                  else torch.randn(shape, generator=generator))
        window_hw, rectangle = (height + 2, width + 3), (slice(1, 1 + height), slice(2, 2 + width))
        if trial % 2:                                                   # the whole key window
            (height, width), rectangle = window_hw, (slice(0, window_hw[0]), slice(0, window_hw[1]))
        positions = torch.arange(shape[-1]).view(window_hw)[rectangle].reshape(-1)
        outside = torch.rand(rows, height * width, generator=generator) < 0.4
        window = kernels.SubWindow(*rectangle, outside, positions, positions)
        bias = window.bias
        starts = [(0, 2), (rows, 0), (rows, 1)]
        peaks = torch.stack([scores[at:at + rows, first:first + frames].amax(1) for at, first in starts])
        for given in (None, peaks[:, :, positions]):
            values, index = kernels.bands_topk(scores, starts, frames, window, window_hw, k, given)
            for band, (at, first) in enumerate(starts):
                masked = (scores[at:at + rows, first:first + frames][:, :, positions] + bias[:, None]).reshape(rows, -1)
                want_values, want_index = kernels.topk_ordered(masked, k)
                got_values, got_index = kernels.order_ties(values[band].clone(), index[band].clone())
                finite = want_values > float("-inf")
                assert torch.equal(got_values, want_values)
                assert torch.equal(got_index[finite], want_index[finite])
                assert int(got_index.max()) < frames * height * width


def test_sub_windows_hold_every_key_of_their_radius():
    plan = kernels.plan_tiles((15, 17), [5.0, 2.0, 1.0], (4, 4))
    for t in plan.tiles:
        for radius in plan.radii:
            window = t.windows[radius]
            inside = set(t.key_index[(~t.outside[radius]).any(0)].tolist())
            assert inside <= set(window.key_index.tolist())
            shape = (t.key_rows[1] - t.key_rows[0], plan.blocks[t.block][1] - plan.blocks[t.block][0])
            assert torch.equal(window.key_index, t.key_index.view(shape)[window.rows, window.cols].reshape(-1))
            assert int((~window.outside).sum()) == int((~t.outside[radius]).sum())
        assert len(t.windows[1.0].key_index) < len(t.windows[5.0].key_index) == len(t.key_index)


def test_topk_ordered_pads_with_minus_infinity():
    values, index = kernels.topk_ordered(torch.tensor([[1.0, 3.0, 2.0]]), 5)
    assert values.tolist() == [[3.0, 2.0, 1.0, float("-inf"), float("-inf")]]
    assert index[0, :3].tolist() == [1, 2, 0]


def test_topk_ordered_breaks_ties_by_lower_index():
    scores = torch.tensor([[1.0, 5.0, 2.0, 5.0, 5.0, 2.0, 5.0, 0.0]])
    for k, want in [(1, [1]), (2, [1, 3]), (4, [1, 3, 4, 6]), (5, [1, 3, 4, 6, 2]), (8, [1, 3, 4, 6, 2, 5, 0, 7])]:
        values, index = kernels.topk_ordered(scores, k)
        assert index[0].tolist() == want
        assert values[0].tolist() == scores[0, want].tolist()


@pytest.mark.parametrize("levels", [2, 4, 50])
def test_topk_ordered_is_a_stable_descending_sort_cut_at_k(levels):
    """Every k gives the first k of the same order (the order of numpy's stable sort of the negated scores)."""
    rng = np.random.default_rng(levels)
    scores = rng.integers(0, levels, size=(3, 7, 40)).astype(np.float32)
    want = np.argsort(-scores, axis=-1, kind="stable")
    for k in range(1, 46):
        values, index = kernels.topk_ordered(torch.from_numpy(scores), k)
        kept = min(k, 40)
        np.testing.assert_array_equal(index[..., :kept].numpy(), want[..., :kept])
        np.testing.assert_array_equal(values[..., :kept].numpy(), np.take_along_axis(scores, want[..., :kept], -1))


def test_topk_ordered_keeps_minus_infinity_last():
    scores = torch.tensor([[float("-inf"), 2.0, float("-inf"), 2.0, float("-inf")]])
    values, index = kernels.topk_ordered(scores, 3)
    assert values[0].tolist() == [2.0, 2.0, float("-inf")]
    assert index[0, :2].tolist() == [1, 3]


def test_merge_topk_ranks_equal_scores_by_slot_then_position():
    """Two slot lists (each in tie-rule order) laid out slot 0 first: ties go to slot 0, then slot 1."""
    lists = torch.tensor([[0.5, 0.2, 0.7, 0.5, 0.5]])           # slot 0: [0.5, 0.2]; slot 1: [0.7, 0.5, 0.5]
    label_index = torch.tensor([[10, 11, 20, 21, 22]])
    for k, want in [(1, [20]), (2, [20, 10]), (3, [20, 10, 21]), (4, [20, 10, 21, 22]), (5, [20, 10, 21, 22, 11])]:
        values, picked = kernels.merge_topk(lists, label_index, k)
        assert picked[0].tolist() == want


def test_mix_labels_adds_the_terms_best_first():
    """The sum runs over the kept candidates in order, as a float32 running sum would."""
    rng = np.random.default_rng(1)
    values = torch.from_numpy(np.sort(rng.normal(size=(50, 7)).astype(np.float32), axis=1)[:, ::-1].copy())
    scale = 10.0 ** rng.integers(-3, 3, size=(30, 1))                 # labels of very different sizes
    labels = torch.from_numpy(rng.random(size=(30, 3)) * scale).float()
    label_index = torch.from_numpy(rng.integers(0, 30, size=(50, 7)))
    weights = torch.softmax(values / 0.3, dim=1).numpy()
    want = np.zeros((50, 3), np.float32)
    for row in range(50):
        total = weights[row, 0] * labels[label_index[row, 0]].numpy()
        for column in range(1, 7):
            total = total + weights[row, column] * labels[label_index[row, column]].numpy()
        want[row] = total
    np.testing.assert_array_equal(kernels.mix_labels(values, label_index, labels, 0.3).numpy(), want)


@pytest.mark.parametrize("channels", [4, 256])
def test_products_do_not_depend_on_the_shape(channels):
    """A score is the same bits in a 1 x 1 product, a thin one, a batched one, or the full product, with the
    keys transposed as a view or stored transposed."""
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(300, channels))
    feats = torch.from_numpy((feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float16)).float()
    queries, keys = feats[:100], feats[100:]
    full = kernels.products(queries, keys.t()).numpy()
    for (q0, q1), (k0, k1) in [((0, 1), (0, 1)), ((3, 6), (5, 12)), ((7, 8), (0, 200)), ((0, 100), (9, 10)),
                               ((10, 27), (40, 49)), ((50, 99), (1, 140))]:
        part, want = keys[k0:k1], full[q0:q1, k0:k1]
        np.testing.assert_array_equal(kernels.products(queries[q0:q1], part.t()).numpy(), want)
        np.testing.assert_array_equal(kernels.products(queries[q0:q1], part.t().contiguous()).numpy(), want)
        batched = kernels.products(queries[q0:q1], torch.stack([part, part.flip(0)]).transpose(1, 2)).numpy()
        np.testing.assert_array_equal(batched[0], want)
        np.testing.assert_array_equal(batched[1], want[:, ::-1])


def test_merge_and_mix_match_a_direct_computation():
    lists = torch.tensor([[0.9, 0.1, 0.8, 0.85, 0.2]])
    label_index = torch.tensor([[0, 1, 2, 0, 3]])
    values, picked = kernels.merge_topk(lists, label_index, 3)
    assert values[0].tolist() == pytest.approx([0.9, 0.85, 0.8])
    assert picked.tolist() == [[0, 0, 2]]
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.25, 0.75], [0.5, 0.5]])
    mixed = kernels.mix_labels(values, picked, labels, 0.5)
    weights = np.exp(np.array([0.9, 0.85, 0.8]) / 0.5)
    weights /= weights.sum()
    expected = weights[0] * np.array([1, 0]) + weights[1] * np.array([1, 0]) + weights[2] * np.array([0.25, 0.75])
    np.testing.assert_allclose(mixed[0].numpy(), expected, rtol=1e-6)


def test_choose_tile_prefers_small_tiles_on_large_grids():
    tile = kernels.choose_tile((60, 110), 18)
    assert tile[0] * tile[1] <= 256
    assert kernels.window_products((60, 110), 18, tile) < 0.3 * (60 * 110) ** 2
    on_gpu = kernels.choose_tile((60, 110), 18, 256, "cuda")   # launch-bound: few big tiles
    assert on_gpu[0] * on_gpu[1] >= 16 * tile[0] * tile[1]
    plan = kernels.plan_tiles((20, 30), [5.0], (4, 8))
    assert plan.computed_products == kernels.window_products((20, 30), 5.0, (4, 8))


