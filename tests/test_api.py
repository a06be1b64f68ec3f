"""The Python API (`import lpcache`): lazy and cheap to import, documented, result objects, and the README's
"Python API" example run as written.

Unit tests use a synthetic DAVIS root and a hand-made cache (pooled pixels of each frame, randomly projected),
so no backbone runs; the README example runs the real efficientnet_lite0 extraction in a subprocess.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import lpcache
from lpcache import scoring
from lpcache.api import Scores, SweepResult, make_grid
from lpcache.cache import write_sequence
from lpcache.config import PropagationParams, SweepGrid
from lpcache.errors import InputError
from lpcache.synthetic import make_synthetic_davis

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HW = (96, 160)
N_FRAMES = 6
SEQUENCES = ["synthetic-00", "synthetic-01"]
STRIDE = 8


def _python(code, cwd=None, timeout=120):
    """Run `code` in a fresh interpreter; returns the completed process (output captured as text)."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd or REPO, capture_output=True, text=True,
                          timeout=timeout)


def _pooled_features(jpeg, channels=16):
    """STRIDE x STRIDE patches of the frame, centred and randomly projected: (h, w, channels)."""
    pixels = np.asarray(Image.open(jpeg).convert("RGB"), np.float32) / 255.0
    h, w = HW[0] // STRIDE, HW[1] // STRIDE
    patches = pixels.reshape(h, STRIDE, w, STRIDE, 3).transpose(0, 2, 1, 3, 4).reshape(h, w, -1)
    projection = np.random.default_rng(0).standard_normal((patches.shape[-1], channels)).astype(np.float32)
    return (patches - patches.mean(-1, keepdims=True)) @ projection


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(DAVIS root, cache root holding one backbone folder 'pool8') for 2 synthetic sequences of 6 frames."""
    base = tmp_path_factory.mktemp("api")
    davis = make_synthetic_davis(str(base / "davis"), n_sequences=2, n_frames=N_FRAMES, hw=HW)
    cache_root = base / "cache"
    frames = [f"{t:05d}" for t in range(N_FRAMES)]
    for seq in SEQUENCES:
        feats = np.stack([_pooled_features(os.path.join(davis, "JPEGImages", "480p", seq, f + ".jpg"))
                          for f in frames])
        write_sequence(str(cache_root / "pool8"), seq, feats, frames, dtype="float32",
                       attrs={"protocol": "native", "input_hw": list(HW), "orig_hw": list(HW)})
    return davis, str(cache_root)


# ----------------------------------------------------------------------------------------------- import, help
def test_import_lpcache_does_not_import_torch():
    done = _python("import sys, lpcache; assert 'torch' not in sys.modules, 'torch imported'; "
                   "names = dir(lpcache); print(sorted(set(names) & set(lpcache.__all__)))")
    assert done.returncode == 0, done.stderr
    for name in ("extract", "propagate", "sweep", "score", "PropagationParams", "SweepGrid"):
        assert repr(name) in done.stdout


def test_help_documents_arguments_and_return_value():
    done = _python("import sys, lpcache; help(lpcache.score); assert 'torch' not in sys.modules")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "score(davis, results, **options)" in text
    for word in ("Args:", "davis:", "results:", "gt_size", "Returns:", "Scores", "global_scores", "Example:"):
        assert word in text, word


@pytest.mark.parametrize("name", ["extract", "propagate", "sweep", "score"])
def test_every_function_has_args_returns_and_example(name):
    doc = getattr(lpcache, name).__doc__
    assert all(part in doc for part in ("Args:", "Returns:", "Example:", f"lpcache.{name}(")), name


def test_lazy_names_are_the_real_objects():
    from lpcache import api, config

    assert lpcache.PropagationParams is config.PropagationParams and lpcache.SweepGrid is config.SweepGrid
    assert lpcache.score is api.score and lpcache.propagate is api.propagate
    with pytest.raises(AttributeError):
        lpcache.no_such_name


# ----------------------------------------------------------------------------------------------- propagate, score
def test_propagate_scores_equal_scoring_on_the_same_run(data, tmp_path):
    davis, cache_root = data
    run = lpcache.propagate(cache_root, davis, tmp_path / "runs", temperature=0.1, topk=4, score=True,
                            progress=False)
    assert run.run_id == "pool8__t0.1_k4_r18_L20" and run.run_dir == str(tmp_path / "runs" / run.run_id)
    assert run.params == PropagationParams(0.1, 4, 18.0, 20) and run.sequences == SEQUENCES
    expected = scoring.score(davis, run.run_dir, progress=False)
    assert run.scores.global_scores == expected.global_scores
    assert run.scores.per_object == expected.per_object
    assert list(run.scores.per_object) == ["synthetic-00_1", "synthetic-00_2", "synthetic-01_1", "synthetic-01_2"]
    with open(os.path.join(run.run_dir, "global_results-val.csv")) as handle:  # the CLI's files are written too
        assert handle.read().splitlines()[1].split(",")[0] == "%.3f" % run.scores.jf
    assert run.masks is None
    assert "J&F-Mean" in str(run.scores) and "synthetic-01_2" in str(run.scores)
    assert run.scores.as_dict() == {"global": expected.global_scores, "per_object": expected.per_object}


def test_returned_masks_equal_the_written_pngs(data, tmp_path):
    davis, cache_root = data
    backbone_dir = os.path.join(cache_root, "pool8")  # a backbone folder works as well as the root
    run = lpcache.propagate(backbone_dir, davis, tmp_path / "runs", "default", return_masks=True,
                            sequences=["synthetic-01"], progress=False)
    assert run.scores is None and list(run.masks) == ["synthetic-01"]
    masks = run.masks["synthetic-01"]
    assert len(masks) == N_FRAMES
    for t, mask in enumerate(masks):
        with Image.open(os.path.join(run.run_dir, "synthetic-01", f"{t:05d}.png")) as image:
            assert image.mode == "P"
            np.testing.assert_array_equal(mask, np.array(image))
        assert mask.dtype == np.uint8 and mask.shape == HW
    assert set(np.unique(masks[-1])) <= {0, 1, 2} and masks[-1].any()


def test_score_of_a_run_folder_uses_its_sequences_and_size(data, tmp_path):
    """A run of one sequence written at 48x80 scores with no option; plain scoring needs both told."""
    davis, cache_root = data
    run = lpcache.propagate(cache_root, davis, tmp_path / "runs", out_size="48x80", sequences=["synthetic-01"],
                            progress=False)
    with pytest.raises(InputError):
        scoring.score(davis, run.run_dir, progress=False)
    scores = lpcache.score(davis, run.run_dir, progress=False)
    expected = scoring.score(davis, run.run_dir, sequences=["synthetic-01"], gt_size=(48, 80), progress=False)
    assert scores.global_scores == expected.global_scores and list(scores.per_object) == ["synthetic-01_1",
                                                                                          "synthetic-01_2"]
    assert lpcache.score(davis, run, gt_size="48x80", progress=False).per_object == expected.per_object


def test_params_from_preset_dict_and_keywords(data, tmp_path):
    davis, cache_root = data
    out = tmp_path / "runs"
    vits8 = lpcache.propagate(cache_root, davis, out, "vits8", sequences=["synthetic-00"], progress=False)
    assert vits8.params == PropagationParams(0.5, 12, 32.0, 20)
    mixed = lpcache.propagate(cache_root, davis, out, {"temperature": 0.2, "topk": 3}, video_len=4,
                              sequences=["synthetic-00"], progress=False)
    assert mixed.params == PropagationParams(0.2, 3, 18.0, 4) and mixed.run_id == "pool8__t0.2_k3_r18_L4"
    for bad in ("nope", {"temp": 0.1}):
        with pytest.raises(InputError):
            lpcache.propagate(cache_root, davis, out, bad, progress=False)
    with pytest.raises(InputError, match="topk 0"):
        lpcache.propagate(cache_root, davis, out, topk=0, progress=False)


# ----------------------------------------------------------------------------------------------- sweep
def test_grid_from_grid_dict_and_keywords():
    assert make_grid(temperature=[0.1, 0.7]) == SweepGrid(temperature=(0.1, 0.7))
    assert make_grid({"topk": [4, 8]}, temperature=0.1) == SweepGrid(temperature=(0.1,), topk=(4, 8))
    base = SweepGrid(temperature=(0.1, 0.2), radius=(8.0,))
    assert make_grid(base) == base
    assert make_grid(base, temperature=[0.3]) == SweepGrid(temperature=(0.3,), radius=(8.0,))
    assert len(make_grid({"temperature": ["0.05", 0.1]}, video_len=[2, 3])) == 4
    for grid, values in ((None, {}), ({"tempreature": [1]}, {}), (None, {"topk": []}), ([0.1], {})):
        with pytest.raises(InputError):
            make_grid(grid, **values)


def test_sweep_rows_match_propagate_scores(data, tmp_path):
    davis, cache_root = data
    result = lpcache.sweep(cache_root, davis, tmp_path / "sweep", {"temperature": [0.1, 0.7]}, topk=[4],
                           progress=False)
    assert [r["setting"] for r in result.rows] == ["t0.1_k4_r18_L20", "t0.7_k4_r18_L20"]
    assert result.backbones == ["pool8"] and result.sequences == SEQUENCES
    assert os.path.isfile(tmp_path / "sweep" / "sweep.json")
    best = result.best()
    assert best == max(result.rows, key=lambda r: r["J&F-Mean"]) and result.top(5)[0] == best
    run = lpcache.propagate(cache_root, davis, tmp_path / "runs", result.best_params(), score=True, progress=False)
    assert run.run_id.endswith(best["setting"]) and run.scores.global_scores["J&F-Mean"] == best["J&F-Mean"]
    rows, per_object = result.to_pandas()
    assert list(rows["setting"]) == [r["setting"] for r in result.rows] and len(per_object) == 2 * 4


def test_best_needs_a_backbone_name_when_several():
    rows = [{"backbone": b, "setting": s, "temperature": t, "topk": 8, "radius": 18.0, "video_len": 20,
             "J&F-Mean": jf} for b, s, t, jf in (("a", "x", 0.1, 0.5), ("a", "y", 0.7, 0.6), ("b", "x", 0.1, 0.9))]
    result = SweepResult("out", rows, [], ["a", "b"], ["s"], SweepGrid())
    with pytest.raises(InputError, match="name one of a, b"):
        result.best()
    assert result.best("a")["setting"] == "y" and result.best_params("b") == PropagationParams(0.1, 8, 18.0, 20)
    assert [r["J&F-Mean"] for r in result.top(2, "a")] == [0.6, 0.5]
    with pytest.raises(InputError, match="'c' not in this sweep"):
        result.best("c")


# ----------------------------------------------------------------------------------------------- pandas
def test_scores_to_pandas():
    pytest.importorskip("pandas")
    scores = Scores({"J&F-Mean": 0.5, "J-Mean": 0.6}, {"s_1": {"J-Mean": 0.6, "F-Mean": 0.4},
                                                       "s_2": {"J-Mean": 0.2, "F-Mean": 0.1}})
    global_frame, per_object = scores.to_pandas()
    assert global_frame.shape == (1, 2) and global_frame.loc[0, "J&F-Mean"] == 0.5
    assert list(per_object.index) == ["s_1", "s_2"] and per_object.loc["s_2", "F-Mean"] == 0.1


def test_to_pandas_without_pandas_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` raise ImportError
    result = SweepResult("out", [], [], ["a"], [], SweepGrid())
    for thing in (Scores({}, {}), result):
        with pytest.raises(ImportError, match="pip install pandas"):
            thing.to_pandas()


# ----------------------------------------------------------------------------------------------- README
def readme_example() -> str:
    """The first ```python block under the README's '## Python API' heading."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in the README's Python API section"
    return match.group(1)


def test_readme_python_api_example_runs(tmp_path):
    done = _python(readme_example(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "efficientnet_lite0-native ['synthetic-00', 'synthetic-01']" in out
    assert "Global results for val" in out and "synthetic-01_2" in out
    assert re.search(r"^t0\.05_k8_r18_L20 0\.\d+$", out, re.M) and "best: PropagationParams(" in out
    assert os.path.isfile(tmp_path / "api-demo" / "sweep" / "sweep.json")
