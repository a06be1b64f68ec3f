"""docs/extending.md's promise: a new protocol (or dataset, or metric) is one module, and nothing else changes.

* The registry finds every module of its package (a new file is found without editing any list).
* A protocol registered by a module of its own, with a switch combination no built-in uses (DINO's context,
  a square window on every frame, VFS's weighting), is run by `lpcache propagate` on a cache recording it,
  and its masks equal a dense implementation of that rule written here from its definition.
"""
import os
import sys
import textwrap

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from lpcache import protocols
from lpcache.cli import cli
from lpcache.davis import load_davis, read_mask
from lpcache.registry import Registry
from lpcache.synthetic import make_synthetic_davis
from test_protocol_runs import HW, build_cache


def test_registry_imports_every_module_of_its_package(tmp_path, monkeypatch):
    package = tmp_path / "toy_plugins"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent("""
        from lpcache.registry import Registry
        REGISTRY = Registry("widget", __name__, first=["zeta"])
    """))
    (package / "base.py").write_text("raise AssertionError('base is not a plug-in')\n")
    for module, names in (("alpha", ["a1", "a2"]), ("zeta", ["z"]), ("mid", ["m"])):
        lines = ["from types import SimpleNamespace", "from . import REGISTRY"]
        lines += [f"REGISTRY.register(SimpleNamespace(name={n!r}))" for n in names]
        (package / f"{module}.py").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import toy_plugins

    import toy_plugins.mid  # noqa: F401  imported first: the listing order does not depend on it
    assert toy_plugins.REGISTRY.names() == ["z", "a1", "a2", "m"]
    assert toy_plugins.REGISTRY.get("m").name == "m"
    monkeypatch.delitem(sys.modules, "toy_plugins")


def _square_softmax_reference(feats, first_mask, params):
    """The toy rule densely: context = frame 0 + the previous `video_len` frames (frame 0 once); keys within
    a square of +-radius cells on every context frame; the top-k cosines jointly (ties: lower context slot,
    then position), softmax(cos / T) over them; one-hot NEAREST init at the grid; ids = argmax of the soft
    labels NEAREST-up-sampled (every output pixel takes its grid cell)."""
    n_frames, h, w, _ = feats.shape
    flat = torch.from_numpy(feats).reshape(n_frames, h * w, -1)
    ys, xs = np.divmod(np.arange(h * w), w)
    inside = torch.from_numpy((np.abs(ys[:, None] - ys[None]) <= params.radius)
                              & (np.abs(xs[:, None] - xs[None]) <= params.radius))
    grid = np.array(Image.fromarray(first_mask).resize((w, h), Image.NEAREST))
    ids = np.unique(first_mask)
    soft = [torch.from_numpy((grid.reshape(-1, 1) == ids[None]).astype(np.float32))]
    masks = [first_mask]
    for t in range(1, n_frames):
        context = [0] + list(range(max(1, t - params.video_len), t))
        scores = torch.cat([torch.where(inside, flat[t] @ flat[c].T, torch.tensor(-np.inf)) for c in context], 1)
        order = np.argsort(-scores.numpy(), axis=1, kind="stable")[:, :params.topk]
        values = torch.from_numpy(np.take_along_axis(scores.numpy(), order, axis=1))
        labels = torch.cat([soft[c] for c in context])[torch.from_numpy(order)]
        soft.append((torch.softmax(values / params.temperature, 1)[..., None] * labels).sum(1))
        cells = ids[soft[-1].numpy().argmax(1)].reshape(h, w)
        masks.append(np.array(Image.fromarray(cells.astype(np.uint8)).resize(first_mask.shape[::-1], Image.NEAREST)))
    return masks


def _nearest_decode(soft, ids, out_hw):
    cells = ids[np.argmax(soft, axis=-1)].astype(np.uint8)
    return np.array(Image.fromarray(cells).resize((out_hw[1], out_hw[0]), Image.NEAREST))


def _nearest_init(first_mask, grid_hw):
    ids = np.unique(first_mask)
    grid = np.array(Image.fromarray(first_mask).resize((grid_hw[1], grid_hw[0]), Image.NEAREST))
    return ids, (grid[..., None] == ids).astype(np.float32)


def test_a_new_protocol_runs_through_propagate_without_other_changes(tmp_path, monkeypatch):
    registry = protocols.REGISTRY                  # leave the real registry as it was
    monkeypatch.setattr(registry, "_items", dict(registry._items))
    monkeypatch.setattr(registry, "_modules", dict(registry._modules))
    toy = protocols.register(protocols.Protocol(
        name="toy_square", summary="a test protocol", defaults={"temperature": 0.2, "topk": 3, "radius": 2,
                                                               "video_len": 2},
        switches=protocols.Switches(context="first_plus_last", first_frame_masked=True, window="square",
                                    weighting="softmax_topk"),
        input_hw=lambda orig_hw, patch=8: tuple(orig_hw), score_size="native",
        init_labels=_nearest_init, decode_labels=_nearest_decode,
        first_output=lambda first_mask, out_hw: np.array(first_mask, dtype=np.uint8)))
    davis = make_synthetic_davis(str(tmp_path / "davis"), n_sequences=1, n_frames=7, hw=HW, n_objects=2)
    cache = build_cache(tmp_path / "cache" / "patch8-toy_square", davis, "toy_square")
    out = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["propagate", "--cache", cache, "--davis", davis, "--out", str(out),
                                      "--protocol", "toy_square", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    run = out / "patch8-toy_square__t0.2_k3_r2_L2"
    seq = load_davis(davis)[0]
    from lpcache.cache import CachedSequence

    with CachedSequence(os.path.join(cache, f"{seq.name}.h5")) as cached:
        feats = cached.read()
    first = read_mask(seq.annotation_paths[0])
    expected = _square_softmax_reference(feats, first, toy.setting())
    for t, frame in enumerate(seq.frame_names):
        assert np.array_equal(read_mask(str(run / seq.name / f"{frame}.png")), expected[t]), t
