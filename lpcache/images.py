"""The one image reader: every image file lpcache decodes goes through here.

    open_image(path, what)            PIL image in a `with` block: size checked from the header, one-line errors
    read_pil(path, what)              decoded PIL RGB image (the seed, native and DINOv3 frame paths)
    read_rgb(path, decoder, what)     uint8 (H, W, 3) RGB with the chosen decoder
    read_bgr(path, decoder, what)     uint8 (H, W, 3) BGR with the chosen decoder
    read_ids(path)                    raw pixel values of a mask (palette indices for mode P), as the official
                                      DAVIS scorer reads them
    image_hw(path, what)              (H, W) from the header alone

The decoder is part of a protocol's definition, because it changes pixels: `"pil"` (Pillow) does not apply a
JPEG's EXIF orientation, `"cv2"` (OpenCV `imdecode`, which equals `cv2.imread`) rotates the frame by it, and the
two libraries may ship different libjpeg builds. DINO and VFS decode with OpenCV, the seed and DINOv3 with PIL.

Trust: both decoders refuse an image larger than MAX_IMAGE_PIXELS from its header (read by PIL, before any pixel
is decoded), and every failure (missing, unreadable, truncated, too large) is one InputError naming the file.
"""
import contextlib
import struct
import warnings
import zlib
from typing import Tuple

import numpy as np
from PIL import Image

from .errors import InputError

#: Largest image (width x height) lpcache decodes: 8 GPix would be a decompression bomb, the largest DAVIS
#: frame is 4K. Below PIL's own refusal (2 x Image.MAX_IMAGE_PIXELS), so this check always speaks first.
MAX_IMAGE_PIXELS = 1 << 27
#: What a broken or truncated image raises inside PIL (besides OSError).
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)
#: The decoders `read_rgb` / `read_bgr` accept.
DECODERS = ("pil", "cv2")


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@contextlib.contextmanager
def open_image(path, what="file"):
    """PIL's `Image.open` with one-line errors: missing (`<what> not found`), unreadable or larger than
    MAX_IMAGE_PIXELS.

    The size is checked from the header, before any pixel is decoded; errors raised while decoding inside
    the `with` block (truncated or corrupt data) also become InputError naming the file.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise InputError(f"{path}: {image.width}x{image.height} image is larger than the "
                                     f"{MAX_IMAGE_PIXELS} pixels lpcache decodes (a decompression bomb?)")
                yield image
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except Image.DecompressionBombError as exc:  # PIL's own limit, when it is lower than lpcache's
        raise InputError(f"{path}: image is larger than PIL decodes (a decompression bomb?): "
                         f"{_one_line(exc)}") from None
    except IMAGE_ERRORS as exc:
        raise InputError(f"{path}: unreadable image ({_one_line(exc)})") from None


def image_hw(path, what="frame") -> Tuple[int, int]:
    """(H, W) of an image file, from its header alone (size-checked, one-line errors)."""
    with open_image(path, what) as image:
        return image.height, image.width


def read_pil(path, what="frame") -> Image.Image:
    """The image decoded by PIL and converted to RGB (a PIL image)."""
    with open_image(path, what) as image:
        image.load()
        return image.convert("RGB")


def read_ids(path, what="file") -> np.ndarray:
    """Raw pixel values of a mask PNG (palette indices for mode P): `numpy.array(PIL.Image.open(path))`."""
    with open_image(path, what) as image:
        image.load()
        return np.array(image)


def _read_cv2_bgr(path, what) -> np.ndarray:
    """OpenCV's decoding (`cv2.imdecode(..., IMREAD_COLOR)`, equal to `cv2.imread`) after the header check."""
    import cv2

    image_hw(path, what)  # missing, unidentifiable or too large: refused before OpenCV decodes a pixel
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"{path}: unreadable image ({_one_line(exc)})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: unreadable image (OpenCV could not decode it)")
    return image


def _check_decoder(decoder):
    if decoder not in DECODERS:
        raise ValueError(f"decoder {decoder!r}: expected one of {', '.join(DECODERS)}")


def read_rgb(path, decoder="pil", what="frame") -> np.ndarray:
    """uint8 (H, W, 3) RGB as `decoder` ("pil" or "cv2") decodes the file."""
    _check_decoder(decoder)
    if decoder == "pil":
        return np.asarray(read_pil(path, what))
    import cv2

    return cv2.cvtColor(_read_cv2_bgr(path, what), cv2.COLOR_BGR2RGB)


def read_bgr(path, decoder="cv2", what="frame") -> np.ndarray:
    """uint8 (H, W, 3) BGR as `decoder` ("cv2" or "pil") decodes the file."""
    _check_decoder(decoder)
    if decoder == "cv2":
        return _read_cv2_bgr(path, what)
    return np.ascontiguousarray(read_rgb(path, "pil", what)[:, :, ::-1])
