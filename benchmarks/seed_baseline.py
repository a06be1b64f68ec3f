"""The seed's compute structure (propagation-spec.md sections 5-8), re-implemented as a timing baseline.

Structure reproduced: targets in mini-batches of 2; the context keys of a batch gathered into one
materialised (C, B, L+1, hw) tensor (frame 0 copied into every slot that holds it); queries in chunks of
100 positions; a dense einsum against all (L+1) * hw candidates; the dense (hw, hw) radius bias (0 / -1e10)
added to the short-term slots; / tau; top-k; softmax; results moved to the host; then the per-frame label
loop (gather + weighted sum, soft labels fed back) and the cv2 up-sampling + argmax.
It is deliberately not optimised. `seed_propagate(feats, first_soft, params, targets)` runs only the given
target frames (the seed is slow), which must be consecutive from 1 or have their context labels supplied.
On `device` (e.g. cuda) the features, bias and affinities live there; top-k results go to the host as in the
seed, and the clock is read after torch.cuda.synchronize().
"""
import time

import torch


def dense_radius_bias(grid_hw, radius, device="cpu"):
    """(hw, hw) float32 on `device`: 0 where the grid distance is strictly below radius, -1e10 elsewhere."""
    h, w = grid_hw
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device),
                            torch.arange(w, dtype=torch.float32, device=device), indexing="ij")
    pos = torch.stack([ys.reshape(-1), xs.reshape(-1)], 1)
    dist = torch.cdist(pos, pos)
    return torch.where(dist < radius, torch.tensor(0.0, device=device), torch.tensor(-1e10, device=device))


def seed_affinity(feats, targets, params, bias, batch=2, chunk=100):
    """Top-k (values after softmax, candidate indices) per target, the seed's way. feats: (N, C, hw)."""
    n_slots = params.video_len + 1
    hw = feats.shape[2]
    out = {}
    for start in range(0, len(targets), batch):
        group = targets[start:start + batch]
        contexts = [[0] + [max(0, t - params.video_len + i) for i in range(params.video_len)] for t in group]
        keys = torch.stack([torch.stack([feats[f] for f in ctx], 1) for ctx in contexts], 1)  # (C, B, T, hw)
        queries = feats[group]                                                             # (B, C, hw)
        weights = torch.empty(len(group), hw, params.topk)
        index = torch.empty(len(group), hw, params.topk, dtype=torch.long)
        for q0 in range(0, hw, chunk):
            q1 = min(hw, q0 + chunk)
            scores = torch.einsum("bcq,cbtk->bqtk", queries[:, :, q0:q1], keys)              # (B, q, T, hw)
            scores[:, :, 1:] += bias[q0:q1][None, :, None, :]
            scores = scores.reshape(len(group), q1 - q0, n_slots * hw) / params.temperature
            values, chosen = torch.topk(scores, params.topk, dim=-1)
            weights[:, q0:q1] = torch.softmax(values, dim=-1).cpu()
            index[:, q0:q1] = chosen.cpu()
        for number, t in enumerate(group):
            out[t] = (weights[number], index[number], contexts[number])
    return out


def seed_label_loop(affinity, labels, targets):
    """labels: {frame: (hw, K+1)}; adds every target's soft prediction (in order) and returns them.

    A context frame without a label (outside the timed range) uses frame 0's labels: timing only."""
    for t in targets:
        weights, index, context = affinity[t]
        hw = weights.shape[0]
        bank = torch.cat([labels.get(f, labels[0]) for f in context], 0)      # (T*hw, K+1)
        labels[t] = (weights[:, :, None] * bank[index]).sum(1)
    return labels


def synchronize(device):
    """Wait for queued CUDA work (a no-op on other devices), so that clocks read after it are right."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def seed_propagate(feats, first_soft, params, targets, grid_hw, out_hw, upsample=None, device="cpu"):
    """Time the seed structure on `targets` (affinities on `device`); returns (seconds, {t: soft (hw, K+1)})."""
    feats = torch.as_tensor(feats, dtype=torch.float32).to(device)
    feats = feats.reshape(feats.shape[0], -1, feats.shape[-1]).permute(0, 2, 1).contiguous()   # (N, C, hw)
    synchronize(device)
    started = time.perf_counter()
    bias = dense_radius_bias(grid_hw, params.radius, device)
    affinity = seed_affinity(feats, list(targets), params, bias)
    labels = {0: first_soft}
    labels = seed_label_loop(affinity, labels, list(targets))
    if upsample is not None:
        for t in targets:
            upsample(labels[t].numpy().reshape(grid_hw[0], grid_hw[1], -1), out_hw)
    synchronize(device)
    return time.perf_counter() - started, labels


def main():
    """Whole-process timing side: read a cache file, propagate every target the seed's way, write PNGs."""
    import argparse
    import os

    import cv2
    import h5py
    import numpy as np
    from PIL import Image

    parser = argparse.ArgumentParser(description="the seed's compute structure as a whole process")
    parser.add_argument("--cache", required=True, help="one lpcache <seq>.h5 file")
    parser.add_argument("--first-mask", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--out-size", default="480x880")
    args = parser.parse_args()

    class Params:  # the seed's defaults
        temperature, topk, radius, video_len = 0.7, 8, 18.0, 20

    out_hw = tuple(int(v) for v in args.out_size.split("x"))
    with h5py.File(args.cache, "r") as handle:
        feats = handle["feats"][:].astype(np.float32)
    n_frames, height, width, _ = feats.shape
    mask = np.array(Image.open(args.first_mask).resize((out_hw[1], out_hw[0]), Image.NEAREST))
    ids = np.unique(mask)
    onehot = (mask[..., None] == ids).astype(np.float32)
    first_soft = torch.from_numpy(cv2.resize(onehot, (width, height), interpolation=cv2.INTER_LINEAR)
                                  .reshape(height * width, len(ids)))

    def upsample(soft, hw):
        big = cv2.resize(soft, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR).reshape(hw[0], hw[1], -1)
        return ids[np.argmax(big, axis=-1)].astype(np.uint8)

    _, labels = seed_propagate(feats, first_soft, Params, range(1, n_frames), (height, width), out_hw)
    os.makedirs(args.out, exist_ok=True)
    for t in range(n_frames):
        frame = mask if t == 0 else upsample(labels[t].numpy().reshape(height, width, -1), out_hw)
        cv2.imwrite(os.path.join(args.out, f"{t:05d}.png"), frame)


if __name__ == "__main__":
    main()
