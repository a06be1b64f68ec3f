"""lpcache.images: the one image reader (PIL or OpenCV decoding, the size check, one-line errors)."""
import glob
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lpcache import images
from lpcache.errors import InputError
from lpcache.protocols import dino, dinov3, vfs

from conftest import DAVIS2016

ORIENTATION = 0x0112  # EXIF tag


def _jpeg(path, orientation=None, shape=(24, 40)) -> str:
    """A small noisy JPEG; with `orientation`, its EXIF orientation tag set (6 = rotate 90 degrees clockwise)."""
    pixels = (np.random.default_rng(3).random((*shape, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    Image.fromarray(pixels).save(path, format="JPEG", quality=85, exif=exif.tobytes())
    return str(path)


def _png_claiming(path, width, height) -> str:
    """A valid 1x1 PNG whose header is patched to claim width x height (CRC recomputed)."""
    Image.new("1", (1, 1)).save(path, format="PNG")
    data = bytearray(Path(path).read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    Path(path).write_bytes(bytes(data))
    return str(path)


def test_each_decoder_gives_its_library_pixels(tmp_path):
    path = _jpeg(tmp_path / "plain.jpg")
    with Image.open(path) as image:
        pil = np.array(image.convert("RGB"))
    bgr = cv2.imread(path)
    np.testing.assert_array_equal(images.read_rgb(path, "pil"), pil)
    np.testing.assert_array_equal(images.read_rgb(path, "cv2"), bgr[:, :, ::-1])
    np.testing.assert_array_equal(images.read_bgr(path, "cv2"), bgr)
    np.testing.assert_array_equal(images.read_bgr(path, "pil"), pil[:, :, ::-1])
    np.testing.assert_array_equal(np.asarray(images.read_pil(path)), pil)


def test_decoder_choice_changes_pixels_where_the_libraries_differ(tmp_path):
    """OpenCV applies a JPEG's EXIF orientation, PIL does not: the same file gives a rotated frame."""
    path = _jpeg(tmp_path / "rotated.jpg", orientation=6)
    with Image.open(path) as image:
        stored = np.array(image.convert("RGB"))  # the pixels as stored, (24, 40)
    pil, opencv = images.read_rgb(path, "pil"), images.read_rgb(path, "cv2")
    np.testing.assert_array_equal(pil, stored)
    np.testing.assert_array_equal(opencv, np.rot90(stored, k=-1))  # orientation 6: 90 degrees clockwise
    assert pil.shape == (24, 40, 3) and opencv.shape == (40, 24, 3)
    # The protocols that decode with OpenCV (DINO, VFS) see the rotated frame, DINOv3 (PIL) the stored one.
    np.testing.assert_array_equal(dino.read_bgr(path), np.rot90(stored, k=-1)[:, :, ::-1])
    np.testing.assert_array_equal(vfs.read_rgb(path), np.rot90(stored, k=-1))
    np.testing.assert_array_equal(np.asarray(dinov3.read_rgb(path)), stored)


def test_real_frames_through_both_decoders():
    frames = sorted(glob.glob(os.path.join(DAVIS2016, "JPEGImages", "480p", "*", "00000.jpg")))[:2]
    if not frames:
        pytest.skip(f"real data not found at {DAVIS2016} (set LPCACHE_SHARED_DATA to a folder holding it)")
    for path in frames:
        with Image.open(path) as image:
            pil = np.array(image.convert("RGB"))
        opencv = cv2.imread(path)[:, :, ::-1]
        np.testing.assert_array_equal(images.read_rgb(path, "pil"), pil)
        np.testing.assert_array_equal(images.read_rgb(path, "cv2"), opencv)
        # exactly the pixels where the two libraries differ differ between the decoders
        np.testing.assert_array_equal(images.read_rgb(path, "pil") != images.read_rgb(path, "cv2"), pil != opencv)


def _one_line_error(reader, path, pattern):
    with pytest.raises(InputError, match=pattern) as info:
        reader(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("decoder", images.DECODERS)
def test_bombs_are_refused_from_the_header(tmp_path, decoder):
    def reader(path):
        return images.read_rgb(path, decoder)

    _one_line_error(reader, _png_claiming(tmp_path / "bomb.png", 100000, 100000),
                    r"bomb\.png: image is larger than .*10000000000 pixels")
    # above lpcache's limit, below PIL's and OpenCV's own: only lpcache's header check refuses it
    _one_line_error(reader, _png_claiming(tmp_path / "large.png", 16384, 8193),
                    r"large\.png: 16384x8193 image is larger than the 134217728 pixels")
    assert images.MAX_IMAGE_PIXELS == 1 << 27


@pytest.mark.parametrize("decoder", images.DECODERS)
def test_missing_and_corrupt_files_are_one_line(tmp_path, decoder):
    def reader(path):
        return images.read_bgr(path, decoder)

    _one_line_error(reader, str(tmp_path / "missing.jpg"), r"missing\.jpg: frame not found")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    _one_line_error(reader, str(junk), r"junk\.jpg: unreadable image")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    _one_line_error(reader, str(empty), r"empty\.jpg: unreadable image")
    data = Path(_jpeg(tmp_path / "whole.jpg", shape=(64, 96))).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    _one_line_error(reader, str(tmp_path / "cut.jpg"), r"cut\.jpg: unreadable image")


def test_truncated_mask_and_header_size(tmp_path):
    path = tmp_path / "mask.png"
    ids = np.random.default_rng(0).integers(0, 3, (16, 24)).astype(np.uint8)
    Image.fromarray(ids, mode="L").save(path)
    np.testing.assert_array_equal(images.read_ids(str(path)), ids)
    assert images.image_hw(str(path)) == (16, 24)
    data = path.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    _one_line_error(images.read_ids, str(tmp_path / "cut.png"), r"cut\.png: unreadable image")


def test_unknown_decoder(tmp_path):
    with pytest.raises(ValueError, match="decoder 'skimage'"):
        images.read_rgb(_jpeg(tmp_path / "a.jpg"), "skimage")
