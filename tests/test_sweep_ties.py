"""Issue 10 item 9, end to end: on a float16 cache full of exact score ties, every setting of a sweep has the
J&F of `propagate` + `score` of that setting, to the last bit (real shared frames, features quantised to
three levels so that many dot products are exactly equal)."""
import os

import numpy as np
import pytest

from lpcache import scoring
from lpcache.cache import write_sequence
from lpcache.config import SweepGrid
from lpcache.metrics import GLOBAL_COLUMNS
from lpcache.run_propagation import propagate
from lpcache.sweeping import sweep
from test_sweep import SEED_HW, SHORT, build_davis_subset, patch_features

N_FRAMES = 5
GRID = SweepGrid(temperature=(0.05, 0.7), topk=(1, 12), radius=(4.0, 12.0), video_len=(2,))
SEQUENCES = SHORT[:2]


def ternary(feats):
    """Each channel to -1, 0 or 1 (thresholds at +-0.5 std), plus a constant channel so that no vector is zero:
    few distinct feature vectors, many equal scores."""
    levels = np.clip(np.round(feats / feats.std()), -1, 1)
    return np.concatenate([levels, np.ones(levels.shape[:-1] + (1,))], axis=-1).astype(np.float32)


@pytest.fixture(scope="module")
def tie_data(tmp_path_factory):
    from conftest import DAVIS2016

    if not os.path.isdir(DAVIS2016):
        pytest.skip(f"real data not found at {DAVIS2016}")
    base = tmp_path_factory.mktemp("ties")
    root = build_davis_subset(DAVIS2016, base / "davis", SEQUENCES, N_FRAMES)
    cache = base / "cache" / "ternary"
    for seq in SEQUENCES:
        frames = [f"{i:05d}" for i in range(N_FRAMES)]
        feats = np.stack([ternary(patch_features(os.path.join(root, "JPEGImages", "480p", seq, f + ".jpg"),
                                                 channels=4)) for f in frames])
        write_sequence(str(cache), seq, feats, frames, dtype="float16",
                       attrs={"protocol": "seed", "input_hw": list(SEED_HW), "backbone": "ternary"})
    return root, str(cache)


def test_the_features_really_tie(tie_data):
    from lpcache.cache import FeatureCache

    _, cache = tie_data
    with FeatureCache(cache).open(SHORT[0]) as cached:
        flat = cached.read().reshape(-1, cached.channels)
    distinct = np.unique(flat, axis=0)
    assert len(distinct) < len(flat) / 5   # most positions share their vector with others: exact score ties


def test_sweep_equals_propagate_and_score_on_ties(tie_data, tmp_path):
    root, cache = tie_data
    result = sweep([cache], root, str(tmp_path / "sweep"), GRID, threads=1, progress=False)
    rows = {r["setting"]: r for r in result.rows}
    assert len(rows) == len(GRID)
    for params in GRID.settings():
        run = propagate(cache, root, str(tmp_path / "runs"), params, progress=False)
        single = scoring.score(root, run, gt_size=SEED_HW, progress=False)
        for column in GLOBAL_COLUMNS:
            assert rows[params.id][column] == single.global_scores[column], (params.id, column)
