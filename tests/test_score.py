"""lpcache.scoring against numbers of the official davis2017-evaluation (tests/reference_scores.py), real data."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lpcache import davis, metrics, scoring
from lpcache.cli import cli

from reference_scores import CASES, CSV_GLOBAL, CSV_PER_SEQUENCE, GLOBAL, PER_OBJECT, build_case

TOLERANCE = 1e-12


def assert_matches_reference(case, result):
    assert list(result.per_object) == list(PER_OBJECT[case])
    for key, expected in GLOBAL[case].items():
        assert abs(result.global_scores[key] - expected) <= TOLERANCE, (case, key)
    for obj, row in PER_OBJECT[case].items():
        for key, expected in row.items():
            assert abs(result.per_object[obj][key] - expected) <= TOLERANCE, (case, obj, key)


def run_case(case, davis_root, osvos_root, work_dir, jobs=1):
    names, kind, gt_size = CASES[case]
    root, results, _ = build_case(case, davis_root, osvos_root, str(work_dir))
    return scoring.score(root, results, sequences=names if kind != "multi" else None, gt_size=gt_size, jobs=jobs,
                       progress=False), results


@pytest.mark.parametrize("case", [c for c in CASES if c != "osvos_bin_all"])
def test_case_matches_official(case, davis_root, osvos_root, tmp_path):
    result, results = run_case(case, davis_root, osvos_root, tmp_path)
    assert_matches_reference(case, result)
    paths = scoring.write_csvs(result, str(tmp_path / "csv"), "val")
    with open(paths[0], "rb") as handle:
        assert handle.read() == CSV_GLOBAL[case].encode()
    with open(paths[1], "rb") as handle:
        assert handle.read() == CSV_PER_SEQUENCE[case].encode()


def test_all_20_sequences_through_the_cli(davis_root, osvos_root, tmp_path):
    _, results, _ = build_case("osvos_bin_all", davis_root, osvos_root, str(tmp_path))
    # stale CSVs in the results folder must be overwritten, never reused
    for name in ("global_results-val.csv", "per-sequence_results-val.csv"):
        (tmp_path / "results" / name).write_text("stale\n")
    out = CliRunner().invoke(cli, ["score", "--davis", davis_root, "--results", results, "--jobs", "2",
                                   "--json", str(tmp_path / "scores.json"), "--no-progress"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "results" / "global_results-val.csv").read_bytes() == CSV_GLOBAL["osvos_bin_all"].encode()
    assert (tmp_path / "results" / "per-sequence_results-val.csv").read_bytes() == \
        CSV_PER_SEQUENCE["osvos_bin_all"].encode()
    record = json.loads((tmp_path / "scores.json").read_text())
    assert set(record) == {"global", "per_object", "provenance"}
    assert record["provenance"]["set"] == "val" and record["provenance"]["versions"]["numpy"]
    result = scoring.ScoreResult(record["global"], record["per_object"])
    assert_matches_reference("osvos_bin_all", result)
    assert "J&F-Mean" in out.output and "blackswan_1" in out.output


def test_in_memory_scoring_matches_png_scoring(davis_root, osvos_root, tmp_path):
    """score_sequence_masks / score_sequence_prepared give the PNG path's numbers (multi-object case)."""
    result, results = run_case("multi", davis_root, osvos_root, tmp_path)
    root = str(tmp_path / "root")
    for sequence in davis.load_davis(root, "val"):
        gt = scoring.load_gt_sequence(sequence)
        preds = [davis.read_mask(os.path.join(results, sequence.name, f"{f}.png")) for f in gt.frame_ids]
        in_memory = scoring.score_sequence_masks(sequence.name, gt.frames, preds, gt.n_objects)
        prepared = [metrics.prepare_gt_frame(frame, gt.n_objects) for frame in gt.frames]
        again = scoring.score_sequence_prepared(sequence.name, prepared, preds)
        for row, row_again in zip(in_memory.rows, again.rows):
            assert row == row_again
            assert row.as_dict() == result.per_object[row.key]
        assert in_memory.j.shape == (gt.n_objects, len(gt.frame_ids))


def test_gt_size_resizes_annotations_in_memory(davis_root, tmp_path):
    sequence = davis.load_davis(davis_root, "val", ["car-shadow"])[0]
    gt = scoring.load_gt_sequence(sequence, (480, 880))
    native = scoring.load_gt_sequence(sequence)
    assert gt.frames[0].shape == (480, 880) and native.frames[0].shape == (480, 854)
    assert len(gt.frames) == len(sequence.annotation_paths) - 2 == 38
    assert gt.frame_ids[0] == "00001" and gt.frame_ids[-1] == "00038"
    # PIL NEAREST 854 -> 880 duplicates 26 columns and keeps every row
    assert np.array_equal(np.unique(gt.frames[5]), np.unique(native.frames[5]))
    assert abs(int(gt.frames[5].sum()) / int(native.frames[5].sum()) - 880 / 854) < 0.01


def test_csv_text_formats_like_pandas():
    pandas = pytest.importorskip("pandas")
    values = [0.1234567, -1e-17, 0.9995, 0.0005, 1.0, -0.25, 2.5e-4]
    result = scoring.ScoreResult(dict(zip(metrics.GLOBAL_COLUMNS, values)),
                               {"a_1": {"J-Mean": -1e-17, "F-Mean": 0.1235}, "b-c_2": {"J-Mean": 1.0, "F-Mean": 0.0}})
    expected = pandas.DataFrame([values], columns=list(metrics.GLOBAL_COLUMNS)).to_csv(index=False, float_format="%.3f")
    assert scoring.global_csv_text(result) == expected
    assert "-0.000" in expected
    table = pandas.DataFrame([("a_1", -1e-17, 0.1235), ("b-c_2", 1.0, 0.0)], columns=["Sequence", "J-Mean", "F-Mean"])
    assert scoring.per_sequence_csv_text(result) == table.to_csv(index=False, float_format="%.3f")


def test_read_ids_gives_pil_values_for_every_png_kind(davis_root, tmp_path):
    import cv2

    real = os.path.join(davis_root, "Annotations", "480p", "blackswan", "00010.png")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, (37, 53)).astype(np.uint8)
    smooth = np.tile(np.arange(53, dtype=np.uint8), (37, 1))
    davis.write_mask(str(tmp_path / "palette.png"), ids)
    Image.fromarray(ids, mode="L").save(tmp_path / "grey.png")
    cv2.imwrite(str(tmp_path / "filtered.png"), smooth)  # libpng picks row filters: not the fast path
    Image.fromarray(smooth.astype(np.uint16) * 300).save(tmp_path / "sixteen.png")
    for path in [real, *(str(tmp_path / n) for n in ("palette.png", "grey.png", "filtered.png", "sixteen.png"))]:
        with Image.open(path) as image:
            expected = np.array(image)
        got = scoring.read_ids(path)
        assert got.dtype == expected.dtype and np.array_equal(got, expected), path
    assert scoring._read_unfiltered_8bit_png(real) is not None
    assert scoring._read_unfiltered_8bit_png(str(tmp_path / "sixteen.png")) is None
