"""A small synthetic DAVIS dataset: textured objects moving over a textured background.

`make_synthetic_davis(root)` writes a DAVIS root (JPEGImages/480p, Annotations/480p palette PNGs,
ImageSets/2017/val.txt) whose masks are exact: each object is an ellipse carrying its own texture,
moving smoothly; objects are drawn in id order, so a higher id occludes a lower one.
Everything is deterministic for a given seed.
"""
import dataclasses
import logging
import os
from typing import List

import numpy as np
from PIL import Image

from .atomic import atomic_path, write_text_atomic
from .davis import RESOLUTION, write_mask
from .errors import InputError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Ellipse:
    """One object's shape and trajectory (pixel units)."""

    semi_axes: tuple  # (a_y, a_x)
    start: tuple  # centre (y, x) at frame 0
    velocity: tuple  # pixels per frame (y, x)
    wobble: tuple  # amplitude (y, x) of a sinusoidal wobble
    phase: float
    angle_speed: float  # rotation, radians per frame
    texture: np.ndarray  # (S, S, 3) float32, indexed by object coordinates + S // 2


def _smooth_noise(rng, hw, cell, channels=3):
    """Colour noise with structure at `cell` pixels: bilinear upsampling of a coarse random grid."""
    height, width = hw
    coarse = rng.random((height // cell + 2, width // cell + 2, channels)).astype(np.float32)
    image = Image.fromarray((coarse * 255).astype(np.uint8))
    return np.asarray(image.resize((width + 2 * cell, height + 2 * cell), Image.BILINEAR),
                      dtype=np.float32)[cell:cell + height, cell:cell + width] / 255.0


def _background(rng, hw):
    """A textured background: two scales of noise, muted colours."""
    low = _smooth_noise(rng, hw, 48)
    high = _smooth_noise(rng, hw, 6)
    return 0.25 + 0.35 * low + 0.2 * high


def _object_texture(rng, size):
    """A distinct texture: stripes of random orientation/period in two random colours, plus noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(6, 14)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
    colour_a, colour_b = rng.random(3), rng.random(3)
    texture = stripes[..., None] * colour_a + (1 - stripes[..., None]) * colour_b
    texture += 0.15 * (_smooth_noise(rng, (size, size), 4) - 0.5)
    return texture.astype(np.float32)


def _make_objects(rng, hw, n_objects, n_frames):
    height, width = hw
    objects = []
    for index in range(n_objects):
        a_y = rng.uniform(0.12, 0.22) * height
        a_x = rng.uniform(0.08, 0.16) * width
        # Start inside the frame, spread horizontally so that every object is visible at frame 0.
        start_x = (index + 0.5 + rng.uniform(-0.15, 0.15)) * width / n_objects
        start_y = rng.uniform(0.35, 0.65) * height
        travel = rng.uniform(0.2, 0.35) * width / max(n_frames - 1, 1)
        toward_centre = 1.0 if start_x < width / 2 else -1.0  # objects converge: occlusions happen
        velocity = (rng.uniform(-0.3, 0.3) * travel, travel * toward_centre)
        objects.append(_Ellipse(
            semi_axes=(a_y, a_x), start=(start_y, start_x), velocity=velocity,
            wobble=(rng.uniform(2, 8), rng.uniform(2, 8)), phase=rng.uniform(0, 2 * np.pi),
            angle_speed=rng.uniform(-0.04, 0.04),
            texture=_object_texture(rng, 2 * int(np.ceil(max(a_y, a_x))) + 3)))
    return objects


def _render(objects, background, t, yy, xx):
    """Frame t: (image float32 HxWx3 in [0,1], ids uint8 HxW)."""
    image = background.copy()
    ids = np.zeros(background.shape[:2], dtype=np.uint8)
    for object_id, obj in enumerate(objects, start=1):
        cy = obj.start[0] + obj.velocity[0] * t + obj.wobble[0] * np.sin(0.5 * t + obj.phase)
        cx = obj.start[1] + obj.velocity[1] * t + obj.wobble[1] * np.cos(0.4 * t + obj.phase)
        angle = obj.angle_speed * t
        dy, dx = yy - cy, xx - cx
        # Object coordinates (rotated with the object), so the texture moves with it.
        u = dy * np.cos(angle) - dx * np.sin(angle)
        v = dy * np.sin(angle) + dx * np.cos(angle)
        inside = (u / obj.semi_axes[0]) ** 2 + (v / obj.semi_axes[1]) ** 2 <= 1.0
        centre = obj.texture.shape[0] // 2
        ty = np.round(u[inside]).astype(np.int64) + centre
        tx = np.round(v[inside]).astype(np.int64) + centre
        image[inside] = obj.texture[ty, tx]
        ids[inside] = object_id
    return np.clip(image, 0.0, 1.0), ids


def sequence_names(n_sequences) -> List[str]:
    return [f"synthetic-{index:02d}" for index in range(n_sequences)]


def make_synthetic_davis(root, n_sequences=2, n_frames=12, hw=(240, 432), seed=0, n_objects=2) -> str:
    """Write a synthetic DAVIS root at `root` (created if needed); returns `root`.

    Sequences are named synthetic-00, synthetic-01, ...; each has `n_frames` JPEG frames of size `hw`
    (height, width) and exact palette-PNG masks with object ids 1..n_objects for every frame.
    """
    height, width = hw
    if n_sequences < 1 or n_frames < 1 or n_objects < 1:
        raise InputError(f"{root}: n_sequences, n_frames and n_objects must be at least 1")
    if n_objects > 254:
        raise InputError(f"{root}: at most 254 objects per sequence (255 is void)")
    if height < 16 or width < 16:
        raise InputError(f"{root}: frame size {height}x{width} is too small (min 16x16)")
    names = sequence_names(n_sequences)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for seq_index, name in enumerate(names):
        rng = np.random.default_rng([seed, seq_index])
        background = _background(rng, hw)
        objects = _make_objects(rng, hw, n_objects, n_frames)
        image_dir = os.path.join(root, "JPEGImages", RESOLUTION, name)
        annotation_dir = os.path.join(root, "Annotations", RESOLUTION, name)
        os.makedirs(image_dir, exist_ok=True)
        for t in range(n_frames):
            image, ids = _render(objects, background, t, yy, xx)
            frame = f"{t:05d}"
            with atomic_path(os.path.join(image_dir, frame + ".jpg")) as tmp:
                Image.fromarray((image * 255 + 0.5).astype(np.uint8)).save(tmp, format="JPEG", quality=92)
            write_mask(os.path.join(annotation_dir, frame + ".png"), ids)
        log.info("synthetic sequence %s: %d frames %dx%d, %d objects", name, n_frames, height, width, n_objects)
    write_text_atomic(os.path.join(root, "ImageSets", "2017", "val.txt"), "".join(n + "\n" for n in names))
    return os.fspath(root)
