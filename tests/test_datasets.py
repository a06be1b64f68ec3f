"""Dataset and metric plug-ins: the registries, the DAVIS dataset, the DAVIS J&F metric."""
import dataclasses
import os

import numpy as np
import pytest
from PIL import Image

from lpcache import datasets, evaluation, scoring
from lpcache.davis import Sequence
from lpcache.errors import InputError


# ------------------------------------------------------------------------------------------------ registry
def test_builtin_names_and_unknown_names():
    assert "davis" in datasets.names() and "davis_jf" in evaluation.names()
    with pytest.raises(InputError, match=r"dataset 'jhmdb': expected one of davis"):
        datasets.get("jhmdb")
    with pytest.raises(InputError, match=r"metric 'pck': expected one of davis_jf"):
        evaluation.get("pck")
    with pytest.raises(ValueError, match="registered twice"):
        datasets.register(datasets.get("davis"))
    with pytest.raises(ValueError, match="registered twice"):
        evaluation.register(evaluation.get("davis_jf"))


def test_every_dataset_names_a_registered_metric():
    for name in datasets.names():
        assert evaluation.get(datasets.get(name).metric).name == datasets.get(name).metric


def _toy_sequences(root, set_name="val", names=None):
    """One sequence per sub-folder of `root`: frames in <seq>/frames, labels (grey PNG) in <seq>/labels."""
    found = sorted(os.listdir(root))
    return [Sequence(n, os.path.join(root, n, "frames"), os.path.join(root, n, "labels"))
            for n in found if not names or n in names]


def _toy_read(path):
    with Image.open(path) as image:
        return np.array(image)


def _toy_write(path, ids):
    Image.fromarray(np.asarray(ids, dtype=np.uint8), mode="L").save(path)


def test_a_dataset_registered_elsewhere_is_found_by_name(tmp_path, monkeypatch):
    registry = datasets.REGISTRY                 # leave the real registry untouched
    monkeypatch.setattr(registry, "_items", dict(registry._items))
    monkeypatch.setattr(registry, "_modules", dict(registry._modules))
    toy = datasets.register(datasets.Dataset("toy_parts", "grey part ids", _toy_sequences, _toy_read, _toy_write,
                                             metric="davis_jf"))
    for seq in ("b", "a"):
        os.makedirs(tmp_path / seq / "frames")
        os.makedirs(tmp_path / seq / "labels")
        Image.new("RGB", (8, 6)).save(tmp_path / seq / "frames" / "00000.jpg")
    ids = np.arange(48, dtype=np.uint8).reshape(6, 8) % 5
    toy.write_labels(str(tmp_path / "a" / "labels" / "00000.png"), ids)

    found = datasets.get("toy_parts")
    assert found is toy and "toy_parts" in datasets.names()
    sequences = found.sequences(str(tmp_path), "val", ["a"])
    assert [s.name for s in sequences] == ["a"]
    assert [os.path.basename(p) for p in sequences[0].image_paths] == ["00000.jpg"]
    np.testing.assert_array_equal(found.read_labels(sequences[0].annotation_paths[0]), ids)


# ------------------------------------------------------------------------------------------------ DAVIS
def test_davis_lists_the_shared_sequences(davis_root):
    with open(os.path.join(davis_root, "ImageSets", "2017", "val.txt"), encoding="utf-8") as handle:
        listed = [line.strip() for line in handle if line.strip()]
    davis = datasets.get("davis")
    sequences = davis.sequences(davis_root, "val", None)
    assert [s.name for s in sequences] == listed and len(listed) == 20
    first = sequences[0]
    assert first.image_dir == os.path.join(davis_root, "JPEGImages", "480p", listed[0])
    assert [s.name for s in davis.sequences(davis_root, "val", [listed[3], listed[1]])] == [listed[1], listed[3]]


def test_davis_reads_masks_as_the_scorer_does(davis_root):
    davis = datasets.get("davis")
    sequence = davis.sequences(davis_root, "val", None)[0]
    path = sequence.annotation_paths[5]
    ids = davis.read_labels(path)
    with Image.open(path) as image:
        raw = np.array(image)
    np.testing.assert_array_equal(ids, scoring.read_ids(path))
    np.testing.assert_array_equal(ids, raw)
    assert ids.dtype == np.uint8 and ids.ndim == 2 and ids.max() > 0


def test_davis_writes_palette_pngs(tmp_path):
    ids = np.array([[0, 1, 2], [3, 0, 1]], dtype=np.uint8)
    path = str(tmp_path / "00001.png")
    datasets.get("davis").write_labels(path, ids)
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[3:9] == [128, 0, 0, 0, 128, 0]  # VOC colours of ids 1 and 2
        np.testing.assert_array_equal(np.array(image), ids)


# ------------------------------------------------------------------------------------------------ metric
def _square(shape, top, left, size, value=1):
    ids = np.zeros(shape, dtype=np.uint8)
    ids[top:top + size, left:left + size] = value
    return ids


def test_davis_jf_through_the_registry():
    metric = evaluation.get("davis_jf")
    assert metric.columns[0] == "J&F-Mean"
    gt = [_square((40, 40), 10, 10, 10), _square((40, 40), 12, 10, 10)]
    perfect = metric.sequence_rows("seq", gt, gt, 1)
    assert [(r.key, r.j_mean, r.f_mean) for r in perfect] == [("seq_1", 1.0, 1.0)]
    # Predicting the object 20 pixels away: no overlap (J = 0) and no boundary within the 1-pixel tolerance.
    shifted = [_square((40, 40), 10, 30, 10), _square((40, 40), 12, 30, 10)]
    rows = metric.sequence_rows("seq", gt, shifted, 1)
    assert (rows[0].j_mean, rows[0].f_mean) == (0.0, 0.0)
    # Half the object: J = 50 / 100 per frame.
    half = [_square((40, 40), 10, 10, 10) * (np.arange(40) < 15)[None, :].astype(np.uint8)] * 2
    assert metric.sequence_rows("seq", gt[:1] * 2, half, 1)[0].j_mean == 0.5
    table = metric.summarize(perfect + rows)
    assert table["J-Mean"] == 0.5 and table["J&F-Mean"] == 0.5


def test_davis_jf_registry_path_equals_the_scorer():
    rng = np.random.default_rng(1)
    gt = [rng.integers(0, 3, (30, 40)).astype(np.uint8) for _ in range(4)]
    pred = [rng.integers(0, 3, (30, 40)).astype(np.uint8) for _ in range(4)]
    rows = evaluation.get("davis_jf").sequence_rows("noise", gt, pred, 2)
    expected = scoring.score_sequence_masks("noise", gt, pred, 2).rows
    assert [dataclasses.astuple(r) for r in rows] == [dataclasses.astuple(r) for r in expected]
    with pytest.raises(ValueError, match="3 predicted frames for 4"):
        evaluation.get("davis_jf").sequence_rows("noise", gt, pred[:3], 2)
