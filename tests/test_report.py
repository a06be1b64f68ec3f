"""Sweep outputs from a hand-made SweepResult: CSVs (full precision), leaderboard, plots, sweep.json."""
import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from lpcache import report
from lpcache.config import SweepGrid
from lpcache.metrics import GLOBAL_COLUMNS
from lpcache.sweep import SweepResult

GRID = SweepGrid(temperature=(0.05, 0.7), topk=(5, 8, 12), radius=(12.0, 18.0), video_len=(20,))
OBJECTS = ["car_1", "moto_1", "moto_2"]


def _result():
    """Two backbones; J&F of each setting is a known function of its parameters (so ranks are known)."""
    rows, per_object = [], []
    for backbone, offset in (("r18", 0.0), ("vit", 0.05)):
        for params in GRID.settings():
            base = {"backbone": backbone, "setting": params.id, **params.as_dict()}
            score = 0.3 + offset + 0.01 * params.topk - 0.1 * params.temperature + 0.001 * params.radius + 1e-13
            row = {c: score + i * 1e-3 for i, c in enumerate(GLOBAL_COLUMNS)}
            row["J&F-Mean"] = score
            rows.append({**base, **row})
            for k, name in enumerate(OBJECTS):
                values = {c: score * (k + 1) / 3 for c in ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall",
                                                              "F-Decay")}
                per_object.append({**base, "object": name, **values})
    return SweepResult(rows, per_object, ["car", "moto"], GRID, ["r18", "vit"], {"protocol": "seed",
                                                                                 "input_hw": [480, 880]})


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = _result()
    paths = report.write_report(result, str(out), {"kind": "test", "created": "2026-01-01T00:00:00+00:00"})
    return result, out, paths


def test_results_csv_is_full_precision_and_complete(written):
    result, out, _ = written
    rows = report.read_results_csv(out / "sweep_results.csv")
    with open(out / "sweep_results.csv", newline="") as handle:
        assert next(csv.reader(handle)) == list(report.RESULT_COLUMNS)
    assert len(rows) == 2 * len(GRID)
    for parsed, original in zip(rows, result.rows):
        for column in GLOBAL_COLUMNS + ("temperature", "radius", "topk", "video_len"):
            assert parsed[column] == original[column]          # exact round trip, 1e-13 survives
        assert parsed["setting"] == original["setting"] and parsed["backbone"] == original["backbone"]


def test_per_object_csv(written):
    result, out, _ = written
    with open(out / "sweep_per_object.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(report.OBJECT_COLUMNS)
    assert len(rows) == 2 * len(GRID) * len(OBJECTS)
    assert [r["object"] for r in rows[:3]] == OBJECTS
    assert float(rows[4]["F-Mean"]) == result.per_object[4]["F-Mean"]


def test_leaderboard_ranks_and_links(written):
    result, out, paths = written
    text = (out / "leaderboard.md").read_text()
    first = text.splitlines()[0]
    assert first.startswith("<!-- provenance: ") and first.endswith(" -->")
    assert json.loads(first[len("<!-- provenance: "):-len(" -->")])["kind"] == "test"
    best_section = text.split("## Best setting per backbone")[1].split("## All settings")[0]
    best_rows = [line for line in best_section.splitlines() if line.startswith("| 1") or line.startswith("| 2")]
    # best: highest topk, lowest temperature, largest radius; vit is 0.05 better than r18
    assert best_rows[0].startswith("| 1 | vit | t0.05_k12_r18_L20 |")
    assert best_rows[1].startswith("| 2 | r18 | t0.05_k12_r18_L20 |")
    expected = round(0.3 + 0.05 + 0.12 - 0.005 + 0.018, 3)
    assert f"| {expected:.3f} |" in best_rows[0]
    all_rows = [line for line in text.split("## All settings")[1].split("## Plots")[0].splitlines()
                if line.startswith("| ") and not line.startswith("| rank")]
    assert len(all_rows) == 2 * len(GRID)
    scores = [float(line.split("|")[8]) for line in all_rows]
    assert scores == sorted(scores, reverse=True)
    for relative in report.heatmap_paths(result).values():
        assert f"]({relative})" in text
    assert "](plots/per_sequence_r18.png)" in text and "](plots/per_sequence_vit.png)" in text


def test_plots_are_pngs(written):
    result, out, paths = written
    heatmaps = sorted(os.listdir(out / "plots"))
    assert heatmaps == sorted(["heatmap_r18_r12_L20.png", "heatmap_r18_r18_L20.png", "heatmap_vit_r12_L20.png",
                               "heatmap_vit_r18_L20.png", "per_sequence_r18.png", "per_sequence_vit.png"])
    for name in heatmaps:
        with Image.open(out / "plots" / name) as image:
            assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 150
            pixels = np.asarray(image.convert("RGB"))
            assert pixels.std() > 10   # something was drawn
    assert not [n for n in os.listdir(out / "plots") if n.endswith(".partial")]


def test_sweep_json_sidecar(written):
    result, out, _ = written
    record = json.loads((out / "sweep.json").read_text())
    assert record["provenance"]["kind"] == "test"
    assert record["best"] == {"r18": "t0.05_k12_r18_L20", "vit": "t0.05_k12_r18_L20"}
    assert record["grid"] == GRID.as_dict()
    assert [r["J&F-Mean"] for r in record["results"]] == [r["J&F-Mean"] for r in result.rows]
    assert "plots/heatmap_vit_r18_L20.png" in record["outputs"]["plots"]


def test_ranked_is_stable_for_ties():
    rows = [{"setting": s, "J&F-Mean": v} for s, v in (("a", 0.5), ("b", 0.7), ("c", 0.5), ("d", 0.7))]
    assert [r["setting"] for r in report.ranked(rows)] == ["b", "d", "a", "c"]
