"""The HDF5 feature cache, format version 1 (documented in README.md, "Feature cache format").

Layout: `<cache>/<backbone_id>/<seq>.h5` plus `<cache>/<backbone_id>/manifest.json`.
Each file holds `feats` (T, h, w, C), float16 or float32, one chunk per frame, L2-normalised over C
in float32 before the cast; `frames` (the T frame names); and attributes describing how it was made.
A file is written as `<seq>.h5.<host>-<pid>-<random>.partial` and renamed when complete, so a file named
`<seq>.h5` is always complete.

A cache is checked where it is read and written:
- writing refuses non-finite or un-normalisable features, naming the file and the frame;
- opening a file checks that `feats` agrees with the `grid_hw`, `backbone` (its `channels`) and `dtype`
  attributes and that `backbone_id` is there (metadata only, no data read);
- every frame read (`CachedSequence.frame`, `read`, `iter_frames`) is checked for NaN/Inf;
- `FeatureCache.validate` checks that the files of one folder agree on identity and belong to the folder;
- `verify_sequence` / `lpcache cache verify` also read every value and check the norms (`NORM_TOLERANCE`).
"""
import json
import os
from typing import Dict, Iterator, List, Optional

import h5py
import numpy as np

from .atomic import ensure_inside, partial_path, remove_stale_partials, reserve_file_space, write_json_atomic
from .errors import InputError

FORMAT = "lpcache.features"
FORMAT_VERSION = 1
SUFFIX = ".h5"
MANIFEST = "manifest.json"
DTYPES = {"float16": np.float16, "float32": np.float32}
#: Attributes that must match between a cache and the request that wants to reuse it.
IDENTITY_ATTRS = ("backbone", "checkpoint_sha256", "input_hw", "dtype", "protocol")
#: What every file of one backbone folder must share. `input_hw`, `grid_hw` and `orig_hw` are not in it:
#: they differ per sequence in a native-protocol cache (DAVIS-2017 has 854, 910 and 1152 wide videos).
FOLDER_IDENTITY = ("backbone", "checkpoint_sha256", "protocol", "dtype", "channels")
#: Largest |L2 norm - 1| accepted for a stored feature vector, by storage dtype.
#: float16 rounds each component to within 2^-11 of its value (relative), so a unit vector's stored norm is
#: within 2^-11 ~ 4.9e-4 of 1 (plus <= 2e-6 from subnormal components, C <= 4096); 1e-2 leaves a 20x margin and
#: still refuses anything that was not normalised. float32: F.normalize's norm and division are within a few ulp
#: (~1e-6 for C <= 4096 with torch's cascaded sums); 1e-4 is a 100x margin. A zero vector is always refused.
NORM_TOLERANCE = {"float16": 1e-2, "float32": 1e-4}


def l2_normalize(feats: np.ndarray) -> np.ndarray:
    """L2-normalise (n, h, w, C) features over C, the seed's way: `F.normalize(dim=1)` (eps 1e-12) in float32
    on the contiguous NCHW tensor, returned as NHWC float32."""
    import torch  # here, not at module level: `lpcache --help` and `lpcache score` never need torch
    import torch.nn.functional as F

    nchw = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()
    return F.normalize(nchw, dim=1).permute(0, 2, 3, 1).numpy()


