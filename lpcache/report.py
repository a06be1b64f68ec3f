"""Sweep outputs: CSV tables, a markdown leaderboard, heat maps and per-sequence bar charts, sweep.json.

    write_report(result, out_dir, record) -> {name: path}
        sweep_results.csv      one row per (backbone, setting): parameters and the official global columns
        sweep_per_object.csv   one row per (backbone, setting, object)
        leaderboard.md         one-line provenance header, best setting per backbone, all settings sorted,
                               links to the plots
        provenance.json        what made the outputs: versions, host, device, precision, inputs, grid, time
        plots/heatmap_<backbone>_r<radius>_L<video_len>.png   J&F over temperature x top-k, values in the cells,
                                                              colour range at least MIN_COLOUR_SPAN wide
        plots/per_sequence_<backbone>.png                     J and F per object of the best setting
        sweep.json             provenance, grid, full-precision tables, output paths
Numbers in the CSVs and sweep.json are written in full precision (Python repr), the markdown with 3 decimals.
The record passed in is written as given: its `device` should be the device actually used (e.g. "cpu",
"cuda:0"), not "auto".
"""
import csv
import io
import os
from typing import Dict, List

import numpy as np

from .atomic import atomic_path, write_json_atomic, write_text_atomic
from .metrics import GLOBAL_COLUMNS

PARAM_COLUMNS = ("temperature", "topk", "radius", "video_len")
RESULT_COLUMNS = ("backbone", "setting") + PARAM_COLUMNS + GLOBAL_COLUMNS
OBJECT_COLUMNS = ("backbone", "setting") + PARAM_COLUMNS + ("object", "J-Mean", "J-Recall", "J-Decay", "F-Mean",
                                                             "F-Recall", "F-Decay")
PLOTS = "plots"
PROVENANCE = "provenance.json"
#: Narrowest colour range of a heat map, in J&F (so 0.001 apart does not look like worst vs best).
MIN_COLOUR_SPAN = 0.05
HEATMAP_CMAP = "viridis"


def csv_text(rows: List[Dict], columns) -> str:
    """CSV with the given columns; floats in full precision (repr)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([repr(row[c]) if isinstance(row[c], float) else row[c] for c in columns])
    return buffer.getvalue()


def read_results_csv(path) -> List[Dict]:
    """Rows of a sweep_results.csv with numbers parsed back (exactly)."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for column in ("temperature", "radius") + GLOBAL_COLUMNS:
            row[column] = float(row[column])
        for column in ("topk", "video_len"):
            row[column] = int(row[column])
    return rows


def ranked(rows: List[Dict]) -> List[Dict]:
    """Rows sorted by J&F-Mean, best first (stable: ties keep grid order)."""
    return sorted(rows, key=lambda r: -r["J&F-Mean"])


def _slug(text) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


# ----------------------------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap_paths(result) -> Dict[tuple, str]:
    """(backbone, radius, video_len) -> relative path of its heat map."""
    return {(b, r, l): f"{PLOTS}/heatmap_{_slug(b)}_r{r:g}_L{l}.png"
            for b in result.backbones for r in dict.fromkeys(result.grid.radius)
            for l in dict.fromkeys(result.grid.video_len)}


def colour_limits(values, min_span=MIN_COLOUR_SPAN, bounds=(0.0, 1.0)):
    """(low, high) of a heat map's colour scale: the data's range, widened around its middle to at least
    `min_span` (kept inside `bounds`), so that differences in the 4th decimal do not look like the
    difference between the best and the worst setting."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return bounds
    low, high = float(finite.min()), float(finite.max())
    if high - low >= min_span:
        return low, high
    middle = (low + high) / 2
    low, high = middle - min_span / 2, middle + min_span / 2
    if low < bounds[0]:
        low, high = bounds[0], bounds[0] + min_span
    elif high > bounds[1]:
        low, high = bounds[1] - min_span, bounds[1]
    return low, high


def _text_colour(rgba) -> str:
    """Black on light cells, white on the others: relative luminance of the cell's colour above 0.408 (the
    rule of seaborn's annotated heat maps; mid-range viridis cells, where padded data sit, all get white)."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "black" if luminance > 0.408 else "white"


