"""The HDF5 feature cache, format version 1 (documented in README.md, "Feature cache format").

Layout: `<cache>/<backbone_id>/<seq>.h5` plus `<cache>/<backbone_id>/manifest.json`.
Each file holds `feats` (T, h, w, C), float16 or float32, one chunk per frame, L2-normalised over C
in float32 before the cast; `frames` (the T frame names); and attributes describing how it was made.
A file is written as `<seq>.h5.<pid>-<random>.partial` and renamed when complete, so a file named `<seq>.h5` is
always complete.
"""
import json
import os
from typing import Dict, Iterator, List, Optional

import h5py
import numpy as np

from .atomic import partial_path, remove_stale_partials, write_json_atomic
from .errors import InputError

FORMAT = "lpcache.features"
FORMAT_VERSION = 1
SUFFIX = ".h5"
MANIFEST = "manifest.json"
DTYPES = {"float16": np.float16, "float32": np.float32}
#: Attributes that must match between a cache and the request that wants to reuse it.
IDENTITY_ATTRS = ("backbone", "checkpoint_sha256", "input_hw", "dtype", "protocol")


def l2_normalize(feats: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """L2-normalise over the last axis in float32 (as `F.normalize(dim=C, eps=1e-12)`)."""
    feats = np.asarray(feats, dtype=np.float32)
    norm = np.sqrt(np.sum(feats * feats, axis=-1, keepdims=True, dtype=np.float32))
    return feats / np.maximum(norm, eps)


def _json_attr(value):
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return value


def _decode_attr(value):
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _reserve_space(tmp_path, nbytes, margin=1 << 20):
    """Fail early, with a clean OSError, when the file system cannot take `nbytes` more.

    HDF5 handles a write that fails half-way (disk full, file-size limit) badly: closing such a file can
    crash the process. So the space is first claimed with posix_fallocate on a scratch file, then released.
    """
    probe = tmp_path + ".reserve"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            os.posix_fallocate(fd, 0, nbytes + margin)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InputError(f"{tmp_path}: cannot reserve {(nbytes + margin) / 1e6:.1f} MB for the cache file "
                         f"({exc.strerror or exc})") from None
    finally:
        if os.path.exists(probe):
            os.remove(probe)


class SequenceWriter:
    """Stream one sequence's features into a `<seq>.h5.*.partial` file; `close()` renames it to `<seq>.h5`.

    Used as a context manager: on an exception the partial file is removed.
    Features are given in float32, un-normalised or normalised; the writer L2-normalises them.
    """

    def __init__(self, backbone_dir, seq, frames: List[str], grid_hw, channels, dtype="float16",
                 attrs: Optional[Dict] = None):
        if dtype not in DTYPES:
            raise InputError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
        os.makedirs(backbone_dir, exist_ok=True)
        self.path = os.path.join(backbone_dir, seq + SUFFIX)
        remove_stale_partials(self.path)  # left by a killed run; a live concurrent writer's file is kept
        self.tmp_path = partial_path(self.path)
        self.n_frames = len(frames)
        self.written = 0
        height, width = grid_hw
        _reserve_space(self.tmp_path, self.n_frames * height * width * channels * np.dtype(dtype).itemsize)
        self._file = h5py.File(self.tmp_path, "w")
        self._feats = self._file.create_dataset(
            "feats", shape=(self.n_frames, height, width, channels), dtype=DTYPES[dtype],
            chunks=(1, height, width, channels))
        self._file.create_dataset("frames", data=np.array(frames, dtype=h5py.string_dtype()))
        base = {"format": FORMAT, "format_version": FORMAT_VERSION, "sequence": seq,
                "grid_hw": [height, width], "dtype": dtype, "l2_normalized": True}
        for key, value in {**(attrs or {}), **base}.items():
            self._file.attrs[key] = _json_attr(value)

    def write(self, feats: np.ndarray):
        """Append a block of frames (n, h, w, C)."""
        feats = l2_normalize(feats)
        end = self.written + feats.shape[0]
        if end > self.n_frames:
            raise ValueError(f"{self.tmp_path}: {end} frames written, {self.n_frames} expected")
        self._feats[self.written:end] = feats.astype(self._feats.dtype)
        self.written = end

    def close(self):
        """Mark the file complete, close it and rename it into place (on failure, remove it)."""
        if self.written != self.n_frames:
            raise ValueError(f"{self.tmp_path}: {self.written} of {self.n_frames} frames written")
        try:
            self._file.attrs["complete"] = True
            handle, self._file = self._file, None
            handle.close()
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self):
        """Close (once, ignoring errors from a broken file) and remove the partial file."""
        handle, self._file = self._file, None
        if handle is not None:
            try:
                handle.close()
            except Exception:  # a failed write (e.g. disk full) can leave the handle unclosable
                pass
        if os.path.exists(self.tmp_path):
            os.remove(self.tmp_path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def write_sequence(backbone_dir, seq, feats: np.ndarray, frames: List[str], dtype="float16",
                   attrs: Optional[Dict] = None) -> str:
    """Write a whole sequence at once (tests, small data). Returns the file path."""
    feats = np.asarray(feats)
    with SequenceWriter(backbone_dir, seq, frames, feats.shape[1:3], feats.shape[3], dtype, attrs) as writer:
        writer.write(feats)
    return writer.path


class CachedSequence:
    """Read access to one `<seq>.h5`. Use as a context manager or call `close()`."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise InputError(f"{self.path}: cache file not found")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise InputError(f"{self.path}: not a readable HDF5 file ({exc})") from None
        self.attrs = {k: _decode_attr(v) for k, v in self._file.attrs.items()}
        problem = _format_problem(self.attrs, self._file)
        if problem:
            self._file.close()
            raise InputError(f"{self.path}: {problem}")
        self.feats = self._file["feats"]
        self.frames = [_decode_attr(f) for f in self._file["frames"][()]]

    @property
    def n_frames(self) -> int:
        return self.feats.shape[0]

    @property
    def grid_hw(self):
        return tuple(self.feats.shape[1:3])

    @property
    def channels(self) -> int:
        return self.feats.shape[3]

    def read(self, start=0, stop=None, dtype=np.float32) -> np.ndarray:
        """Frames start..stop-1 as an array (n, h, w, C)."""
        return np.asarray(self.feats[start:stop], dtype=dtype)

    def iter_frames(self, dtype=np.float32) -> Iterator[np.ndarray]:
        for index in range(self.n_frames):
            yield np.asarray(self.feats[index], dtype=dtype)

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _format_problem(attrs, handle) -> Optional[str]:
    if attrs.get("format") != FORMAT:
        return f"not an lpcache feature file (format attribute {attrs.get('format')!r})"
    if attrs.get("format_version") != FORMAT_VERSION:
        return f"cache format version {attrs.get('format_version')!r}, this lpcache reads {FORMAT_VERSION}"
    if "feats" not in handle or "frames" not in handle:
        return "missing dataset 'feats' or 'frames'"
    if handle["feats"].ndim != 4 or handle["frames"].shape[0] != handle["feats"].shape[0]:
        return f"feats shape {handle['feats'].shape} does not match {handle['frames'].shape[0]} frame names"
    if not attrs.get("complete", False):
        return "incomplete file (no 'complete' attribute)"
    return None


def open_sequence(path) -> CachedSequence:
    return CachedSequence(path)


def verify_sequence(path, read_data=True) -> Optional[str]:
    """None if the file is a complete, readable cache file; else the problem in words."""
    try:
        with CachedSequence(path) as seq:
            if read_data:
                for index in range(seq.n_frames):
                    block = np.asarray(seq.feats[index], dtype=np.float32)
                    if not np.all(np.isfinite(block)):
                        return f"frame {index}: non-finite features"
    except InputError as exc:
        return str(exc).split(": ", 1)[-1]
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        return f"unreadable data ({exc})"
    return None


class FeatureCache:
    """One backbone's folder of a cache: `<cache>/<backbone_id>/`."""

    def __init__(self, backbone_dir):
        self.root = os.fspath(backbone_dir)
        if not os.path.isdir(self.root):
            raise InputError(f"{self.root}: cache folder not found")

    @property
    def backbone_id(self) -> str:
        return os.path.basename(os.path.normpath(self.root))

    def path(self, seq) -> str:
        return os.path.join(self.root, seq + SUFFIX)

    @property
    def sequences(self) -> List[str]:
        """Sequences with a complete file, sorted."""
        return sorted(n[: -len(SUFFIX)] for n in os.listdir(self.root) if n.endswith(SUFFIX))

    def has(self, seq) -> bool:
        return os.path.isfile(self.path(seq))

    def open(self, seq) -> CachedSequence:
        if not self.has(seq):
            raise InputError(f"{self.path(seq)}: sequence {seq} is not in the cache {self.root}")
        return CachedSequence(self.path(seq))

    def manifest(self) -> Dict:
        path = os.path.join(self.root, MANIFEST)
        if not os.path.isfile(path):
            return {}
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)

    def update_manifest(self):
        """Rewrite manifest.json from the complete files present."""
        entries = {}
        common = None
        for seq in self.sequences:
            with self.open(seq) as cached:
                entries[seq] = {"frames": cached.n_frames, "grid_hw": list(cached.grid_hw),
                                "channels": cached.channels, "bytes": os.path.getsize(cached.path)}
                identity = {k: cached.attrs.get(k) for k in IDENTITY_ATTRS}
                common = identity if common is None else common
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "backbone_id": self.backbone_id,
                    "attrs": common or {}, "sequences": entries}
        write_json_atomic(os.path.join(self.root, MANIFEST), manifest)
        return manifest


