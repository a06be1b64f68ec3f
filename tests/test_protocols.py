"""The protocol registry: built-in protocols, their switches and defaults, parameter overrides."""
import numpy as np
import pytest

from lpcache import protocols
from lpcache.errors import InputError
from lpcache.protocols import base, seed


def test_builtin_protocols_are_registered_once_in_order():
    names = protocols.names()
    assert names[:2] == ["seed", "native"] and {"dino", "vfs"} <= set(names)
    assert len(names) == len(set(names))
    with pytest.raises(ValueError, match="registered twice"):
        protocols.register(protocols.get("seed"))


def test_unknown_protocol_names_the_known_ones():
    with pytest.raises(InputError, match="expected one of seed, native"):
        protocols.get("crw-v2")


def test_switches_differ_where_the_families_differ():
    seed_p, dino, vfs = (protocols.get(n) for n in ("seed", "dino", "vfs"))
    assert (seed_p.switches.first_frame_masked, dino.switches.first_frame_masked, vfs.switches.first_frame_masked) \
        == (False, True, True)
    assert (seed_p.switches.window, dino.switches.window, vfs.switches.window) == ("circle_lt", "square", "circle_lt")
    assert seed_p.score_size == "input" and dino.score_size == vfs.score_size == "native"
    with pytest.raises(ValueError, match="window 'hexagon'"):
        base.Switches(context="padded_first", first_frame_masked=False, window="hexagon", weighting="softmax_topk")


def test_params_apply_overrides_and_refuse_unknown_names():
    dino = protocols.get("dino")
    assert dino.params(topk=7) == {**dino.defaults, "topk": 7}
    assert protocols.get("seed").params() == {"temperature": 0.7, "topk": 8, "radius": 18, "video_len": 20}
    with pytest.raises(InputError, match="unknown parameter"):
        dino.params(n_last=3)


def test_resize_rules():
    assert protocols.get("seed").input_hw((480, 854), 8) == (480, 880)
    assert protocols.get("native").input_hw((480, 854), 8) == (480, 856)
    assert protocols.get("native").input_hw((480, 854), 16) == (480, 848)
    assert protocols.get("native").input_hw((3, 5), 8) == (8, 8)


def test_seed_reference_follows_the_tie_rule_on_exact_ties():
    # Two frames, 1x4 grid, identical features everywhere: every candidate ties. With k = 1 the stable rule picks
    # candidate 0 of slot 0 (frame 0, position 0), so every cell of frame 1 takes position 0's label.
    feats = np.ones((2, 1, 4, 2), np.float32) / np.sqrt(2)
    first = np.array([[1, 0, 0, 0]] * 8, np.uint8).reshape(8, 4)[:1].repeat(8, 0)  # 8x4 mask, column 0 is object 1
    masks = seed.reference(feats, first, temperature=0.7, topk=1, radius=1.5, video_len=1, out_hw=(8, 4))
    labels = seed.label_init(first, seed.label_ids(first), (1, 4)).reshape(4, -1)
    expected_id = seed.label_ids(first)[int(np.argmax(labels[0]))]
    assert np.all(masks[1] == expected_id)


def test_protocols_command_lists_switches_defaults_and_sources():
    from click.testing import CliRunner

    from lpcache.cli import cli

    result = CliRunner().invoke(cli, ["protocols"])
    assert result.exit_code == 0, result.output
    for name in protocols.names():
        assert f"\n{name}: " in "\n" + result.output
    assert "window square" in result.output and "weighting dino_exp_threshold" in result.output
    assert "temperature 0.1, topk 5, radius 12, video_len 7" in result.output
    assert "reproduces: DINO ViT-S/16" in result.output


def _tiny_davis(root, n_frames=2, hw=(64, 96)):
    import os

    from PIL import Image

    rng = np.random.default_rng(0)
    for kind in ("JPEGImages", "Annotations"):
        os.makedirs(os.path.join(root, kind, "480p", "clip"), exist_ok=True)
    for t in range(n_frames):
        Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(
            os.path.join(root, "JPEGImages", "480p", "clip", f"{t:05d}.jpg"))
    mask = np.zeros(hw, np.uint8)
    mask[16:40, 20:60] = 1
    image = Image.fromarray(mask, mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
    image.save(os.path.join(root, "Annotations", "480p", "clip", "00000.png"))
    os.makedirs(os.path.join(root, "ImageSets", "2017"), exist_ok=True)
    with open(os.path.join(root, "ImageSets", "2017", "val.txt"), "w") as handle:
        handle.write("clip\n")
    return str(root)


def test_extract_under_the_dino_protocol_feeds_dinos_own_input(tmp_path):
    """`lpcache extract --protocol dino`: the network gets dino.prepare_frame's input (DINO's resize rule and
    normalisation), one frame per forward pass with attention computed explicitly as DINO's ViT does (even
    when asked for batches of 4), the cache records the protocol, and propagate runs DINO's rule and defaults."""
    import os

    import torch
    import torch.nn.functional as F
    from PIL import Image

    from lpcache import backbones
    from lpcache.cache import FeatureCache
    from lpcache.extraction import extract
    from lpcache.protocols import dino
    from lpcache.run_propagation import propagate

    root = _tiny_davis(tmp_path / "davis")
    torch.manual_seed(0)
    result = extract(root, str(tmp_path / "cache"), backbone="dino_vits16", random_init=True, protocol="dino",
                     dtype="float32", batch_size=4, num_workers=0, device="cpu", progress=False)
    torch.manual_seed(0)
    model, spec, _ = backbones.create("dino_vits16", random_init=True)
    model.eval()
    for block in model.vit.blocks:        # DINO's attention: softmax(q k^T * scale) v, not the fused kernel
        block.attn.fused_attn = False
    with FeatureCache(result.backbone_dir).open("clip") as cached:
        assert cached.attrs["protocol"] == "dino" and tuple(cached.attrs["input_hw"]) == (480, 704)
        stored = cached.read()
    for t in range(2):
        x = torch.from_numpy(dino.prepare_frame(os.path.join(root, "JPEGImages", "480p", "clip", f"{t:05d}.jpg")))
        with torch.no_grad():
            expected = F.normalize(model(x[None].contiguous()).float(), dim=1).permute(0, 2, 3, 1)[0].numpy()
        assert np.array_equal(stored[t], expected)
    run = propagate(result.backbone_dir, root, str(tmp_path / "runs"), dino.PROTOCOL.setting(), device="cpu",
                    progress=False)
    assert os.path.basename(run) == f"{os.path.basename(result.backbone_dir)}__t0.1_k5_r12_L7"
    first = np.array(Image.open(os.path.join(root, "Annotations", "480p", "clip", "00000.png")))
    expected = dino.reference(torch.from_numpy(stored), first, dino.PROTOCOL.defaults, first.shape)
    for t, mask in enumerate(expected):
        assert np.array_equal(np.array(Image.open(os.path.join(run, "clip", f"{t:05d}.png"))), mask)


def test_every_plugin_protocol_defines_its_preprocessing():
    assert all(protocols.get(n).prepare_frame is not None for n in protocols.names() if n not in ("seed", "native"))