def unit_norm_problem(block: np.ndarray, tolerance: float) -> Optional[str]:
    """None when every feature vector (last axis) of `block` is finite with |L2 norm - 1| <= tolerance."""
    values = np.asarray(block, dtype=np.float32)
    if not np.all(np.isfinite(values)):
        return "non-finite feature values"
    norms = np.sqrt(np.einsum("...c,...c->...", values, values))  # float32: ~1e-6 here, far below tolerance
    bad = np.abs(norms - 1.0) > tolerance
    if np.any(bad):
        return (f"{int(bad.sum())} feature vectors are not unit length (norms {norms[bad].min():.6g} to "
                f"{norms[bad].max():.6g}, tolerance {tolerance:g}; zero or un-normalisable features)")
    return None


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
    """Fail early, with a clean InputError, when the file system cannot take `nbytes` more.

    HDF5 handles a write that fails half-way (disk full, file-size limit) badly: closing such a file can
    crash the process. So the space is first claimed on a scratch file (`reserve_file_space`), then released.
    """
    probe = tmp_path + ".reserve"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            reserve_file_space(fd, nbytes + margin)
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
    `attrs` may omit `backbone_id` (the folder name is used) and `channels` in `backbone` (taken from the
    data; a plain name becomes `{"name": ..., "channels": ...}`), so every file can be checked on open.
    """

    def __init__(self, backbone_dir, seq, frames: List[str], grid_hw, channels, dtype="float16",
                 attrs: Optional[Dict] = None):
        if dtype not in DTYPES:
            raise InputError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
        os.makedirs(backbone_dir, exist_ok=True)
        self.path = os.path.join(backbone_dir, seq + SUFFIX)
        ensure_inside(self.path, backbone_dir, "cache file")
        attrs = _complete_attrs(self.path, attrs, backbone_dir, channels)
        remove_stale_partials(self.path)  # left by a killed run; a live concurrent writer's file is kept
        self.tmp_path = partial_path(self.path)
        self.frames = list(frames)
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
        for key, value in {**attrs, **base}.items():
            self._file.attrs[key] = _json_attr(value)

    def write(self, feats: np.ndarray, normalized: bool = False):
        """Append a block of frames (n, h, w, C) in float32.

        `normalized=True`: the features are already L2-normalised (extract does it on the network's output,
        as the seed does) and are stored as they are (cast to the file's dtype). Otherwise they are
        normalised here (`l2_normalize`). Either way every frame must be finite with unit norms
        (`NORM_TOLERANCE["float32"]`), or InputError names the file and the frame; nothing is written then.
        """
        feats = np.asarray(feats, dtype=np.float32) if normalized else l2_normalize(feats)
        end = self.written + feats.shape[0]
        if end > self.n_frames:
            raise ValueError(f"{self.tmp_path}: {end} frames written, {self.n_frames} expected")
        for offset in range(feats.shape[0]):
            problem = unit_norm_problem(feats[offset], NORM_TOLERANCE["float32"])
            if problem:
                index = self.written + offset
                raise InputError(f"{self.path}: frame {index} ({self.frames[index]}): {problem}; not written")
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


def _complete_attrs(path, attrs: Optional[Dict], backbone_dir, channels) -> Dict:
    """`attrs` with `backbone_id` (default: the folder name) and `backbone["channels"]` filled in."""
    attrs = dict(attrs or {})
    attrs.setdefault("backbone_id", os.path.basename(os.path.normpath(os.fspath(backbone_dir))))
    backbone = attrs.get("backbone")
    if not isinstance(backbone, dict):
        backbone = {"name": attrs["backbone_id"] if backbone is None else backbone}
    backbone = dict(backbone)
    if backbone.setdefault("channels", channels) != channels:
        raise InputError(f"{path}: backbone attribute says {backbone['channels']} channels, "
                         f"the features have {channels}")
    attrs["backbone"] = backbone
    return attrs


def write_sequence(backbone_dir, seq, feats: np.ndarray, frames: List[str], dtype="float16",
                   attrs: Optional[Dict] = None) -> str:
    """Write a whole sequence at once (tests, small data). Returns the file path."""
    feats = np.asarray(feats)
    with SequenceWriter(backbone_dir, seq, frames, feats.shape[1:3], feats.shape[3], dtype, attrs) as writer:
        writer.write(feats)
    return writer.path


class CachedSequence:
    """Read access to one `<seq>.h5`. Use as a context manager or call `close()`.

    Opening checks the format and that `feats` agrees with the file's own attributes (no data is read);
    every frame read is checked for NaN/Inf (InputError naming the file and the frame).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise InputError(f"{self.path}: cache file not found")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise InputError(f"{self.path}: not a readable HDF5 file ({exc})") from None
        try:
            self.attrs = {k: _decode_attr(v) for k, v in self._file.attrs.items()}
            problem = _format_problem(self.attrs, self._file) or _shape_problem(self.attrs, self._file["feats"])
            if problem:
                raise InputError(f"{self.path}: {problem}")
            self.feats = self._file["feats"]
            self.frames = [_decode_attr(f) for f in self._file["frames"][()]]
        except InputError:
            self._file.close()
            raise
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            self._file.close()
            raise InputError(f"{self.path}: unreadable cache file ({exc})") from None

    @property
    def n_frames(self) -> int:
        return self.feats.shape[0]

    @property
    def grid_hw(self):
        return tuple(self.feats.shape[1:3])

    @property
    def channels(self) -> int:
        return self.feats.shape[3]

    def frame(self, index: int, dtype=np.float32) -> np.ndarray:
        """Frame `index` as an array (h, w, C); InputError naming the file and frame if it holds NaN/Inf."""
        block = np.asarray(self.feats[index], dtype=dtype)
        self._check_finite(block[None], index)
        return block

    def read(self, start=0, stop=None, dtype=np.float32) -> np.ndarray:
        """Frames start..stop-1 as an array (n, h, w, C), checked like `frame`."""
        indices = range(self.n_frames)[slice(start, stop)]
        block = np.asarray(self.feats[start:stop], dtype=dtype)
        if len(indices):
            self._check_finite(block, indices[0])
        return block

    def iter_frames(self, dtype=np.float32) -> Iterator[np.ndarray]:
        for index in range(self.n_frames):
            yield self.frame(index, dtype)

    def _check_finite(self, block: np.ndarray, first: int):
        finite = np.isfinite(block).reshape(block.shape[0], -1).all(axis=1)
        if not finite.all():
            index = first + int(np.argmin(finite))
            raise InputError(f"{self.path}: frame {index} ({self.frames[index]}): non-finite feature values")

    def identity(self) -> Dict:
        """The attributes every file of one backbone folder must share (`FOLDER_IDENTITY`)."""
        return {key: self.channels if key == "channels" else self.attrs.get(key) for key in FOLDER_IDENTITY}

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


def _shape_problem(attrs, feats) -> Optional[str]:
    """A contradiction between the `feats` dataset (shape, dtype) and the file's attributes, in words."""
    backbone_id = attrs.get("backbone_id")
    if not isinstance(backbone_id, str) or not backbone_id:
        return "no backbone_id attribute"
    grid_hw = attrs.get("grid_hw")
    if not isinstance(grid_hw, list) or list(feats.shape[1:3]) != grid_hw:
        return f"feats shape {tuple(feats.shape)} contradicts grid_hw {grid_hw!r}"
    backbone = attrs.get("backbone")
    channels = backbone.get("channels") if isinstance(backbone, dict) else None
    if channels != feats.shape[3]:
        return (f"feats shape {tuple(feats.shape)} contradicts the backbone attribute's channels {channels!r}"
                if isinstance(backbone, dict) else f"backbone attribute {backbone!r} is not a JSON object")
    dtype = attrs.get("dtype")
    if dtype not in DTYPES or feats.dtype != np.dtype(DTYPES[dtype]):
        return f"feats dtype {feats.dtype} contradicts the dtype attribute {dtype!r}"
    return None


def open_sequence(path) -> CachedSequence:
    return CachedSequence(path)


def verify_sequence(path, read_data=True) -> Optional[str]:
    """None if the file is a complete, consistent cache file; else the problem in words.

    With `read_data`, every frame is read: values must be finite and every feature vector's L2 norm within
    `NORM_TOLERANCE[dtype]` of 1 (zero vectors are refused).
    """
    try:
        with CachedSequence(path) as seq:
            if read_data:
                tolerance = NORM_TOLERANCE[seq.attrs["dtype"]]
                for index in range(seq.n_frames):
                    problem = unit_norm_problem(seq.frame(index), tolerance)
                    if problem:
                        return f"frame {index} ({seq.frames[index]}): {problem}"
    except InputError as exc:
        return str(exc)[len(os.fspath(path)) + 2:] if str(exc).startswith(os.fspath(path) + ": ") else str(exc)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        return f"unreadable data ({exc})"
    return None


def identity_problem(reference: Dict, identity: Dict, reference_path) -> Optional[str]:
    """The first `FOLDER_IDENTITY` attribute in which `identity` differs from `reference`, in words."""
    for key in FOLDER_IDENTITY:
        if identity.get(key) != reference.get(key):
            return (f"{key} {_shown(identity.get(key))} differs from {_shown(reference.get(key))} in "
                    f"{reference_path} (the files of one cache folder must agree)")
    return None


def _shown(value) -> str:
    """An attribute value in a message: JSON (sorted keys) for dicts and lists, repr otherwise."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else repr(value)


def _membership_problem(backbone_id, seq, attrs) -> Optional[str]:
    """A file that does not belong in folder `backbone_id` under the name `<seq>.h5`, in words."""
    if attrs.get("backbone_id") != backbone_id:
        return (f"backbone_id {attrs.get('backbone_id')!r} differs from its folder's {backbone_id!r} "
                f"(a file from another cache?)")
    if attrs.get("sequence", seq) != seq:
        return f"holds sequence {attrs.get('sequence')!r}, not {seq!r}"
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

    def validate(self, sequences=None) -> Dict[str, Dict]:
        """{seq: attrs} of the files asked for (default: all); InputError naming the first file that is
        inconsistent, from another folder, or disagrees with the first file on `FOLDER_IDENTITY`.

        Opens every file (attributes and shapes only, no feature values read). Sizes (`input_hw`, `grid_hw`,
        `orig_hw`) may differ between sequences.
        """
        names = self.sequences if sequences is None else list(sequences)
        out: Dict[str, Dict] = {}
        reference = None
        for seq in names:
            with self.open(seq) as cached:
                attrs, identity = dict(cached.attrs), cached.identity()
            path = self.path(seq)
            problem = _membership_problem(self.backbone_id, seq, attrs)
            if problem is None and reference is not None:
                problem = identity_problem(reference[1], identity, reference[0])
            if problem:
                raise InputError(f"{path}: {problem}")
            reference = reference or (path, identity)
            out[seq] = attrs
        return out

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


def _holds_cache(folder) -> bool:
    return any(n.endswith(SUFFIX) or n == MANIFEST for n in os.listdir(folder))


def resolve_backbone_dir(path) -> str:
    """The backbone folder meant by `path`: the folder itself when it holds `<seq>.h5` files, else the one
    backbone folder below it (an extract `--cache` root). InputError when there are none or several."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise InputError(f"{path}: cache folder not found")
    if _holds_cache(path):
        return path
    found = sorted(os.path.join(path, n) for n in os.listdir(path)
                   if os.path.isdir(os.path.join(path, n)) and _holds_cache(os.path.join(path, n)))
    if not found:
        raise InputError(f"{path}: no feature files (<seq>.h5) in it or in a backbone folder below it")
    if len(found) > 1:
        raise InputError(f"{path}: holds {len(found)} backbone folders, name one of them: {', '.join(found)}")
    return found[0]


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
    """(path, problem or None) for every `.h5` file of the cache: every frame is read (`verify_sequence`),
    and each file must belong to its folder and agree with the folder's first sound file on identity."""
    results = []
    for folder in backbone_dirs(cache_dir):
        backbone_id = os.path.basename(os.path.normpath(folder))
        reference = None
        for name in sorted(os.listdir(folder)):
            if not name.endswith(SUFFIX):
                continue
            path = os.path.join(folder, name)
            problem = verify_sequence(path, read_data=True)
            if problem is None:
                with CachedSequence(path) as cached:
                    attrs, identity = cached.attrs, cached.identity()
                problem = _membership_problem(backbone_id, name[: -len(SUFFIX)], attrs)
                if problem is None and reference is not None:
                    problem = identity_problem(reference[1], identity, reference[0])
                if problem is None and reference is None:
                    reference = (path, identity)
            results.append((path, problem))
    return results
