"""Extraction throughput on this machine: frames/s, and the share of time outside the forward pass.

For each backbone, on the first N frames of a real DAVIS sequence (seed protocol, 480 x 880):
  decode   - JPEG decode + seed resize/re-encode per frame, serial, in this process;
  forward  - forward passes alone on pre-decoded batches (BatchForward, incl. normalisation, copy to CPU);
  write    - SequenceWriter alone on the same features (L2-normalise, cast, HDF5 write), serial;
  pipeline - `extract()` into a temporary cache (DataLoader workers + background writer), its frame loop
             timed (model build and input checks excluded; they are printed as setup).
Printed: frames/s of each, write / forward (what writing would add if it were not overlapped), and the
pipeline's overhead over forward alone, (pipeline - forward) / forward.

    python benchmarks/bench_extract.py --davis ../shared/data/davis2016-val [--frames 48] [--num-workers 2]
    python benchmarks/bench_extract.py --device cuda --amp --sequence blackswan   # GPU, autocast forward

On CUDA, forward passes are warmed up with one full batch (cuDNN algorithm choice) before timing; every
timed forward ends with the copy to the host, so its clock already waits for the GPU.
"""
import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout

from lpcache.backbones import create
from lpcache.cache import SequenceWriter
from lpcache.extraction import BatchForward, extract
from lpcache.transforms import prepare_frame


def subset_root(davis_root, sequence, n_frames, folder):
    """A DAVIS root of symlinks to the first n_frames frames of one sequence."""
    source = os.path.join(davis_root, "JPEGImages", "480p", sequence)
    available = len([n for n in os.listdir(source) if n.endswith(".jpg")])
    if n_frames > available:
        raise SystemExit(f"{source}: {available} frames, {n_frames} asked for (--frames)")
    image_dir = os.path.join(folder, "JPEGImages", "480p", sequence)
    os.makedirs(image_dir)
    for t in range(n_frames):
        os.symlink(os.path.join(davis_root, "JPEGImages", "480p", sequence, f"{t:05d}.jpg"),
                   os.path.join(image_dir, f"{t:05d}.jpg"))
    os.makedirs(os.path.join(folder, "ImageSets", "2017"))
    with open(os.path.join(folder, "ImageSets", "2017", "val.txt"), "w") as handle:
        handle.write(sequence + "\n")
    return folder


def bench(backbone, root, sequence, n_frames, batch_size, num_workers, device, amp=False):
    model, spec, _ = create(backbone, random_init=backbone != "efficientnet_lite0")
    model = model.to(device)
    paths = [os.path.join(root, "JPEGImages", "480p", sequence, f"{t:05d}.jpg") for t in range(n_frames)]
    started = time.perf_counter()
    frames = [torch.from_numpy(prepare_frame(p, "seed", spec.stride)) for p in paths]
    decode = time.perf_counter() - started

    forward = BatchForward(model, spec, device, amp)
    on_cuda = torch.device(device).type == "cuda"
    forward(torch.stack(frames[:batch_size if on_cuda else 1]))  # warm-up
    if on_cuda:
        torch.cuda.synchronize(device)
    forward.seconds = 0.0
    feats = [forward(torch.stack(frames[i:i + batch_size])) for i in range(0, n_frames, batch_size)]
    forward_s = forward.seconds

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        names = [f"{t:05d}" for t in range(n_frames)]
        with SequenceWriter(tmp, sequence, names, feats[0].shape[1:3], spec.channels, "float16") as writer:
            for block in feats:
                writer.write(block)
        write_s = time.perf_counter() - started
        result = extract(davis_root=root, cache_dir=os.path.join(tmp, "cache"), backbone=backbone,
                         random_init=backbone != "efficientnet_lite0", batch_size=batch_size,
                         num_workers=num_workers, device=device, amp=amp, progress=False)
    pipeline_s = result.loop_seconds  # the frame loop; model build and checks excluded
    print(f"{backbone:20s} frames {n_frames}  batch {batch_size}  workers {num_workers}  device {device}"
          + ("  amp" if forward.amp else ""))
    print(f"  decode   {n_frames / decode:7.2f} frames/s  ({decode / n_frames * 1000:.0f} ms/frame, serial)")
    print(f"  forward  {n_frames / forward_s:7.2f} frames/s")
    print(f"  write    {n_frames / write_s:7.2f} frames/s  -> write / forward = {write_s / forward_s:.1%}")
    print(f"  pipeline {n_frames / pipeline_s:7.2f} frames/s  -> overhead over forward alone "
          f"{(pipeline_s - forward_s) / forward_s:+.1%}; time outside the forward pass in the pipeline "
          f"{1 - result.forward_seconds / pipeline_s:.1%}; setup {result.seconds - pipeline_s:.1f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--davis", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                        "davis2016-val"))
    parser.add_argument("--sequence", default="cows")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbones", default="efficientnet_lite0,imagenet18")
    parser.add_argument("--amp", action="store_true", help="autocast the forward pass (CUDA only)")
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}")
    if torch.device(args.device).type == "cuda":
        print(f"device {args.device}: {torch.cuda.get_device_name(torch.device(args.device))}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        root = subset_root(os.path.abspath(args.davis), args.sequence, args.frames, os.path.join(tmp, "davis"))
        for backbone in args.backbones.split(","):
            bench(backbone, root, args.sequence, args.frames, args.batch_size, args.num_workers, args.device,
                  args.amp)


if __name__ == "__main__":
    main()
