"""The propagation engine against the dense reference (tests/dense_reference.py), synthetic and real."""
import os

import numpy as np
import pytest
import torch

from dense_reference import real_features, reference_propagate
from lpcache.config import PropagationParams
from lpcache.davis import read_mask, resize_mask_nearest
from lpcache.errors import InputError
from lpcache.propagation import engine, iter_propagate, propagate_video


def _unit(features):
    return (features / np.linalg.norm(features, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(params=[1, 2, 3])
def block(request):
    """Targets per block: one at a time, pairs (the CPU default), triples (odd lengths, partial last block)."""
    return request.param


@pytest.fixture(scope="module")
def tiny():
    """9 frames of random unit features on a 7x9 grid; a 28x36 first mask with ids 0, 1, 2, 8 (K+1 = 4)."""
    rng = np.random.default_rng(0)
    feats = _unit(rng.normal(size=(9, 7, 9, 6)))
    mask = np.zeros((28, 36), np.uint8)
    mask[5:15, 5:20] = 1
    mask[15:25, 18:30] = 2
    mask[2:8, 25:34] = 8
    return feats, mask


@pytest.mark.parametrize("params", [
    PropagationParams(0.7, 8, 18, 20),   # every target has t <= L: frame 0 duplicated in the context
    PropagationParams(0.7, 3, 2.0, 4),   # radius edge: distance exactly 2 excluded; t > L from frame 5
    PropagationParams(0.1, 5, 1.0, 3),   # radius 1: only the same position in short-term frames
    PropagationParams(0.3, 2, 3.0, 1),   # one short-term frame
])
@pytest.mark.parametrize("tile_hw", [None, (2, 3), (7, 9)])
def test_tiny_cases_equal_the_dense_reference(tiny, params, tile_hw, block):
    feats, mask = tiny
    want = reference_propagate(feats, mask, params.temperature, params.topk, params.radius, params.video_len,
                               mask.shape)
    got = propagate_video(feats, mask, params, mask.shape, tile_hw=tile_hw, block=block)
    assert got.shape == (9, 28, 36) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(got[1:])) <= {0, 1, 2, 8}


def test_all_settings_at_once_equal_each_setting_alone(tiny, block):
    feats, mask = tiny
    settings = [PropagationParams(0.7, 8, 3.0, 4), PropagationParams(0.2, 3, 3.0, 4), PropagationParams(0.7, 5, 2.0, 2),
                PropagationParams(0.05, 8, 5.0, 6), PropagationParams(0.7, 1, 2.0, 6)]
    together = {p: [] for p in settings}
    for t, out in iter_propagate(feats, mask, settings, mask.shape, block=block):
        assert set(out) == set(settings)
        for p in settings:
            together[p].append(out[p])
    for p in settings:
        np.testing.assert_array_equal(np.stack(together[p]), propagate_video(feats, mask, p, mask.shape, block=block))


@pytest.mark.parametrize("protocol", ["seed", "dino", "vfs", "dinov3"])
def test_a_grid_of_radii_and_lengths_equals_each_setting_alone(tiny, protocol):
    """A sweep computes one product per tile for the largest radius and takes each radius's band lists from
    it; contexts of several lengths are cut into bands (frame 0's repeats a band of their own). Every
    setting's masks equal a run of that setting alone (one radius, one length: one band) bit for bit."""
    feats, mask = tiny
    settings = [PropagationParams(0.1, k, r, length) for k in (1, 4) for r in (1, 2, 4) for length in (2, 5, 7)]
    together = {p: [] for p in settings}
    for _, out in iter_propagate(feats, mask, settings, mask.shape, protocol=protocol, tile_hw=(3, 4)):
        for p in settings:
            together[p].append(out[p])
    for p in settings:
        np.testing.assert_array_equal(np.stack(together[p]), propagate_video(feats, mask, p, mask.shape,
                                                                             protocol=protocol), err_msg=p.id)


@pytest.mark.parametrize("context,masked", [("padded_first", False), ("first_plus_last", True),
                                            ("first_plus_previous", True)])
def test_context_bands_cut_every_context_into_whole_bands(context, masked):
    """Bands follow the slots of the largest context in order; each smaller context is its head plus the
    bands from its start; a band holds distinct consecutive frames or one frame repeated."""
    from lpcache.protocols.base import context_frames

    lengths = (2, 5, 7)
    for target in range(1, 15):
        bands = engine.context_bands(context, masked, target, lengths)
        slots = [f for band in bands for f in band.frames * band.copies]
        for length in lengths:
            windowed = context_frames(context, target, length)[0 if masked else 1:]
            start = engine.suffix_start(context, masked, target, 7, length)
            got = [f for band in engine.bands_in_context(bands, start, masked) for f in band.frames * band.copies]
            assert got == windowed, (target, length)
        assert slots == context_frames(context, target, 7)[0 if masked else 1:]
        for band in bands:
            assert band.copies == 1 or len(band.frames) == 1
            assert list(band.frames) == list(range(band.frames[0], band.frames[0] + len(band.frames)))


def test_band_lists_of_a_smaller_radius_are_its_own_lists(tiny):
    """The lists of a smaller radius, taken from the larger radius's products, equal those of a run with that
    radius alone (scores and positions; -inf padding aside)."""
    feats = torch.from_numpy(tiny[0])

    def lists(radii):
        affinity = engine._Affinity((7, 9), 6, radii, 5, 4, torch.device("cpu"), "float32", block=1, tile_hw=(3, 4))
        for frame in range(5):
            affinity.add_source(frame, feats[frame])
        return affinity.lists(5, [feats[5]])[0]

    both, alone = lists([4.0, 1.0]), lists([1.0])   # radius 1: one key per frame, so -inf padding too
    finite = torch.isfinite(alone.values[1.0])
    assert 0 < int(finite.sum()) < finite.numel()
    torch.testing.assert_close(both.values[1.0], alone.values[1.0], rtol=0, atol=0)
    assert torch.equal(both.index[1.0][finite], alone.index[1.0][finite])


def test_blocks_of_targets_give_the_masks_of_one_target_at_a_time(tiny):
    """Stacked targets share products but each sees only its own context: bit for bit the same masks."""
    feats, mask = tiny
    params = PropagationParams(0.3, 4, 3.0, 3)
    one = propagate_video(feats, mask, params, mask.shape, block=1)
    for block in (2, 4, 8, 16):
        np.testing.assert_array_equal(propagate_video(feats, mask, params, mask.shape, block=block), one)


def test_float16_features_are_read(tiny):
    feats, mask = tiny
    half = feats.astype(np.float16)
    params = PropagationParams(0.7, 4, 3.0, 4)
    np.testing.assert_array_equal(propagate_video(half, mask, params, mask.shape),
                                  propagate_video(half.astype(np.float32), mask, params, mask.shape))
    torch_input = torch.from_numpy(half)
    np.testing.assert_array_equal(propagate_video(torch_input, mask, params, mask.shape),
                                  propagate_video(half.astype(np.float32), mask, params, mask.shape))


@pytest.mark.parametrize("precision", ["tf32", "bfloat16"])
def test_other_precisions_run_and_mostly_agree(tiny, precision):
    feats, mask = tiny
    params = PropagationParams(0.7, 4, 3.0, 4)
    exact = propagate_video(feats, mask, params, mask.shape)
    other = propagate_video(feats, mask, params, mask.shape, precision=precision)
    assert other.shape == exact.shape and (other == exact).mean() > 0.95


def test_frame0_output_is_the_annotation_at_the_output_size(tiny):
    feats, mask = tiny
    out = propagate_video(feats, mask, PropagationParams(0.7, 4, 3.0, 4), (56, 72))
    np.testing.assert_array_equal(out[0], resize_mask_nearest(mask, (56, 72)))
    assert out.shape == (9, 56, 72)


def test_bad_parameters_are_refused(tiny):
    feats, mask = tiny
    with pytest.raises(InputError, match="topk 64: larger than the 63 candidates"):
        propagate_video(feats, mask, PropagationParams(topk=64), mask.shape)
    with pytest.raises(InputError, match="radius"):
        propagate_video(feats, mask, PropagationParams(radius=0), mask.shape)
    with pytest.raises(InputError, match="temperature"):
        propagate_video(feats, mask, PropagationParams(temperature=-1), mask.shape)
    with pytest.raises(InputError, match="no object"):
        propagate_video(feats, np.zeros_like(mask), PropagationParams(), mask.shape)


def _frames(root, seq, count):
    folder = os.path.join(root, "JPEGImages/480p", seq)
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder))[:count]]


