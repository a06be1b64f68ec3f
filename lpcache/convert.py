"""Seed outputs -> DAVIS results folder.

The seed scripts (videowalk / CatMAE `test.py`) write `<video#>_<t>_mask.png`: an RGB image whose R,G,B bytes
hold the B,G,R of the DAVIS palette colour of each pixel's object (propagation-spec.md sections 9-10);
video# is the line number (0-based) in the seed's file list, t the frame index in the sorted JPEG list.
`convert` maps each colour back to its palette id (exact match, unknown colours refused), resizes with
PIL NEAREST (`davis.resize_mask_nearest`, which exactly undoes the seed's 854 -> 880 resize; the seed's own
convert_davis.py used cv2 INTER_NEAREST, which does not, but only ever at equal sizes) to the sequence's
annotation size, and writes
`<out>/<seq>/<frame>.png` palette PNGs. Sequences are written into a staging folder and moved into place
only when every file converted, so a failure leaves no partial output.
"""
import collections
import logging
import os
import re
import shutil
from typing import Dict, List, Optional

import numpy as np

from . import davis, images
from .errors import InputError
from .progress import progress_bar

log = logging.getLogger(__name__)
SEED_NAME = re.compile(r"^(\d+)_(\d+)_mask\.png$")
_STAGING = ".lpcache-convert.partial"


def _candidate_ids(r, g, b) -> np.ndarray:
    """Invert the VOC colour map bit interleaving (id bit 3j+c is bit 7-j of channel c), as uint16."""
    ids = np.zeros(r.shape, np.uint16)
    for j in range(3):
        for channel, values in enumerate((r, g, b)):
            ids |= ((values >> (7 - j)) & 1).astype(np.uint16) << (3 * j + channel)
    return ids


def seed_colours_to_ids(stored_rgb: np.ndarray, path="<array>") -> np.ndarray:
    """Palette ids of a seed mask as read by PIL (its R,G,B bytes hold the palette's B,G,R)."""
    if stored_rgb.ndim != 3 or stored_rgb.shape[2] < 3:
        raise InputError(f"{path}: expected an RGB seed mask, got an array of shape {stored_rgb.shape}")
    colour = np.ascontiguousarray(stored_rgb[..., 2::-1])  # undo the swap: palette R, G, B
    ids = np.minimum(_candidate_ids(colour[..., 0], colour[..., 1], colour[..., 2]), 255)
    wrong = np.any(davis.PALETTE[ids] != colour, axis=-1)
    if wrong.any():
        y, x = (int(v[0]) for v in np.nonzero(wrong))
        r, g, b = (int(v) for v in colour[y, x])
        raise InputError(f"{path}: colour (R,G,B)=({b},{g},{r}) as stored, i.e. palette colour ({r},{g},{b}) "
                         f"after undoing the B/R swap, at pixel (x={x}, y={y}) is not in the DAVIS palette")
    # The seed's convert_davis.py matches no palette entry for the void colour and leaves such pixels as 0
    # (background); the official scorer refuses 255 in a prediction.
    ids[ids == 255] = 0
    return ids.astype(np.uint8)


def read_seed_mask(path) -> np.ndarray:
    """Palette ids of one seed `<video#>_<t>_mask.png`."""
    with images.open_image(path, "file") as image:
        rgb = np.array(image.convert("RGB")) if image.mode in ("RGB", "RGBA") else None
        mode = image.mode
    if rgb is None:
        raise InputError(f"{path}: mode {mode}; a seed mask is an RGB image")
    return seed_colours_to_ids(rgb, path)


def scan_seed_dir(input_dir) -> Dict[int, Dict[int, str]]:
    """{video#: {t: path}} of the seed masks in a folder (other files ignored)."""
    if not os.path.isdir(input_dir):
        raise InputError(f"{input_dir}: seed output folder not found")
    found = collections.defaultdict(dict)
    for name in os.listdir(input_dir):
        match = SEED_NAME.match(name)
        if match:
            found[int(match.group(1))][int(match.group(2))] = os.path.join(input_dir, name)
    if not found:
        raise InputError(f"{input_dir}: no <video#>_<t>_mask.png file")
    return dict(found)


def _filelist_names(path) -> List[str]:
    if not os.path.isfile(path):
        raise InputError(f"{path}: file list not found")
    with open(path, encoding="utf-8") as handle:
        return [os.path.basename(os.path.normpath(line.split()[0])) for line in handle if line.split()]


def video_order(davis_root=None, set_name="val", filelist=None) -> List[str]:
    """Sequence names by video number: the file list's lines, else the DAVIS set's order."""
    if filelist:
        return _filelist_names(filelist)
    if davis_root:
        return davis.read_set(davis_root, set_name)
    raise InputError("convert needs --filelist or --davis to know which video number is which sequence")


def _sequences(names, davis_root, set_name, filelist, filelist_root):
    if filelist:
        root = filelist_root or davis_root
        return davis.load_filelist(filelist, root=root, sequences=names)
    return davis.load_davis(davis_root, set_name, names)


def convert(input_dir, out_dir, davis_root=None, set_name="val", filelist=None, filelist_root=None,
            size=None, progress=True) -> int:
    """Convert every seed mask of input_dir into `<out_dir>/<seq>/<frame>.png`; returns the count."""
    found = scan_seed_dir(input_dir)
    order = video_order(davis_root, set_name, filelist)
    unknown = sorted(v for v in found if v >= len(order))
    if unknown:
        raise InputError(f"{input_dir}: video number {unknown[0]} but the video list has {len(order)} videos")
    names = [order[v] for v in sorted(found)]
    sequences = {s.name: s for s in _sequences(names, davis_root, set_name, filelist, filelist_root)}
    missing = [n for n in names if n not in sequences]
    if missing:
        raise InputError(f"{filelist or davis_root}: sequence {missing[0]} not found")
    staging = os.path.join(out_dir, _STAGING)
    shutil.rmtree(staging, ignore_errors=True)
    total = sum(len(sequences[order[v]].frame_names) for v in found)
    written = 0
    try:
        with progress_bar(total, "convert", unit="frame", enabled=progress) as bar:
            for video in sorted(found):
                sequence = sequences[order[video]]
                written += _convert_sequence(sequence, found[video], input_dir, video, staging, size, bar)
        for video in sorted(found):
            name = order[video]
            target = os.path.join(out_dir, name)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(os.path.join(staging, name), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("converted %d masks of %d sequences into %s", written, len(found), out_dir)
    return written


def _convert_sequence(sequence, frames: Dict[int, str], input_dir, video, staging, size, bar) -> int:
    frame_names = sequence.frame_names
    extra = sorted(t for t in frames if t >= len(frame_names))
    if extra:
        raise InputError(f"{frames[extra[0]]}: frame {extra[0]} but {sequence.name} has {len(frame_names)} frames")
    target_hw: Optional[tuple] = tuple(size) if size else None
    if target_hw is None:
        if sequence.annotation_dir is None or not sequence.annotation_paths:
            raise InputError(f"{sequence.name}: no annotation to take the size from; give --size HxW")
        target_hw = davis.read_mask(sequence.annotation_paths[0]).shape[:2]
    for t, frame in enumerate(frame_names):
        path = frames.get(t, os.path.join(input_dir, f"{video}_{t}_mask.png"))
        ids = read_seed_mask(path)
        ids = davis.resize_mask_nearest(ids, target_hw)
        davis.write_mask(os.path.join(staging, sequence.name, f"{frame}.png"), ids)
        bar.update()
    return len(frame_names)
