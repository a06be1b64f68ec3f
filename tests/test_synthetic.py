"""The synthetic DAVIS dataset: layout, exact masks, motion, occlusion, determinism."""
import os
import time

import numpy as np
import pytest
from PIL import Image

from lpcache.davis import PALETTE, load_davis, num_objects, read_mask
from lpcache.errors import InputError
from lpcache.synthetic import make_synthetic_davis


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    started = time.perf_counter()
    make_synthetic_davis(root, n_sequences=2, n_frames=12, hw=(240, 432), seed=0, n_objects=2)
    return str(root), time.perf_counter() - started


def test_layout_and_sizes(synthetic_root):
    root, seconds = synthetic_root
    assert seconds < 2.0
    sequences = load_davis(root)
    assert [s.name for s in sequences] == ["synthetic-00", "synthetic-01"]
    for sequence in sequences:
        assert sequence.frame_names == [f"{t:05d}" for t in range(12)]
        assert len(sequence.annotation_paths) == 12
        with Image.open(sequence.image_paths[0]) as frame:
            assert frame.size == (432, 240) and frame.mode == "RGB"
        with Image.open(sequence.annotation_paths[0]) as mask:
            assert mask.mode == "P"
            assert np.array_equal(np.array(mask.getpalette()[:9]).reshape(3, 3), PALETTE[:3])


def test_masks_are_multi_object_and_move(synthetic_root):
    root, _ = synthetic_root
    for sequence in load_davis(root):
        masks = np.stack([read_mask(p) for p in sequence.annotation_paths])
        assert num_objects(masks[0]) == 2
        assert set(np.unique(masks)) == {0, 1, 2}
        for object_id in (1, 2):
            areas = (masks == object_id).sum(axis=(1, 2))
            assert areas[0] > 1000  # every object clearly visible in frame 0
            ys, xs = np.nonzero(masks[0] == object_id)
            ye, xe = np.nonzero(masks[-1] == object_id)
            shift = np.hypot(ye.mean() - ys.mean(), xe.mean() - xs.mean())
            assert shift > 5  # the objects move


def test_masks_match_the_pixels(synthetic_root):
    """Inside an object the pixels follow its texture, so they differ from the background image there."""
    root, _ = synthetic_root
    sequence = load_davis(root)[0]
    frame0 = np.asarray(Image.open(sequence.image_paths[0]), dtype=np.float32)
    frame_last = np.asarray(Image.open(sequence.image_paths[-1]), dtype=np.float32)
    mask0, mask_last = read_mask(sequence.annotation_paths[0]), read_mask(sequence.annotation_paths[-1])
    static_background = (mask0 == 0) & (mask_last == 0)
    # The background does not move: where no object is in either frame, only JPEG noise differs.
    assert np.abs(frame0 - frame_last)[static_background].mean() < 4
    uncovered = (mask0 > 0) & (mask_last == 0)
    assert uncovered.sum() > 100
    assert np.abs(frame0 - frame_last)[uncovered].mean() > 20


def test_higher_id_occludes_lower(tmp_path):
    """Objects converge; where they overlap the higher id is drawn (and labelled) on top."""
    make_synthetic_davis(tmp_path, n_sequences=1, n_frames=12, hw=(240, 432), seed=0, n_objects=2)
    masks = np.stack([read_mask(p) for p in load_davis(str(tmp_path))[0].annotation_paths])
    area1 = (masks == 1).sum(axis=(1, 2))
    # Object 1 loses area as object 2 passes in front of it (seed 0 sequence 0 has an occlusion).
    assert area1[-1] < 0.8 * area1[0]


def test_deterministic_per_seed(tmp_path):
    make_synthetic_davis(tmp_path / "a", n_sequences=1, n_frames=3, hw=(64, 96), seed=7, n_objects=3)
    make_synthetic_davis(tmp_path / "b", n_sequences=1, n_frames=3, hw=(64, 96), seed=7, n_objects=3)
    make_synthetic_davis(tmp_path / "c", n_sequences=1, n_frames=3, hw=(64, 96), seed=8, n_objects=3)
    relative = os.path.join("JPEGImages", "480p", "synthetic-00", "00002.jpg")
    relative_mask = os.path.join("Annotations", "480p", "synthetic-00", "00002.png")
    for rel in (relative, relative_mask):
        a, b, c = (open(tmp_path / d / rel, "rb").read() for d in "abc")
        assert a == b
        assert a != c
    assert num_objects(read_mask(tmp_path / "a" / "Annotations" / "480p" / "synthetic-00" / "00000.png")) == 3


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="at least 1"):
        make_synthetic_davis(tmp_path, n_frames=0)
    with pytest.raises(InputError, match="too small"):
        make_synthetic_davis(tmp_path, hw=(8, 8))