def _agreement(a, b):
    return float((a == b).mean())


@pytest.mark.parametrize("params", [PropagationParams(), PropagationParams(0.5, 12, 5.0, 4)])
def test_real_single_object_matches_reference(davis_root, params):
    """blackswan, 8 frames, 30x55 grid features of the real frames (seed protocol 480x880)."""
    feats = _unit(real_features(_frames(davis_root, "blackswan", 8)))
    mask = resize_mask_nearest(read_mask(os.path.join(davis_root, "Annotations/480p/blackswan/00000.png")), (480, 880))
    want = reference_propagate(feats, mask, params.temperature, params.topk, params.radius, params.video_len, (480, 880))
    got = propagate_video(feats, mask, params, (480, 880))
    assert _agreement(got, want) >= 0.9999
    # and the propagation is meaningful: the swan is still found on frame 7 (IoU vs the real GT)
    gt = resize_mask_nearest(read_mask(os.path.join(davis_root, "Annotations/480p/blackswan/00007.png")), (480, 880))
    iou = np.logical_and(got[7] == 1, gt == 1).sum() / np.logical_or(got[7] == 1, gt == 1).sum()
    assert iou > 0.5


def test_real_multi_object_matches_reference(davis_root, osvos_root):
    """kite-surf with OSVOS ids 0..3 as frame-0 labels (K+1 = 4), 10 frames, 30x55 grid."""
    feats = _unit(real_features(_frames(davis_root, "kite-surf", 10), channels=24, seed=3))
    mask = resize_mask_nearest(read_mask(os.path.join(osvos_root, "kite-surf/00000.png")), (480, 880))
    assert sorted(np.unique(mask).tolist()) == [0, 1, 2, 3]
    params = PropagationParams(0.7, 8, 18, 5)
    want = reference_propagate(feats, mask, params.temperature, params.topk, params.radius, params.video_len, (480, 880))
    got = propagate_video(feats, mask, params, (480, 880))
    assert _agreement(got, want) >= 0.9999
    assert len(np.unique(got[-1])) >= 3


