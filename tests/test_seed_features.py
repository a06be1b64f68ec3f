"""float32 features bit-identical to the seed's formulation (issue 10, item 5).

The seed (CatMAE downstream/davis2017-seg, ResNet and ViT paths) feeds the network a contiguous NCHW float32
batch and L2-normalises its output with `torch.nn.functional.normalize(feats, dim=1)`. The expected values
here are computed that way, independently of lpcache's code: from the decoded uint8 pixels, with the same
network module called directly. Small random ResNet-18 and ViT-S/16 on tiny frames (64 x 96, a multiple of
both strides, so the native protocol feeds the decoded pixels unchanged).
"""
import os

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lpcache.backbones import create
from lpcache.extraction import BatchForward, extract

HW = (64, 96)
N_FRAMES = 3
BACKBONES = ("imagenet18", "vits16")


def make_davis(root, name="tiny", n_frames=N_FRAMES, hw=HW):
    """A DAVIS tree of one sequence: smooth random JPEG frames, a two-object first annotation."""
    rng = np.random.default_rng(1)
    jpeg_dir = root / "JPEGImages" / "480p" / name
    ann_dir = root / "Annotations" / "480p" / name
    jpeg_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    for t in range(n_frames):
        coarse = rng.integers(0, 256, (hw[0] // 8, hw[1] // 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((hw[1], hw[0]), Image.BILINEAR).save(jpeg_dir / f"{t:05d}.jpg")
    mask = np.zeros(hw, np.uint8)
    mask[8:30, 10:40], mask[35:60, 50:90] = 1, 2
    annotation = Image.fromarray(mask, mode="P")
    annotation.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])
    annotation.save(ann_dir / "00000.png")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(name + "\n")
    return str(root), sorted(str(p) for p in jpeg_dir.iterdir())


def decoded(paths):
    """The frames' uint8 RGB pixels (N, H, W, 3), decoded with PIL."""
    frames = []
    for path in paths:
        with Image.open(path) as image:
            frames.append(np.array(image.convert("RGB")))
    return np.stack(frames)


def seed_features(model, spec, pixels):
    """The seed's formulation: contiguous NCHW float32 input, the module called directly, F.normalize over
    channels (dim 1), then (N, h, w, C) for comparison with the cache."""
    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))).to(torch.float32) / 255.0
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    x = (x - mean) / std
    assert x.is_contiguous()
    with torch.no_grad():
        out = model(x)
    return F.normalize(out, dim=1).permute(0, 2, 3, 1).numpy()


def random_model(name):
    torch.manual_seed(0)
    model, spec, _ = create(name, random_init=True)
    return model, spec


@pytest.mark.parametrize("name", BACKBONES)
def test_batch_forward_is_the_seed_formulation(tmp_path, name):
    _, paths = make_davis(tmp_path)
    pixels = decoded(paths)
    model, spec = random_model(name)
    expected = seed_features(model, spec, pixels)
    got = BatchForward(model, spec, "cpu")(torch.from_numpy(pixels))
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("name", BACKBONES)
def test_extracted_float32_cache_is_bit_identical_float16_is_its_cast(tmp_path, name):
    root, paths = make_davis(tmp_path / "davis")
    model, spec = random_model(name)
    expected = seed_features(model, spec, decoded(paths))
    stored = {}
    for dtype in ("float32", "float16"):
        torch.manual_seed(0)  # extract builds the same random network
        result = extract(davis_root=root, cache_dir=str(tmp_path / f"cache-{dtype}"), backbone=name,
                         random_init=True, protocol="native", dtype=dtype, batch_size=N_FRAMES, num_workers=0,
                         device="cpu", progress=False)
        with h5py.File(os.path.join(result.backbone_dir, "tiny.h5"), "r") as handle:
            stored[dtype] = handle["feats"][()]
    assert stored["float32"].dtype == np.float32 and stored["float32"].shape == expected.shape
    assert np.array_equal(stored["float32"], expected)
    # the float16 default is the float32 values rounded to float16, nothing else
    assert stored["float16"].dtype == np.float16
    assert np.array_equal(stored["float16"], expected.astype(np.float16))
