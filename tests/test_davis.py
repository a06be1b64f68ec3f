"""The DAVIS layout layer: sets, file lists, palette PNGs, object counts, nearest resize."""
import os

import numpy as np
import pytest
from PIL import Image

from lpcache import davis
from lpcache.errors import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_palette_matches_real_annotation(davis_root):
    path = os.path.join(davis_root, "Annotations", "480p", "blackswan", "00000.png")
    with Image.open(path) as image:
        assert image.mode == "P"
        real = np.array(image.getpalette()).reshape(-1, 3)
    assert np.array_equal(davis.PALETTE[: len(real)], real)
    assert davis.PALETTE[1].tolist() == [128, 0, 0] and davis.PALETTE[8].tolist() == [64, 0, 0]


def test_load_davis_real(davis_root):
    seqs = davis.load_davis(davis_root, "val")
    assert len(seqs) == 20 and seqs[0].name == "blackswan"
    car = davis.load_davis(davis_root, "val", ["car-shadow"])[0]
    assert len(car.frame_names) == 40 and car.frame_names[0] == "00000"
    assert len(car.annotation_paths) == 40
    first = car.first_annotation()
    assert first.shape == (480, 854) and davis.num_objects(first) == 1


def test_load_davis_errors(tmp_path, davis_root):
    with pytest.raises(InputError, match="DAVIS root not found"):
        davis.load_davis(str(tmp_path / "nope"))
    with pytest.raises(InputError, match="set file not found"):
        davis.load_davis(str(tmp_path))
    with pytest.raises(InputError, match="not in the set: nosuch"):
        davis.load_davis(davis_root, "val", ["nosuch"])


def test_filelist_relative_paths(davis_root):
    listed = davis.load_filelist(os.path.join(REPO, "davis_vallist_480_880.txt"), root=davis_root,
                                 sequences={"blackswan", "dog"})
    assert [s.name for s in listed] == ["blackswan", "dog"]
    assert len(listed[1].image_paths) == 60


def test_filelist_bad_line(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("only-one-column\n")
    with pytest.raises(InputError, match="list.txt:1"):
        davis.load_filelist(str(path))


def test_seed_vallist_has_30_sequences():
    with open(os.path.join(REPO, "davis_vallist_480_880.txt")) as handle:
        lines = [l.split() for l in handle if l.strip()]
    assert len(lines) == 30
    assert all(a == f"JPEGImages/480p/{a.split('/')[-1]}" and b == f"Annotations/480p/{a.split('/')[-1]}"
               for a, b in lines)


def test_write_mask_roundtrip(tmp_path):
    ids = np.zeros((5, 7), np.uint8)
    ids[1:3, 2:5] = 2
    ids[4, 6] = 8
    path = tmp_path / "m.png"
    davis.write_mask(str(path), ids)
    assert np.array_equal(davis.read_mask(str(path)), ids)
    with Image.open(path) as image:
        assert image.mode == "P"
    assert not os.path.exists(str(path) + ".partial")


def test_num_objects_ignores_void():
    mask = np.array([[0, 255], [2, 1]], np.uint8)
    assert davis.num_objects(mask) == 2


def test_resize_nearest_matches_seed_formula():
    # PIL NEAREST: src = floor((dst + 0.5) * src_size / dst_size), as in propagation-spec §0.
    wide = np.arange(854) % 256
    mask = np.broadcast_to(wide.astype(np.uint8), (3, 854)).copy()
    out = davis.resize_mask_nearest(mask, (3, 880))
    src = np.floor((np.arange(880) + 0.5) * 854 / 880).astype(int)
    assert np.array_equal(out[0], wide[src].astype(np.uint8))


def test_parse_hw():
    assert davis.parse_hw("480x880") == (480, 880)
    with pytest.raises(InputError):
        davis.parse_hw("480")