def heatmap_figure(rows: List[Dict], temperatures, topks, title, min_span=MIN_COLOUR_SPAN):
    """A figure of J&F-Mean over temperature (rows) x top-k (columns), each cell annotated with its value
    (3 decimals, the best in bold); colour range from `colour_limits`."""
    plt = _pyplot()
    values = np.full((len(temperatures), len(topks)), np.nan)
    for row in rows:
        values[temperatures.index(row["temperature"]), topks.index(row["topk"])] = row["J&F-Mean"]
    low, high = colour_limits(values, min_span)
    figure, axes = plt.subplots(figsize=(1.0 * len(topks) + 3.0, 0.55 * len(temperatures) + 1.9))
    image = axes.imshow(values, cmap=HEATMAP_CMAP, vmin=low, vmax=high, aspect="auto")
    axes.set_xticks(range(len(topks)), [str(k) for k in topks])
    axes.set_yticks(range(len(temperatures)), [f"{t:g}" for t in temperatures])
    axes.set_xlabel("top-k")
    axes.set_ylabel("temperature")
    axes.set_title(title, fontsize=9)
    best = np.nanmax(values) if np.isfinite(values).any() else None
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            axes.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=9,
                      fontweight="bold" if value == best else "normal",
                      color=_text_colour(image.cmap(image.norm(value))))
    bar = figure.colorbar(image, ax=axes)
    bar.set_label(f"J&F-Mean (colour range {high - low:.3f})", fontsize=8)
    figure.tight_layout()
    return figure


def plot_heatmap(rows: List[Dict], temperatures, topks, title, path, min_span=MIN_COLOUR_SPAN):
    """Write the heat map of `heatmap_figure` as a PNG."""
    _save_figure(heatmap_figure(rows, temperatures, topks, title, min_span), path)


def plot_per_sequence(object_rows: List[Dict], title, path):
    """Grouped bars of J-Mean and F-Mean per object (the official per-sequence table) of one setting."""
    plt = _pyplot()
    names = [r["object"] for r in object_rows]
    positions = np.arange(len(names))
    figure, axes = plt.subplots(figsize=(max(4.0, 0.45 * len(names) + 2), 3.8))
    axes.bar(positions - 0.2, [r["J-Mean"] for r in object_rows], 0.4, label="J-Mean")
    axes.bar(positions + 0.2, [r["F-Mean"] for r in object_rows], 0.4, label="F-Mean")
    axes.set_xticks(positions, names, rotation=60, ha="right", fontsize=8)
    pad = max(0.6, (3 - len(names)) / 2 + 0.5)    # one or two objects: bars keep a normal width
    axes.set_xlim(-pad, len(names) - 1 + pad)
    axes.set_ylim(0, 1.14)                     # headroom for the legend: it never hides a bar
    axes.set_yticks(np.linspace(0, 1, 6))
    axes.set_ylabel("score")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8, loc="upper center", ncol=2, frameon=False)
    figure.tight_layout()
    _save_figure(figure, path)


def _save_figure(figure, path):
    plt = _pyplot()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(figure)


def write_plots(result, out_dir) -> Dict[str, str]:
    """Every heat map and per-sequence chart; returns {relative path: title}."""
    written = {}
    temperatures = list(dict.fromkeys(result.grid.temperature))
    topks = list(dict.fromkeys(result.grid.topk))
    for (backbone, radius, length), relative in heatmap_paths(result).items():
        rows = [r for r in result.rows if r["backbone"] == backbone and r["radius"] == radius
                and r["video_len"] == length]
        title = f"{backbone}: J&F-Mean, radius {radius:g}, video_len {length}"
        plot_heatmap(rows, temperatures, topks, title, os.path.join(out_dir, relative))
        written[relative] = title
    for backbone in result.backbones:
        best = result.best(backbone)[0]
        objects = [r for r in result.per_object if r["backbone"] == backbone and r["setting"] == best["setting"]]
        relative = f"{PLOTS}/per_sequence_{_slug(backbone)}.png"
        title = f"{backbone}: per sequence (object)\nbest setting {best['setting']}, J&F {best['J&F-Mean']:.3f}"
        plot_per_sequence(objects, title, os.path.join(out_dir, relative))
        written[relative] = title
    return written


