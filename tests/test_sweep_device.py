"""The sweep's device path (issue 13, item 2), run on CPU tensors: soft maps decoded in batches on the device
(`iter_propagate(masks_on_device=True)`, lpcache.propagation.device_decode) and J/F from integer counts there
(lpcache.metrics_device). It is the CUDA path (`sweeping.DEVICE_DECODING`); on this machine it runs on the CPU,
so its speed on a GPU is unmeasured here. The host path stays the bit-exact one; the device path's masks agree
with it on >= 99.99 % of pixels, and its J/F are the official ones of the masks it made.
"""
import numpy as np
import pytest

from lpcache import sweeping
from lpcache.cache import CachedSequence
from lpcache.config import PropagationParams, SweepGrid
from lpcache.davis import load_davis, read_mask
from lpcache.metrics import frame_scores
from lpcache.propagation import iter_propagate
from lpcache.sweeping import sweep
from test_sweep import SEED_HW, short_data  # noqa: F401  (the fixture)

GRID = SweepGrid(temperature=(0.05, 0.7), topk=(1, 8), radius=(4.0, 12.0), video_len=(2,))


def test_device_masks_agree_with_the_host_path(short_data):  # noqa: F811
    root, cache_a, _ = short_data
    settings = GRID.settings()
    equal = total = 0
    for seq in load_davis(root):
        first = read_mask(seq.annotation_paths[0])
        with CachedSequence(f"{cache_a}/{seq.name}.h5") as cached:
            host = list(iter_propagate(cached, first, settings, SEED_HW))
        with CachedSequence(f"{cache_a}/{seq.name}.h5") as cached:
            device = list(iter_propagate(cached, first, settings, SEED_HW, masks_on_device=True))
        for (t, want), (_, got) in zip(host, device):
            for params in settings:
                mask = got[params]
                if t:
                    assert mask.dtype.is_floating_point is False and tuple(mask.shape) == SEED_HW
                    mask = mask.numpy()
                equal += int((mask == want[params]).sum())
                total += mask.size
    assert equal / total >= 0.9999, equal / total


def test_device_sweep_scores_are_the_official_scores_of_its_masks(short_data, tmp_path, monkeypatch):  # noqa: F811
    """With device decoding on, every setting's J and F per frame equal lpcache.metrics (bit-identical to the
    official scorer) on the masks the device path made, and J&F stays within 1e-4 of the host sweep's."""
    root, cache_a, _ = short_data
    host = sweep([cache_a], root, str(tmp_path / "host"), GRID, threads=1, progress=False)
    monkeypatch.setattr(sweeping, "DEVICE_DECODING", {"cpu", "cuda"})
    captured = {}
    original = sweeping._score_frame_on_device

    def spy(masks, scores, column, gt, task):
        original(masks, scores, column, gt, task)
        for params in scores:
            want = frame_scores(masks[params].numpy(), gt.frames[column], gt.n_objects)
            captured[(task.sequence.name, params, column)] = (want, (scores[params][0][:, column].copy(),
                                                                     scores[params][1][:, column].copy()))

    monkeypatch.setattr(sweeping, "_score_frame_on_device", spy)
    device = sweep([cache_a], root, str(tmp_path / "device"), GRID, threads=1, progress=False)
    assert captured
    for (want_j, want_f), (got_j, got_f) in captured.values():
        assert np.array_equal(want_j, got_j) and np.array_equal(want_f, got_f)
    host_rows = {r["setting"]: r["J&F-Mean"] for r in host.rows}
    for row in device.rows:
        assert abs(row["J&F-Mean"] - host_rows[row["setting"]]) <= 1e-4, row["setting"]
    assert PropagationParams(0.7, 8, 12.0, 2).id in host_rows
