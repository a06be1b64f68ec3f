"""The seed's dense reference, now public in the package (lpcache.protocols.seed.reference), under the names
the tests use; plus deterministic real-frame features for the fidelity tests."""
import cv2
import numpy as np

from lpcache.protocols.seed import label_ids as reference_label_ids  # noqa: F401
from lpcache.protocols.seed import label_init as _label_init
from lpcache.protocols.seed import radius_bias, ranked, reference as reference_propagate, row_chunks  # noqa: F401


def reference_onehot(mask, ids, grid_hw):
    return _label_init(mask, ids, grid_hw)


# ------------------------------------------------------------------ test data: real frames -> real features
def real_features(image_paths, size_hw=(480, 880), stride=16, channels=32, seed=0):
    """Deterministic features of real frames: stride x stride average-pooled RGB, 3x3 neighbourhoods
    (27 values) through a fixed random projection (seed 0) and tanh. (T, H/stride, W/stride, C) float32,
    not normalised (lpcache.cache.write_sequence normalises)."""
    rng = np.random.default_rng(seed)
    projection = rng.normal(size=(27, channels)).astype(np.float32)
    offset = rng.normal(size=channels).astype(np.float32) * 0.1
    out = []
    for path in image_paths:
        image = cv2.imread(path)[:, :, ::-1].astype(np.float32) / 255.0
        image = cv2.resize(image, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_NEAREST)
        h, w = size_hw[0] // stride, size_hw[1] // stride
        pooled = image[: h * stride, : w * stride].reshape(h, stride, w, stride, 3).mean(axis=(1, 3))
        pooled = (pooled - pooled.mean(axis=(0, 1))) / (pooled.std(axis=(0, 1)) + 1e-6)
        padded = np.pad(pooled, ((1, 1), (1, 1), (0, 0)), mode="edge")
        patches = np.concatenate([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=-1)
        out.append(np.tanh(patches @ projection + offset))
    return np.stack(out).astype(np.float32)
