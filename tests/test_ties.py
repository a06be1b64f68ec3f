"""One tie rule everywhere: a setting inside a sweep gives the bits it gives alone (issue 10, item 9).

Features quantised to few levels make many scores tie exactly, so the k-th kept candidate, the order of
the softmax terms and the order of the label sum all depend on how ties are broken. The rule (value
descending, then the candidate's place in the seed's order of context slots and grid positions) must give
the same soft maps whatever k_max, context length, radii, block size and tile plan the run uses, and the
dense reference (tests/dense_reference.py), which states the rule, must agree bit for bit.
"""
import itertools

import numpy as np
import pytest

from dense_reference import reference_propagate
from lpcache.config import PropagationParams
from lpcache.propagation import iter_propagate, labels

FRAMES, GRID, SCALE = 8, (12, 20), 4
SETTINGS = [PropagationParams(*values) for values in itertools.product((0.7, 0.05), (1, 3, 8), (2.0, 4.5), (2, 5))]


def quantised_features(kind, seed=0):
    """(FRAMES, h, w, C) float16 unit vectors with few distinct values.

    24-cell: the 24 vertices of the 24-cell (+-e_i and (+-1/2)^4); every dot product is 0, +-1/2 or +-1,
    exact in any summation order. ternary: components in {-1, 0, 1}, normalised, rounded to float16 (the
    scores tie as often, but are rounded sums)."""
    rng = np.random.default_rng(seed)
    if kind == "24-cell":
        axes = np.concatenate([np.eye(4), -np.eye(4)])
        halves = np.array(list(itertools.product((-0.5, 0.5), repeat=4)))
        vertices = np.concatenate([axes, halves])
        feats = vertices[rng.integers(0, len(vertices), size=(FRAMES,) + GRID)]
    else:
        feats = rng.integers(-1, 2, size=(FRAMES,) + GRID + (6,)).astype(np.float64)
        feats[np.abs(feats).sum(-1) == 0, 0] = 1.0
        feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
    return feats.astype(np.float16)


def first_mask():
    """Two objects on a 48x80 frame 0 (the grid up-sampled by 4)."""
    mask = np.zeros((GRID[0] * SCALE, GRID[1] * SCALE), np.uint8)
    mask[6:30, 8:40] = 1
    mask[22:46, 44:76] = 2
    return mask


def run(monkeypatch, feats, settings, **options):
    """({params: masks (T, H, W)}, {params: soft maps (T-1, h, w, K+1)}) of one iter_propagate call; the soft
    maps are caught on their way to the up-sampling."""
    caught = []
    upsample = labels.upsample_argmax       # what the seed protocol's decoder calls

    def catch(soft, ids, out_hw):
        caught.append(np.array(soft))
        return upsample(soft, ids, out_hw)

    monkeypatch.setattr(labels, "upsample_argmax", catch)
    mask = first_mask()
    masks = {p: [] for p in settings}
    softs = {p: [] for p in settings}
    for t, out in iter_propagate(feats, mask, settings, mask.shape, **options):
        for p in settings:                       # the engine steps the settings in the order given
            masks[p].append(out[p])
            if t:
                softs[p].append(caught.pop(0))
    assert not caught
    monkeypatch.setattr(labels, "upsample_argmax", upsample)
    return ({p: np.stack(m) for p, m in masks.items()}, {p: np.stack(s) for p, s in softs.items()})


def assert_same(got, want, what):
    differing = [p.id for p in want if not np.array_equal(got[p], want[p])]
    assert not differing, f"{what} differ for {len(differing)} of {len(want)} settings: {differing[:4]}"


@pytest.fixture(scope="module", params=["24-cell", "ternary"])
def feats(request):
    return quantised_features(request.param)


def test_many_scores_tie(feats):
    """The premise: among the scores of one target, most values occur more than once."""
    flat = feats.astype(np.float32).reshape(FRAMES, -1, feats.shape[-1])
    scores = flat[1] @ np.concatenate([flat[0], flat[1]]).T
    _, counts = np.unique(scores, return_counts=True)
    assert counts[counts > 1].sum() > 0.99 * scores.size


def test_every_setting_of_a_sweep_equals_that_setting_alone(monkeypatch, feats):
    together_masks, together_softs = run(monkeypatch, feats, SETTINGS)
    alone_masks, alone_softs = {}, {}
    for params in SETTINGS:
        masks, softs = run(monkeypatch, feats, [params])
        alone_masks[params], alone_softs[params] = masks[params], softs[params]
    assert_same(together_softs, alone_softs, "soft maps")
    assert_same(together_masks, alone_masks, "masks")


@pytest.mark.parametrize("options", [dict(block=1, tile_hw=(2, 3)), dict(block=3, tile_hw=(5, 7)),
                                     dict(block=4, tile_hw=GRID)])
def test_block_size_and_tile_plan_change_nothing(monkeypatch, feats, options):
    masks, softs = run(monkeypatch, feats, SETTINGS)
    other_masks, other_softs = run(monkeypatch, feats, SETTINGS, **options)
    assert_same(other_softs, softs, "soft maps")
    assert_same(other_masks, masks, "masks")


def test_the_engine_equals_the_dense_reference(monkeypatch, feats):
    masks, softs = run(monkeypatch, feats, SETTINGS)
    mask = first_mask()
    for params in SETTINGS[::3]:             # 8 of the 24, every value of every parameter
        want_masks, want_softs = reference_propagate(feats, mask, params.temperature, params.topk, params.radius,
                                                     params.video_len, mask.shape, return_soft=True)
        want_softs = np.stack([s.numpy().reshape(GRID + (-1,)) for s in want_softs[1:]])
        np.testing.assert_array_equal(softs[params], want_softs, err_msg=params.id)
        np.testing.assert_array_equal(masks[params], want_masks, err_msg=params.id)


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_lower_precision_products_keep_the_rule_on_cpu(monkeypatch, precision):
    feats = quantised_features("ternary", seed=1)
    settings = SETTINGS[::5]
    together = run(monkeypatch, feats, settings, precision=precision)[1]
    alone = {p: run(monkeypatch, feats, [p], precision=precision)[1][p] for p in settings}
    assert_same(together, alone, "soft maps")
