"""Frame-0 label channels, one-hot down-sampling and up-sampling + argmax (propagation-spec.md 4, 9)."""
import os

import numpy as np
import pytest

from lpcache.davis import read_mask, resize_mask_nearest
from lpcache.errors import InputError
from lpcache.propagation.labels import argmax_ids, downsample_onehot, label_ids, upsample_argmax


def test_channels_sorted_by_bgr_colour_id8_between_0_and_1():
    mask = np.array([[0, 1, 2], [3, 8, 4]], dtype=np.uint8)
    # BGR: 0 (0,0,0) < 8 (0,0,64) < 1 (0,0,128) < 2 (0,128,0) < 3 (0,128,128) < 4 (128,0,0)
    assert label_ids(mask).tolist() == [0, 8, 1, 2, 3, 4]
    assert label_ids(np.array([[2, 1]], dtype=np.uint8)).tolist() == [1, 2]


@pytest.mark.parametrize("ids", [[0], [0, 255], [255]])
def test_first_frame_without_object_is_refused(ids):
    mask = np.array([ids], dtype=np.uint8)
    with pytest.raises(InputError, match="f.png: the first frame has no object"):
        label_ids(mask, where="f.png")


def test_downsample_samples_the_two_centre_pixels_per_axis():
    rng = np.random.default_rng(1)
    mask = rng.integers(0, 3, size=(32, 48)).astype(np.uint8)
    ids = label_ids(mask)
    small = downsample_onehot(mask, ids, (4, 6))
    assert small.shape == (4, 6, 3) and small.dtype == np.float32
    for i in range(4):
        for j in range(6):
            block = mask[8 * i + 3: 8 * i + 5, 8 * j + 3: 8 * j + 5]
            expected = [(block == c).mean() for c in ids]
            np.testing.assert_array_equal(small[i, j], np.float32(expected))
    np.testing.assert_allclose(small.sum(-1), 1.0)


def test_argmax_first_maximum_wins():
    values = np.array([[[0.2, 0.5, 0.5], [0.7, 0.7, 0.1], [0.1, 0.2, 0.3]]], dtype=np.float32)
    assert argmax_ids(values, np.arange(values.shape[-1])).tolist() == [[1, 0, 2]]
    rng = np.random.default_rng(2)
    many = rng.integers(0, 4, size=(50, 60, 5)).astype(np.float32)  # many ties
    np.testing.assert_array_equal(argmax_ids(many, np.arange(many.shape[-1])), np.argmax(many, axis=-1))


def test_upsample_maps_channels_back_to_ids():
    soft = np.zeros((2, 2, 3), np.float32)
    soft[..., 0] = 1.0
    soft[1, 1] = [0.0, 0.0, 1.0]
    ids = np.array([0, 8, 1], np.uint8)
    out = upsample_argmax(soft, ids, (16, 16))
    assert out.shape == (16, 16) and out.dtype == np.uint8
    assert out[0, 0] == 0 and out[15, 15] == 1 and set(np.unique(out)) == {0, 1}


def test_real_annotation_round_trip(davis_root):
    """blackswan frame 0 at 480x880: down to 60x110 and back keeps the swan (IoU > 0.9)."""
    mask = resize_mask_nearest(read_mask(os.path.join(davis_root, "Annotations/480p/blackswan/00000.png")),
                               (480, 880))
    ids = label_ids(mask)
    assert ids.tolist() == [0, 1]
    back = upsample_argmax(downsample_onehot(mask, ids, (60, 110)), ids, (480, 880))
    inter = np.logical_and(back == 1, mask == 1).sum()
    union = np.logical_or(back == 1, mask == 1).sum()
    assert inter / union > 0.9


def test_void_is_a_channel_but_is_written_as_background():
    """As the seed: void (255) gets its own channel (sorted by its BGR colour, (192, 224, 224)), and a pixel
    that channel wins ends as 0 (convert_davis.py finds no palette entry for the void colour)."""
    mask = np.array([[0, 1, 255, 2]], dtype=np.uint8)
    ids = label_ids(mask)
    assert ids.tolist() == [0, 1, 2, 255]
    soft = np.zeros((1, 4, 4), np.float32)
    soft[0, np.arange(4), np.arange(4)] = 1.0
    assert upsample_argmax(soft, ids, (1, 4)).tolist() == [[0, 1, 2, 0]]


@pytest.mark.parametrize("names", [(0, 1), (0, 8), (7, 2), (255, 0)])
def test_argmax_of_two_channels_is_numpys_with_the_first_maximum(names):
    rng = np.random.default_rng(1)
    values = rng.random((31, 17, 2)).astype(np.float32)
    values[::3, ::2, 1] = values[::3, ::2, 0]          # ties: the first channel wins
    got = argmax_ids(values, np.array(names))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.array(names, np.uint8)[np.argmax(values, axis=-1)])
