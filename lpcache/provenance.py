"""What produced an output: versions, host, time. Every output file records this."""
import datetime
import hashlib
import platform
import sys


def versions():
    """Versions of lpcache and the libraries whose behaviour changes results."""
    import numpy

    out = {"lpcache": _version("lpcache"), "python": sys.version.split()[0], "numpy": numpy.__version__}
    for name in ("torch", "timm", "h5py", "cv2", "PIL", "skimage"):
        out[name] = _version(name)
    return out


def _version(module_name):
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    return getattr(module, "__version__", None)


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