def attr_differences(found: Dict, wanted: Dict, keys=IDENTITY_ATTRS) -> List[str]:
    """Human-readable differences between a file's attributes and a request's."""
    out = []
    for key in keys:
        if key in wanted and found.get(key) != wanted[key]:
            out.append(f"{key}: cache has {found.get(key)!r}, request has {wanted[key]!r}")
    return out


def backbone_dirs(cache_dir) -> List[str]:
    """The backbone folders of a cache (or the folder itself when it holds `.h5` files)."""
    cache_dir = os.fspath(cache_dir)
    if not os.path.isdir(cache_dir):
        raise InputError(f"{cache_dir}: cache folder not found")
    if any(n.endswith(SUFFIX) or (SUFFIX + "." in n and n.endswith(".partial")) for n in os.listdir(cache_dir)):
        return [cache_dir]
    return sorted(os.path.join(cache_dir, n) for n in os.listdir(cache_dir)
                  if os.path.isdir(os.path.join(cache_dir, n)))


def describe_cache(cache_dir) -> List[Dict]:
    """Per backbone folder: sequences, frames, grid, channels, dtype, protocol, bytes, partial files."""
    out = []
    for folder in backbone_dirs(cache_dir):
        cache = FeatureCache(folder)
        record = {"backbone_id": cache.backbone_id, "path": folder, "sequences": 0, "frames": 0, "bytes": 0,
                  "grids": set(), "channels": set(), "dtypes": set(), "protocols": set(), "unreadable": [],
                  "partial": sorted(n for n in os.listdir(folder) if n.endswith(".partial"))}
        for seq in cache.sequences:
            try:
                with cache.open(seq) as cached:
                    record["frames"] += cached.n_frames
                    record["grids"].add(tuple(cached.grid_hw))
                    record["channels"].add(cached.channels)
                    record["dtypes"].add(cached.attrs.get("dtype"))
                    record["protocols"].add(cached.attrs.get("protocol"))
            except InputError:
                record["unreadable"].append(seq)
                continue
            record["sequences"] += 1
            record["bytes"] += os.path.getsize(cache.path(seq))
        for key in ("grids", "channels", "dtypes", "protocols"):
            record[key] = sorted(record[key], key=str)
        out.append(record)
    return out


def verify_cache(cache_dir) -> List[tuple]:
    """(path, problem or None) for every `.h5` file of the cache; every frame is read."""
    results = []
    for folder in backbone_dirs(cache_dir):
        for name in sorted(os.listdir(folder)):
            if name.endswith(SUFFIX):
                path = os.path.join(folder, name)
                results.append((path, verify_sequence(path, read_data=True)))
    return results
