"""Overlay a run's masks on the DAVIS frames: an animated GIF and a contact sheet PNG (written with PIL).

Frames come from the DAVIS root, masks from the run folder (`<run>/<seq>/<frame>.png`). When the sizes
differ (seed protocol masks are 480x880, frames 480x854) the frame is resized to the mask size with
PIL NEAREST, as the seed's conversion did. Thumbnails carry their frame number (top left, white on a dark
outline). `demo_figures` writes the two pictures `lpcache demo` shows: a strip of a few overlaid frames and
the per-object J/F chart of the run's scores.
"""
import csv
import json
import logging
import math
import os
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from . import images
from .atomic import atomic_path
from .davis import PALETTE, load_davis, read_mask
from .errors import InputError

log = logging.getLogger(__name__)


def overlay(frame: np.ndarray, ids: np.ndarray, alpha=0.5, contour=True) -> np.ndarray:
    """RGB uint8 frame with object ids blended in their DAVIS palette colour (id 0 and 255 untouched)."""
    if frame.shape[:2] != ids.shape:
        raise ValueError(f"frame {frame.shape[:2]} and mask {ids.shape} differ in size")
    out = frame.astype(np.float32)
    objects = (ids > 0) & (ids < 255)
    colours = PALETTE[ids].astype(np.float32)
    out[objects] = (1 - alpha) * out[objects] + alpha * colours[objects]
    if contour:
        edge = np.zeros_like(objects)
        edge[1:, :] |= ids[1:, :] != ids[:-1, :]
        edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
        edge &= objects
        out[edge] = colours[edge]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _load_frame(path, hw) -> np.ndarray:
    image = images.read_pil(path, "frame")
    if image.size != (hw[1], hw[0]):
        image = image.resize((hw[1], hw[0]), Image.NEAREST)
    return np.asarray(image)


def overlay_frames(run_dir, seq, davis_root, set_name="val", progress=True, count=None
                   ) -> Tuple[List[str], List[np.ndarray]]:
    """(frame names, overlay images) for every mask of `seq` in the run folder (or `count` of them, evenly
    spaced, first and last included)."""
    mask_dir = os.path.join(run_dir, seq)
    if not os.path.isdir(mask_dir):
        raise InputError(f"{mask_dir}: no masks for sequence {seq} in run {run_dir}")
    sequence = load_davis(davis_root, set_name, [seq])[0]
    images = {os.path.splitext(os.path.basename(p))[0]: p for p in sequence.image_paths}
    names = sorted(os.path.splitext(n)[0] for n in os.listdir(mask_dir) if n.endswith(".png"))
    if not names:
        raise InputError(f"{mask_dir}: no mask PNGs")
    missing = [n for n in names if n not in images]
    if missing:
        raise InputError(f"{mask_dir}: masks without a frame in {sequence.image_dir}: {', '.join(missing[:5])}")
    if count is not None:
        names = [names[i] for i in _pick(names, count)]
    out = []
    for name in tqdm(names, desc=f"overlay {seq}", unit="frame", disable=not progress):
        ids = read_mask(os.path.join(mask_dir, name + ".png"))
        if ids.ndim != 2:
            raise InputError(f"{os.path.join(mask_dir, name + '.png')}: not a palette/grey mask (shape {ids.shape})")
        out.append(overlay(_load_frame(images[name], ids.shape), ids))
    return names, out


def frame_label(name) -> str:
    """The text drawn on a thumbnail: 'frame 12' for a DAVIS frame name '00012', else the name."""
    return f"frame {int(name)}" if str(name).isdigit() else str(name)


def draw_label(image: np.ndarray, text, scale=None) -> np.ndarray:
    """Write `text` in the top-left corner of an RGB uint8 image, in place: white with a dark outline, so it
    reads on light and dark frames alike. Returns the image."""
    width = image.shape[1]
    scale = scale or max(0.35, min(1.0, width / 440))
    thickness = 1 if scale < 0.7 else 2
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    origin = (max(2, round(4 * scale)), max(2, round(4 * scale)) + text_h)
    for colour, weight in (((0, 0, 0), thickness + 2), ((255, 255, 255), thickness)):
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, weight, cv2.LINE_AA)
    return image


def contact_sheet(images: List[np.ndarray], columns: Optional[int] = None, thumb_width=220, gap=4,
                  labels: Optional[List[str]] = None) -> np.ndarray:
    """A grid of thumbnails (row-major, white gaps); labels[i], when given, is drawn on thumbnail i."""
    columns = columns or min(len(images), 6)
    rows = math.ceil(len(images) / columns)
    height, width = images[0].shape[:2]
    thumb_h = max(1, round(height * thumb_width / width))
    sheet = np.full((rows * (thumb_h + gap) + gap, columns * (thumb_width + gap) + gap, 3), 255, np.uint8)
    for index, image in enumerate(images):
        row, col = divmod(index, columns)
        thumb = np.array(Image.fromarray(image).resize((thumb_width, thumb_h), Image.BILINEAR))
        if labels is not None:
            draw_label(thumb, labels[index])
        top, left = gap + row * (thumb_h + gap), gap + col * (thumb_width + gap)
        sheet[top:top + thumb_h, left:left + thumb_width] = thumb
    return sheet


