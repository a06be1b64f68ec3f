"""Frame preprocessing: the seed protocol in memory equals the seed's files on disk."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from lpcache.errors import InputError
from lpcache.transforms import input_hw, normalize, prepare_frame, read_rgb


def test_seed_protocol_equals_resize_and_jpeg_on_disk(davis_root, tmp_path):
    src = os.path.join(davis_root, "JPEGImages", "480p", "car-shadow", "00007.jpg")
    on_disk = tmp_path / "00007.jpg"
    Image.open(src).resize((880, 480), Image.NEAREST).save(on_disk)  # what convert_480_880.py did
    expected = np.asarray(Image.open(on_disk).convert("RGB"))
    got = prepare_frame(src, "seed", 8)
    assert got.shape == (480, 880, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    # the re-encode matters: a plain nearest resize differs by about 2 grey levels on average
    original = np.asarray(Image.open(src).convert("RGB"))
    columns = np.floor((np.arange(880) + 0.5) * 854 / 880).astype(int)
    nearest = original[:, columns]
    assert 1.0 < np.abs(nearest.astype(int) - got.astype(int)).mean() < 4.0
    # an already-converted 880 x 480 frame is taken as it is
    np.testing.assert_array_equal(prepare_frame(str(on_disk), "seed", 8), expected)


def test_native_protocol_rounds_to_the_stride(tmp_path):
    assert input_hw("native", (480, 854), 8) == (480, 856)
    assert input_hw("native", (480, 854), 16) == (480, 848)
    assert input_hw("native", (5, 3), 8) == (8, 8)
    assert input_hw("seed", (480, 854), 16) == (480, 880)
    path = tmp_path / "f.png"
    image = np.random.default_rng(0).integers(0, 255, (40, 64, 3), dtype=np.uint8)
    Image.fromarray(image).save(path)
    np.testing.assert_array_equal(prepare_frame(str(path), "native", 8), image)  # multiple of 8: unchanged
    assert prepare_frame(str(path), "native", 16).shape == (48, 64, 3)
    with pytest.raises(InputError, match="protocol 'other'"):
        input_hw("other", (1, 1), 8)


def test_normalize_per_channel():
    frame = torch.tensor([[[[0, 255, 51]]]], dtype=torch.uint8)  # (1, 1, 1, 3)
    out = normalize(frame, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    expected = torch.tensor([(0 - 0.485) / 0.229, (1 - 0.456) / 0.224, (0.2 - 0.406) / 0.225])
    assert out.shape == (1, 3, 1, 1)
    torch.testing.assert_close(out.flatten(), expected)


def test_bad_frames_are_named(tmp_path):
    with pytest.raises(InputError, match=r"missing\.jpg: frame not found"):
        read_rgb(str(tmp_path / "missing.jpg"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InputError, match=r"broken\.jpg: unreadable image"):
        read_rgb(str(broken))
