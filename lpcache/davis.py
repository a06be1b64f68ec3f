"""The DAVIS folder layout: sets, sequences, sorted frames, palette PNGs, seed file lists.

A DAVIS root holds `JPEGImages/480p/<seq>/*.jpg`, `Annotations/480p/<seq>/*.png` and
`ImageSets/2017/<set>.txt`. Masks are palette ("P") PNGs whose pixel values are object ids
(0 = background, 255 = void); the palette is the PASCAL VOC colour map.
"""
import dataclasses
import os
from typing import List, Optional, Sequence as SequenceType

import numpy as np
from PIL import Image

from .atomic import atomic_path
from .errors import InputError
from .images import IMAGE_ERRORS, MAX_IMAGE_PIXELS, open_image  # noqa: F401 (re-exported: the one image reader)
from . import images

RESOLUTION = "480p"


def _name_problem(name) -> Optional[str]:
    if not isinstance(name, str) or not name:
        return "empty"
    if name in (".", ".."):
        return "'.' and '..' are not names"
    if "/" in name or "\\" in name:
        return "path separator"
    if os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "control character"
    return None


def validate_name(name, where) -> str:
    """`name` if it is safe as one path component (a sequence or results folder); InputError otherwise.

    Refused: empty, '.', '..', '/' or '\\', absolute or drive paths, NUL and other control characters.
    """
    problem = _name_problem(name)
    if problem:
        raise InputError(f"{where}: invalid sequence name {name!r} ({problem})")
    return name


def _voc_colormap(n=256):
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


#: The DAVIS palette (256 RGB colours; id 1 = (128, 0, 0), id 2 = (0, 128, 0), ...).
PALETTE = _voc_colormap()
PALETTE_FLAT = PALETTE.reshape(-1).tolist()


@dataclasses.dataclass(frozen=True)
class Sequence:
    """One video: its frames (JPEG) and its annotations (PNG), both sorted by file name."""

    name: str
    image_dir: str
    annotation_dir: Optional[str]

    @property
    def image_paths(self) -> List[str]:
        return _sorted_files(self.image_dir, ".jpg")

    @property
    def annotation_paths(self) -> List[str]:
        if self.annotation_dir is None:
            return []
        return _sorted_files(self.annotation_dir, ".png")

    @property
    def frame_names(self) -> List[str]:
        """Frame ids ("00000", ...) from the JPEG list."""
        return [os.path.splitext(os.path.basename(p))[0] for p in self.image_paths]

    def first_annotation(self) -> np.ndarray:
        """The first frame's object ids, void (255) kept as is."""
        paths = self.annotation_paths
        if not paths:
            raise InputError(f"{self.annotation_dir}: no annotation PNG for sequence {self.name}")
        return read_mask(paths[0])


def _sorted_files(folder, extension):
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: folder not found")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(extension))
    return [os.path.join(folder, n) for n in names]


def set_file(root, set_name="val"):
    return os.path.join(root, "ImageSets", "2017", f"{set_name}.txt")


def read_set(root, set_name="val") -> List[str]:
    """Sequence names of `ImageSets/2017/<set>.txt`, stripped, in file order."""
    if not os.path.isdir(root):
        raise InputError(f"{root}: DAVIS root not found")
    path = set_file(root, set_name)
    if not os.path.isfile(path):
        raise InputError(f"{path}: set file not found (is {root} a DAVIS root, and is '{set_name}' a set?)")
    with open(path, encoding="utf-8") as handle:
        try:
            names = [line.strip() for line in handle if line.strip()]
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not a UTF-8 text file ({exc})") from None
    return [validate_name(n, path) for n in names]


def load_davis(root, set_name="val", sequences: Optional[SequenceType[str]] = None) -> List[Sequence]:
    """The sequences of a DAVIS root's set (or the named subset, in the set's order)."""
    names = read_set(root, set_name)
    if sequences:
        for name in sequences:
            validate_name(name, "--sequences")
        unknown = [s for s in sequences if s not in names]
        if unknown:
            raise InputError(f"{set_file(root, set_name)}: sequences not in the set: {', '.join(unknown)}")
        wanted = set(sequences)
        names = [n for n in names if n in wanted]
    out = []
    for name in names:
        image_dir = os.path.join(root, "JPEGImages", RESOLUTION, name)
        annotation_dir = os.path.join(root, "Annotations", RESOLUTION, name)
        if not os.path.isdir(image_dir):
            raise InputError(f"{image_dir}: JPEG folder of sequence {name} not found")
        out.append(Sequence(name, image_dir, annotation_dir if os.path.isdir(annotation_dir) else None))
    return out


def load_filelist(path, root=None, sequences: Optional[SequenceType[str]] = None) -> List[Sequence]:
    """Sequences from a seed-format file list: `<image dir> <annotation dir>` per line.

    Relative paths are taken relative to `root` (default: the list's own folder).
    """
    if not os.path.isfile(path):
        raise InputError(f"{path}: file list not found")
    base = root if root is not None else os.path.dirname(os.path.abspath(path))
    out = []
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise InputError(f"{path}:{number}: expected '<image dir> <annotation dir>', got {line.strip()!r}")
            image_dir, annotation_dir = (p if os.path.isabs(p) else os.path.join(base, p) for p in parts)
            name = validate_name(os.path.basename(os.path.normpath(image_dir)), f"{path}:{number}")
            if sequences and name not in sequences:
                continue
            if not os.path.isdir(image_dir):
                raise InputError(f"{path}:{number}: image folder {image_dir} not found")
            out.append(Sequence(name, image_dir, annotation_dir if os.path.isdir(annotation_dir) else None))
    return out


def read_mask(path) -> np.ndarray:
    """Raw pixel values of a PNG, as the official scorer reads them (palette indices for mode P)."""
    return images.read_ids(path)


def write_mask(path, ids: np.ndarray):
    """Write object ids as a DAVIS palette PNG, atomically."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"{path}: a mask must be 2-D, got shape {ids.shape}")
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette(PALETTE_FLAT)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def num_objects(first_mask: np.ndarray) -> int:
    """Number of objects as DAVIS counts them: the largest id in the first frame, void (255) as 0."""
    mask = np.where(first_mask == 255, 0, first_mask)
    return int(mask.max()) if mask.size else 0


def parse_hw(text) -> tuple:
    """'480x880' -> (480, 880): height x width."""
    try:
        height, width = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise InputError(f"size {text!r}: expected HEIGHTxWIDTH, e.g. 480x880") from None
    if height <= 0 or width <= 0:
        raise InputError(f"size {text!r}: height and width must be positive")
    return height, width


def resize_mask_nearest(mask: np.ndarray, hw) -> np.ndarray:
    """Resize ids with PIL NEAREST, as the seed's `convert_480_880.py` did."""
    height, width = hw
    if mask.shape[:2] == (height, width):
        return mask
    image = Image.fromarray(mask)
    return np.array(image.resize((width, height), Image.NEAREST))