def test_real_stride8_grid_matches_reference(davis_root):
    """motocross-jump, 4 frames on the seed's 60x110 grid (many tiles, windows clipped at every border)."""
    feats = _unit(real_features(_frames(davis_root, "motocross-jump", 4), stride=8, channels=16, seed=5))
    assert feats.shape[1:3] == (60, 110)
    mask = resize_mask_nearest(read_mask(os.path.join(davis_root, "Annotations/480p/motocross-jump/00000.png")),
                               (480, 880))
    params = PropagationParams(0.7, 8, 6.0, 2)
    want = reference_propagate(feats, mask, params.temperature, params.topk, params.radius, params.video_len, (480, 880))
    got = propagate_video(feats, mask, params, (480, 880))
    assert _agreement(got, want) >= 0.9999


# ------------------------------------------------------------------ frames are checked as they are read
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_a_non_finite_frame_stops_before_its_mask(tiny, bad, as_tensor):
    feats, mask = tiny
    feats = feats.copy()
    feats[2, 3, 4, 1] = bad
    source = torch.from_numpy(feats) if as_tensor else feats
    seen = []
    with pytest.raises(InputError, match="frame 2: non-finite feature values"):
        for t, _ in iter_propagate(source, mask, [PropagationParams(0.7, 4, 3.0, 4)], mask.shape, block=1):
            seen.append(t)
    assert 2 not in seen


class _FrameSource:
    """A cache-like source: frames only through `frame` (as lpcache.cache.CachedSequence gives them)."""

    def __init__(self, feats):
        self._feats = feats
        self.n_frames, self.grid_hw, self.channels = feats.shape[0], feats.shape[1:3], feats.shape[3]
        self.read = []

    @property
    def feats(self):
        raise AssertionError("frames must be read through frame()")

    def frame(self, index, dtype=np.float32):
        self.read.append(index)
        return self._feats[index].astype(dtype)


def test_a_cache_is_read_through_its_checked_frame_method(tiny):
    feats, mask = tiny
    source = _FrameSource(feats)
    params = PropagationParams(0.7, 4, 3.0, 4)
    np.testing.assert_array_equal(propagate_video(source, mask, params, mask.shape),
                                  propagate_video(feats, mask, params, mask.shape))
    assert source.read == list(range(9))


def test_a_non_finite_frame_in_a_cache_file_names_the_file_and_frame(tiny, tmp_path):
    import h5py

    from lpcache.cache import CachedSequence, write_sequence
    feats, mask = tiny
    path = write_sequence(str(tmp_path), "seq", feats, [f"{i:05d}" for i in range(9)])
    with h5py.File(path, "r+") as handle:
        handle["feats"][2, 1, 1, 0] = np.nan
    seen = []
    with CachedSequence(path) as cached:
        with pytest.raises(InputError, match=r"seq\.h5: frame 2 \(00002\): non-finite feature values"):
            for t, _ in iter_propagate(cached, mask, [PropagationParams(0.7, 4, 3.0, 4)], mask.shape):
                seen.append(t)
    assert 2 not in seen


# ------------------------------------------------------------------ out of memory
def _failing(monkeypatch, times):
    """Make the first `times` window products raise CUDA's out-of-memory error."""
    from lpcache.propagation import kernels
    real, calls = kernels.window_scores, []

    def window_scores(*args):
        calls.append(1)
        if len(calls) <= times:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args)

    monkeypatch.setattr(kernels, "window_scores", window_scores)
    return calls


def test_out_of_memory_backs_off_to_fewer_targets_per_product(tiny, monkeypatch, caplog):
    feats, mask = tiny
    params = PropagationParams(0.7, 4, 3.0, 4)
    want = propagate_video(feats, mask, params, mask.shape, block=4)
    calls = _failing(monkeypatch, 2)
    got = propagate_video(feats, mask, params, mask.shape, block=4)
    np.testing.assert_array_equal(got, want)
    assert len(calls) > 2
    assert "out of memory on cpu: 1 target(s) per product from now on" in caplog.text


def test_out_of_memory_for_one_target_is_one_input_error(tiny, monkeypatch):
    feats, mask = tiny
    _failing(monkeypatch, 10 ** 6)
    settings = [PropagationParams(0.7, 4, 3.0, 4), PropagationParams(0.7, 2, 3.0, 4)]
    with pytest.raises(InputError, match=r"^features: out of memory on cpu at grid 7x9 with 2 setting\(s\): use fewer "
                                         r"settings, --precision float16, or --device cpu$"):
        list(iter_propagate(feats, mask, settings, mask.shape))
