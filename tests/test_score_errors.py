"""Bad input to `lpcache score`: one-line error naming the file, exit status 1, and no CSV written."""
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lpcache import davis
from lpcache.cli import cli

H, W = 24, 32
SEQUENCES = {"alpha": 5, "beta": 6}


def _gt(t, n_objects):
    ids = np.zeros((H, W), np.uint8)
    ids[4 + t % 3:14, 3:15] = 1
    if n_objects > 1:
        ids[15:22, 18 + t % 4:30] = 2
    return ids


def make_tree(root, sequences=SEQUENCES):
    """A tiny DAVIS root (alpha: 1 object, beta: 2) and a correct results folder."""
    os.makedirs(os.path.join(root, "ImageSets", "2017"))
    with open(davis.set_file(root, "val"), "w") as handle:
        handle.write("".join(f"{name}\n" for name in sequences))
    results = os.path.join(root, "results")
    for index, (name, n_frames) in enumerate(sequences.items()):
        for kind in ("JPEGImages", "Annotations"):
            os.makedirs(os.path.join(root, kind, "480p", name))
        os.makedirs(os.path.join(results, name))
        for t in range(n_frames):
            Image.new("RGB", (W, H)).save(os.path.join(root, "JPEGImages", "480p", name, f"{t:05d}.jpg"))
            davis.write_mask(os.path.join(root, "Annotations", "480p", name, f"{t:05d}.png"), _gt(t, index + 1))
            davis.write_mask(os.path.join(results, name, f"{t:05d}.png"), np.roll(_gt(t, index + 1), 1, axis=1))
    return root, results


@pytest.fixture
def tree(tmp_path):
    return make_tree(str(tmp_path / "davis"))


def run_score(root, results, *extra):
    return CliRunner().invoke(cli, ["score", "--davis", root, "--results", results, "--no-progress", *extra])


def assert_fails(out, *fragments, results=None):
    assert out.exit_code == 1, out.output
    message = out.output.strip().splitlines()[-1]
    assert message.startswith("Error: ")
    for fragment in fragments:
        assert fragment in message, message
    if results:
        assert not [n for n in os.listdir(results) if n.endswith(".csv") or n.endswith(".partial")]


def test_valid_tree_scores(tree):
    root, results = tree
    out = run_score(root, results)
    assert out.exit_code == 0, out.output
    lines = open(os.path.join(results, "per-sequence_results-val.csv")).read().splitlines()
    assert [line.split(",")[0] for line in lines] == ["Sequence", "alpha_1", "beta_1", "beta_2"]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_missing_sequence_folder(tree, jobs):
    root, results = tree
    os.rename(os.path.join(results, "beta"), os.path.join(root, "beta_moved"))
    assert_fails(run_score(root, results, "--jobs", jobs), os.path.join(results, "beta"), "not found",
                 results=results)


def test_missing_frame(tree):
    root, results = tree
    path = os.path.join(results, "beta", "00003.png")
    os.remove(path)
    assert_fails(run_score(root, results), path, "not found", results=results)


def test_first_and_last_frames_are_not_needed(tree):
    root, results = tree
    os.remove(os.path.join(results, "alpha", "00000.png"))
    os.remove(os.path.join(results, "alpha", "00004.png"))
    assert run_score(root, results).exit_code == 0


def test_size_mismatch(tree):
    root, results = tree
    path = os.path.join(results, "alpha", "00002.png")
    davis.write_mask(path, np.zeros((H, W + 1), np.uint8))
    assert_fails(run_score(root, results), path, f"{W + 1}x{H}", f"{W}x{H}", results=results)


def test_gt_size_requires_resized_predictions(tree):
    root, results = tree
    assert_fails(run_score(root, results, "--gt-size", "48x64"), "differs", "64x48", results=results)


def test_object_id_above_ground_truth(tree):
    root, results = tree
    path = os.path.join(results, "alpha", "00002.png")
    ids = _gt(2, 1)
    ids[0, 0] = 3
    davis.write_mask(path, ids)
    assert_fails(run_score(root, results), path, "object id 3", "1 object", results=results)


