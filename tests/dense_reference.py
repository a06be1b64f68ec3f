"""A plain, dense implementation of propagation-spec.md (sections 4-9), written from the spec only.

Slow on purpose: every target scores all (L + 1) * hw candidates (frame 0 repeated as the spec says),
laid out in the seed's order - context slot (slot 0 = frame 0, then the short-term frames oldest first),
then grid position - with a dense radius bias on the short-term slots. It defines the semantics the engine
must reproduce bit for bit, including the two choices the seed leaves open:
  * the tie rule: the top-k are the k best raw scores, equal scores ranked by candidate index in that
    layout (a stable sort of the negated scores), lower first;
  * the sum: softmax(top-k scores / tau) weights times the candidates' labels, added one by one from the
    best candidate to the k-th.
Used by the tests as the independent check of the engine.
"""
import cv2
import numpy as np
import torch

from lpcache.davis import PALETTE

ROWS_PER_PRODUCT = 256
MIN_ROWS = 16     # a product of fewer rows takes another BLAS path (another summation order): none is made


def reference_label_ids(mask):
    """Distinct ids of frame 0 sorted by their BGR colour (spec section 4)."""
    colours = sorted({tuple(int(v) for v in PALETTE[i][::-1]): int(i) for i in np.unique(mask)}.items())
    return np.array([i for _, i in colours], dtype=np.uint8)


def reference_onehot(mask, ids, grid_hw):
    hot = np.stack([(mask == i).astype(np.float32) for i in ids], axis=-1)
    return cv2.resize(hot, (grid_hw[1], grid_hw[0]), interpolation=cv2.INTER_LINEAR).reshape(
        grid_hw[0], grid_hw[1], len(ids))


def radius_bias(grid_hw, radius):
    """Dense (hw, hw) bias: 0 where the grid distance is strictly below radius, -1e10 elsewhere."""
    h, w = grid_hw
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    pos = np.stack([ys.ravel(), xs.ravel()], 1).astype(np.float32)
    dist = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1))
    return torch.from_numpy(np.where(dist < radius, 0.0, -1e10).astype(np.float32))


def ranked(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k best scores of each row: score descending, equal scores by column (the tie rule)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def row_chunks(count):
    """(start, stop) chunks of ROWS_PER_PRODUCT rows, a short last chunk merged into the one before it."""
    starts = list(range(0, count, ROWS_PER_PRODUCT))
    if len(starts) > 1 and count - starts[-1] < MIN_ROWS:
        starts.pop()
    return list(zip(starts, starts[1:] + [count]))


def reference_propagate(feats, first_mask, temperature, topk, radius, video_len, out_hw, return_soft=False):
    """feats (T, h, w, C) L2-normalised; first_mask (H, W) ids at out_hw. Returns masks (T, H, W) uint8
    (and the soft maps (hw, K+1) of every frame when return_soft)."""
    feats = torch.as_tensor(np.asarray(feats, dtype=np.float32))
    n_frames, h, w, channels = feats.shape
    hw = h * w
    flat = feats.reshape(n_frames, hw, channels)
    ids = reference_label_ids(first_mask)
    labels = [torch.from_numpy(reference_onehot(first_mask, ids, (h, w)).reshape(hw, len(ids)))]
    bias = radius_bias((h, w), radius)
    masks, softs = [np.asarray(first_mask, dtype=np.uint8)], [labels[0]]
    for t in range(1, n_frames):
        context = [0] + [max(0, t - video_len + i) for i in range(video_len)]
        keys = torch.cat([flat[f] for f in context], 0)                      # (T*hw, C), slot-major
        slot_labels = torch.cat([labels[f] for f in context], 0)            # (T*hw, K+1)
        pred = torch.empty(hw, len(ids))
        for start, stop in row_chunks(hw):
            raw = (flat[t, start:stop] @ keys.t()).reshape(stop - start, video_len + 1, hw)
            raw[:, 1:] += bias[start:stop, None, :]                          # short-term slots only
            raw = raw.reshape(stop - start, -1).numpy()
            best = ranked(raw, topk)                                         # (rows, k)
            values = torch.from_numpy(np.take_along_axis(raw, best, axis=1))
            weights = torch.softmax(values / temperature, dim=1)
            picked = slot_labels[torch.from_numpy(best)]                     # (rows, k, K+1)
            mixed = weights[:, 0, None] * picked[:, 0]
            for i in range(1, topk):                                         # best candidate first
                mixed = mixed + weights[:, i, None] * picked[:, i]
            pred[start:stop] = mixed
        labels.append(pred)
        softs.append(pred)
        soft = pred.numpy().reshape(h, w, len(ids))
        big = cv2.resize(soft, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_LINEAR).reshape(
            out_hw[0], out_hw[1], len(ids))
        masks.append(ids[np.argmax(big, axis=-1)])
    masks = np.stack(masks)
    return (masks, softs) if return_soft else masks


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
