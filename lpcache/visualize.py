"""Overlay a run's masks on the DAVIS frames: an animated GIF and a contact sheet PNG (written with PIL).

Frames come from the DAVIS root, masks from the run folder (`<run>/<seq>/<frame>.png`). When the sizes
differ (seed protocol masks are 480x880, frames 480x854) the frame is resized to the mask size with
PIL NEAREST, as the seed's conversion did.
"""
import logging
import math
import os
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

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
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (hw[1], hw[0]):
                image = image.resize((hw[1], hw[0]), Image.NEAREST)
            return np.asarray(image)
    except OSError as exc:
        raise InputError(f"{path}: unreadable image ({exc})") from None


def overlay_frames(run_dir, seq, davis_root, set_name="val", progress=True) -> Tuple[List[str], List[np.ndarray]]:
    """(frame names, overlay images) for every mask of `seq` in the run folder."""
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
    out = []
    for name in tqdm(names, desc=f"overlay {seq}", unit="frame", disable=not progress):
        ids = read_mask(os.path.join(mask_dir, name + ".png"))
        if ids.ndim != 2:
            raise InputError(f"{os.path.join(mask_dir, name + '.png')}: not a palette/grey mask (shape {ids.shape})")
        out.append(overlay(_load_frame(images[name], ids.shape), ids))
    return names, out


def contact_sheet(images: List[np.ndarray], columns: Optional[int] = None, thumb_width=220, gap=4) -> np.ndarray:
    """A grid of thumbnails (row-major, white gaps)."""
    columns = columns or min(len(images), 6)
    rows = math.ceil(len(images) / columns)
    height, width = images[0].shape[:2]
    thumb_h = max(1, round(height * thumb_width / width))
    sheet = np.full((rows * (thumb_h + gap) + gap, columns * (thumb_width + gap) + gap, 3), 255, np.uint8)
    for index, image in enumerate(images):
        row, col = divmod(index, columns)
        thumb = np.asarray(Image.fromarray(image).resize((thumb_width, thumb_h), Image.BILINEAR))
        top, left = gap + row * (thumb_h + gap), gap + col * (thumb_width + gap)
        sheet[top:top + thumb_h, left:left + thumb_width] = thumb
    return sheet


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
    sheet_path = os.path.join(out_dir, f"{seq}_sheet.png")
    with atomic_path(sheet_path) as tmp:
        Image.fromarray(contact_sheet([images[i] for i in picked])).save(tmp, format="PNG")
    log.info("wrote %s (%d frames) and %s (%d thumbnails)", gif_path, len(images), sheet_path, len(picked))
    return gif_path, sheet_path