def _write_png(array: np.ndarray, path) -> str:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path


def _quantize(image: Image.Image) -> Image.Image:
    """256-colour palette image for the GIF (fast octree; PIL's default RGB->P dithering is ~50x slower)."""
    return image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)


def _pick(items, count):
    if len(items) <= count:
        return list(range(len(items)))
    return sorted({round(i * (len(items) - 1) / (count - 1)) for i in range(count)})


def visualize(run_dir, seq, davis_root, out_dir=None, set_name="val", fps=8, max_thumbs=24, gif_width=480,
              progress=True) -> Tuple[str, str]:
    """Write `<out>/<seq>.gif` and `<out>/<seq>_sheet.png` (out defaults to `<run>/vis`). Returns both paths."""
    out_dir = out_dir or os.path.join(run_dir, "vis")
    names, images = overlay_frames(run_dir, seq, davis_root, set_name, progress)
    height, width = images[0].shape[:2]
    scale = min(1.0, gif_width / width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    gif_frames = [_quantize(Image.fromarray(i).resize(size, Image.BILINEAR)) for i in images]
    gif_path = os.path.join(out_dir, f"{seq}.gif")
    with atomic_path(gif_path) as tmp:
        gif_frames[0].save(tmp, format="GIF", save_all=True, append_images=gif_frames[1:],
                           duration=round(1000 / fps), loop=0)
    picked = _pick(images, max_thumbs)
    sheet = contact_sheet([images[i] for i in picked], labels=[frame_label(names[i]) for i in picked])
    sheet_path = _write_png(sheet, os.path.join(out_dir, f"{seq}_sheet.png"))
    log.info("wrote %s (%d frames) and %s (%d thumbnails)", gif_path, len(images), sheet_path, len(picked))
    return gif_path, sheet_path


# ----------------------------------------------------------------------------------------------- demo
def run_object_scores(run_dir, set_name="val") -> Tuple[List[Dict], Optional[float]]:
    """Per-object rows {object, J-Mean, F-Mean} and the global J&F-Mean (None if unknown) of a scored run:
    from `<run>/scores.json`, else from the official `per-sequence_results-<set>.csv`."""
    json_path = os.path.join(run_dir, "scores.json")
    csv_path = os.path.join(run_dir, f"per-sequence_results-{set_name}.csv")
    try:
        if os.path.isfile(json_path):
            with open(json_path, encoding="utf-8") as handle:
                record = json.load(handle)
            rows = [{"object": key, "J-Mean": float(v["J-Mean"]), "F-Mean": float(v["F-Mean"])}
                    for key, v in record["per_object"].items()]
            return rows, float(record["global"]["J&F-Mean"])
        if os.path.isfile(csv_path):
            with open(csv_path, encoding="utf-8", newline="") as handle:
                rows = [{"object": r["Sequence"], "J-Mean": float(r["J-Mean"]), "F-Mean": float(r["F-Mean"])}
                        for r in csv.DictReader(handle)]
            return rows, None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        where = json_path if os.path.isfile(json_path) else csv_path
        raise InputError(f"{where}: not a score file of lpcache score ({type(exc).__name__}: {exc})") from None
    raise InputError(f"{run_dir}: no scores.json or per-sequence_results-{set_name}.csv (score the run first: "
                     f"lpcache score --results {run_dir})")


def demo_figures(run_dir, davis_root, seq, out_dir, set_name="val", frames=4, thumb_width=320) -> List[str]:
    """Write the demo's two pictures and return their paths:
    `<out>/<seq>_overlay.png`  `frames` evenly spaced frames of `seq` with the run's masks, numbered;
    `<out>/scores_per_object.png`  J-Mean and F-Mean per object of the (scored) run."""
    from .report import plot_per_sequence

    rows, global_jf = run_object_scores(run_dir, set_name)
    names, images = overlay_frames(run_dir, seq, davis_root, set_name, progress=False, count=frames)
    strip = contact_sheet(images, columns=len(images), thumb_width=thumb_width,
                          labels=[frame_label(n) for n in names])
    overlay_path = _write_png(strip, os.path.join(out_dir, f"{seq}_overlay.png"))
    plot_path = os.path.join(out_dir, "scores_per_object.png")
    title = f"{os.path.basename(os.path.normpath(run_dir))}: per object"
    if global_jf is not None:
        title += f"\nJ&F-Mean {global_jf:.3f}"
    plot_per_sequence(rows, title, plot_path)
    return [overlay_path, plot_path]