def test_void_in_prediction(tree):
    root, results = tree
    path = os.path.join(results, "beta", "00001.png")
    ids = _gt(1, 2)
    ids[:2] = 255
    davis.write_mask(path, ids)
    assert_fails(run_score(root, results), path, "255", results=results)


def test_rgb_prediction(tree):
    root, results = tree
    path = os.path.join(results, "alpha", "00001.png")
    Image.fromarray(davis.PALETTE[_gt(1, 1)]).save(path)
    assert_fails(run_score(root, results), path, "colour image", "RGB", results=results)


def test_too_few_annotated_frames(tmp_path):
    root, results = make_tree(str(tmp_path / "davis"), {"alpha": 5, "short": 2})
    assert_fails(run_score(root, results), os.path.join("Annotations", "480p", "short"), "at least 3",
                 results=results)


def test_missing_root_and_set_file(tree, tmp_path):
    root, results = tree
    assert_fails(run_score(str(tmp_path / "nowhere"), results), "nowhere", "DAVIS root not found")
    assert_fails(run_score(root, results, "--set", "test"), "test.txt", "set file not found", results=results)


def test_unknown_sequence_and_bad_size_option(tree):
    root, results = tree
    assert_fails(run_score(root, results, "--sequences", "alpha,gamma"), "gamma", results=results)
    assert_fails(run_score(root, results, "--gt-size", "480by880"), "480by880", results=results)


def test_void_in_ground_truth_is_background(tmp_path):
    """GT 255 becomes background (semi-supervised): a prediction covering it loses J."""
    root, results = make_tree(str(tmp_path / "davis"), {"alpha": 4})
    for t in range(4):
        ids = _gt(t, 1)
        ids[20:, :] = 255
        davis.write_mask(os.path.join(root, "Annotations", "480p", "alpha", f"{t:05d}.png"), ids)
        pred = _gt(t, 1)
        pred[20:, :] = 1 if t == 1 else 0
        davis.write_mask(os.path.join(results, "alpha", f"{t:05d}.png"), pred)
    out = run_score(root, results)
    assert out.exit_code == 0, out.output
    rows = open(os.path.join(results, "per-sequence_results-val.csv")).read().splitlines()
    object_pixels = int((_gt(1, 1) == 1).sum())
    expected_j = (object_pixels / (object_pixels + 4 * W) + 1.0) / 2  # frame 1 covers void, frame 2 exact
    assert rows[1].split(",")[:2] == ["alpha_1", f"{expected_j:.3f}"]  # 0.729; 1.000 if void were ignored


def test_huge_declared_size_is_refused_from_the_header(tree):
    """A corrupt header claiming 100000x100000 pixels must not make the scorer allocate 10 GB."""
    import struct

    root, results = tree
    path = os.path.join(results, "alpha", "00002.png")
    data = bytearray(open(path, "rb").read())
    data[16:24] = struct.pack(">II", 100000, 100000)
    with open(path, "wb") as handle:
        handle.write(bytes(data))
    assert_fails(run_score(root, results), path, "100000x100000", results=results)


def test_failed_score_leaves_no_csv_of_an_earlier_run(tree, tmp_path):
    """Score once (CSVs and JSON written), break one mask, score again: exit 1 and no old scores left."""
    root, results = tree
    json_path = str(tmp_path / "scores.json")
    assert run_score(root, results, "--json", json_path).exit_code == 0
    assert os.path.isfile(os.path.join(results, "global_results-val.csv")) and os.path.isfile(json_path)
    os.remove(os.path.join(results, "beta", "00003.png"))
    assert_fails(run_score(root, results, "--json", json_path), "00003.png", "not found", results=results)
    assert not os.path.exists(json_path)


def test_failed_score_with_out_folder_removes_its_csvs(tree, tmp_path):
    root, results = tree
    out_dir = str(tmp_path / "tables")
    assert run_score(root, results, "--out", out_dir).exit_code == 0
    assert sorted(os.listdir(out_dir)) == ["global_results-val.csv", "per-sequence_results-val.csv"]
    davis.write_mask(os.path.join(results, "alpha", "00002.png"), np.zeros((H, W + 1), np.uint8))
    assert run_score(root, results, "--out", out_dir).exit_code == 1
    assert os.listdir(out_dir) == []
