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


def test_window_scores_equal_dense_products_masked_outside_the_radius():
    torch.manual_seed(0)
    plan = kernels.plan_tiles((6, 8), [2.5], (3, 4))
    frames = torch.randn(3, 6, 8, 5)
    for t in plan.tiles:
        (y0, y1), (x0, x1), (ky0, ky1) = t.rows, t.cols, t.key_rows
        kx0, kx1 = plan.blocks[t.block]
        queries = frames[0, y0:y1, x0:x1].reshape(-1, 5)
        keys = frames[1:, ky0:ky1, kx0:kx1].reshape(2, -1, 5)
        got = kernels.window_scores(queries, keys, t.outside[2.5])
        dense = torch.einsum("mc,nc->mn", queries, frames[1].reshape(-1, 5))
        want = dense[:, t.key_index].masked_fill(t.outside[2.5], float("-inf"))
        torch.testing.assert_close(got[0], want, rtol=1e-6, atol=1e-6)
        stacked = kernels.window_scores(torch.cat([queries, 2 * queries]), keys, t.outside[2.5])   # a block of 2
        torch.testing.assert_close(stacked[0], torch.cat([want, 2 * want]), rtol=1e-6, atol=1e-6)


def test_topk_padded_pads_with_minus_infinity():
    values, index = kernels.topk_padded(torch.tensor([[1.0, 3.0, 2.0]]), 5)
    assert values.tolist() == [[3.0, 2.0, 1.0, float("-inf"), float("-inf")]]
    assert index[0, :3].tolist() == [1, 2, 0]


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
