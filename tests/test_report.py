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
from lpcache.sweeping import SweepResult

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


#: A provenance record as lpcache.provenance makes it, with a long part (as the real one has).
RECORD = {"kind": "test", "created": "2026-01-01T00:00:00+00:00", "host": "box", "device": "cuda:0",
          "precision": "float32", "versions": {"lpcache": "9.9", "torch": "2.14.1", "numpy": "2.0"},
          "caches": ["/a/very/long/path/" * 10], "settings": [p.id for p in GRID.settings()] * 5}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = _result()
    paths = report.write_report(result, str(out), RECORD)
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
    assert text.splitlines()[0] == "# Sweep leaderboard"
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


def test_provenance_in_its_own_file_and_a_short_header(written):
    result, out, paths = written
    assert json.loads((out / "provenance.json").read_text()) == RECORD
    assert paths["provenance.json"] == os.path.join(str(out), "provenance.json")
    text = (out / "leaderboard.md").read_text()
    assert "<!--" not in text and "/a/very/long/path/" not in text
    assert max(len(line) for line in text.splitlines() if not line.startswith("|")) < 250
    header = text.splitlines()[2]
    for part in ("lpcache 9.9", "torch 2.14.1", "device cuda:0", "float32", "host box", "2026-01-01T00:00:00",
                 "[provenance.json](provenance.json)"):
        assert part in header, part
    record = json.loads((out / "sweep.json").read_text())
    assert record["outputs"]["provenance.json"] == "provenance.json"


@pytest.mark.parametrize("values, limits", [
    ([0.612, 0.6125, 0.614], (0.588, 0.638)),     # 0.002 apart: widened to 0.05 around the middle 0.613
    ([0.2, 0.5, 0.9], (0.2, 0.9)),                # wide enough already: the data's own range
    ([0.99, 0.995, np.nan], (0.95, 1.0)),         # widened, then shifted to stay within [0, 1]
    ([0.0, 0.01], (0.0, 0.05)),
    ([np.nan], (0.0, 1.0)),
])
def test_colour_limits(values, limits):
    low, high = report.colour_limits(values)
    assert (low, high) == pytest.approx(limits)
    assert high - low >= 0.05 - 1e-12


def _near_equal_rows():
    """A 2 x 3 grid whose J&F values differ only in the 3rd decimal."""
    values = {(0.05, 5): 0.6101, (0.05, 8): 0.6112, (0.05, 12): 0.6124,
              (0.7, 5): 0.6093, (0.7, 8): 0.6108, (0.7, 12): 0.6119}
    return [{"temperature": t, "topk": k, "J&F-Mean": v} for (t, k), v in values.items()], values


def test_heatmap_cells_are_annotated_and_the_range_is_not_stretched():
    rows, values = _near_equal_rows()
    figure = report.heatmap_figure(rows, [0.05, 0.7], [5, 8, 12], "title")
    try:
        axes = figure.axes[0]
        image = axes.images[0]
        low, high = image.get_clim()
        assert high - low >= 0.05 - 1e-12 and low <= min(values.values()) and high >= max(values.values())
        texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in axes.texts}
        assert len(texts) == 6
        for (t, k), value in values.items():
            cell = texts[([0.05, 0.7].index(t), [5, 8, 12].index(k))]
            assert cell.get_text() == f"{value:.3f}"
        # all cells sit in the middle of the colour scale: none is drawn as "the worst" (darkest) colour
        darkest = image.cmap(0.0)
        assert all(np.abs(np.subtract(image.cmap(image.norm(v)), darkest)).max() > 0.2 for v in values.values())
    finally:
        report._pyplot().close(figure)


def test_annotation_colour_follows_the_cell_colour():
    rows = [{"temperature": 0.1, "topk": k, "J&F-Mean": v} for k, v in ((1, 0.2), (2, 0.9))]
    figure = report.heatmap_figure(rows, [0.1], [1, 2], "title")
    try:
        texts = sorted(figure.axes[0].texts, key=lambda t: t.get_position()[0])
        # viridis: dark purple at the low end -> white text; yellow at the high end -> black text
        assert [t.get_color() for t in texts] == ["white", "black"]
    finally:
        report._pyplot().close(figure)
