"""What produced an output: versions, host, time. Every output file records this."""
import datetime
import hashlib
import importlib.metadata
import platform
import sys


#: Distribution names of the libraries whose behaviour changes results.
_DISTRIBUTIONS = {"lpcache": "lpcache", "numpy": "numpy", "torch": "torch", "timm": "timm", "h5py": "h5py",
                  "cv2": "opencv-python", "PIL": "pillow", "skimage": "scikit-image"}


def versions():
    """Versions of lpcache and the libraries whose behaviour changes results (read from package metadata,
    without importing them)."""
    out = {"python": sys.version.split()[0]}
    for name, distribution in _DISTRIBUTIONS.items():
        out[name] = _version(distribution)
    return out


def _version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance(**extra):
    """A JSON-able dict: versions, host and time, plus whatever the caller adds."""
    record = {
        "versions": versions(),
        "host": platform.node(),
        "platform": platform.platform(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    record.update(extra)
    return record


def sha256_file(path, chunk_size=1 << 20):
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()