# ----------------------------------------------------------------------------------------------- markdown
def _table(rows, columns) -> List[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[c], c) for c in columns) + " |")
    return lines


def _cell(value, column) -> str:
    if column in GLOBAL_COLUMNS:
        return f"{value:.3f}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def provenance_header(record: Dict) -> str:
    """One short line: what made the tables, where, on which device, when; the rest is in provenance.json."""
    versions = record.get("versions") or {}
    made = " ".join(part for part in (
        f"lpcache {versions['lpcache']}" if versions.get("lpcache") else "lpcache",
        f"(torch {versions['torch']})" if versions.get("torch") else "") if part)
    details = [f"{key} {record[key]}" for key in ("device", "precision") if record.get(key)]
    if record.get("host"):
        details.append(f"host {record['host']}")
    if record.get("created"):
        details.append(str(record["created"]))
    return (f"Made by {made}" + (", " + ", ".join(details) if details else "")
            + f"; full provenance in [{PROVENANCE}]({PROVENANCE}).")


def leaderboard_text(result, record, plots: Dict[str, str]) -> str:
    """The leaderboard markdown: a one-line provenance header, best per backbone, all settings, plot links."""
    columns = ["rank", "backbone", "setting", "temperature", "topk", "radius", "video_len", "J&F-Mean", "J-Mean",
               "F-Mean", "J-Recall", "F-Recall", "J-Decay", "F-Decay"]
    lines = ["# Sweep leaderboard", "", provenance_header(record), ""]
    protocol = result.protocol
    lines.append(f"{len(result.rows) // max(1, len(result.backbones))} settings x {len(result.backbones)} "
                 f"backbone(s) on {len(result.sequences)} sequence(s) ({', '.join(result.sequences)}); protocol "
                 f"{protocol.get('protocol')!s}, input {protocol.get('input_hw')!s}. Scores as `lpcache score` "
                 "(official DAVIS 2017 semi-supervised J&F). Full precision in `sweep_results.csv`.")
    lines += ["", "## Best setting per backbone", ""]
    best = ranked([result.best(b)[0] for b in result.backbones])
    lines += _table([{**r, "rank": i + 1} for i, r in enumerate(best)], columns)
    lines += ["", "## All settings, best first", ""]
    lines += _table([{**r, "rank": i + 1} for i, r in enumerate(ranked(result.rows))], columns)
    lines += ["", "## Plots", ""]
    lines += [f"- [{title.replace(chr(10), ', ')}]({relative})" for relative, title in plots.items()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- all
def write_report(result, out_dir, record: Dict) -> Dict[str, str]:
    """Write every output of a sweep into out_dir (atomically); returns {name: path}."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in
             ("sweep_results.csv", "sweep_per_object.csv", "leaderboard.md", PROVENANCE, "sweep.json")}
    write_json_atomic(paths[PROVENANCE], record)
    write_text_atomic(paths["sweep_results.csv"], csv_text(result.rows, RESULT_COLUMNS))
    write_text_atomic(paths["sweep_per_object.csv"], csv_text(result.per_object, OBJECT_COLUMNS))
    plots = write_plots(result, out_dir)
    write_text_atomic(paths["leaderboard.md"], leaderboard_text(result, record, plots))
    best = {b: result.best(b)[0]["setting"] for b in result.backbones}
    write_json_atomic(paths["sweep.json"], {
        "provenance": record, "grid": result.grid.as_dict(), "sequences": result.sequences,
        "backbones": result.backbones, "best": best, "results": result.rows, "per_object": result.per_object,
        "outputs": {**{k: os.path.basename(v) for k, v in paths.items()}, "plots": list(plots)}})
    return {**paths, **{rel: os.path.join(out_dir, rel) for rel in plots}}
