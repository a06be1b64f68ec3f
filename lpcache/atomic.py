"""Atomic file writes: write beside the target as `<name>.<pid>-<random>.partial`, then rename.

Each writer gets its own temporary name, so two processes writing the same file never rename each
other's half-written file; the last complete rename wins. Names ending in `.partial` are never read
as results and are safe to delete.
"""
import contextlib
import json
import os
import uuid

PARTIAL_SUFFIX = ".partial"


def partial_path(path):
    """A temporary name beside `path`, unique to this writer."""
    return f"{path}.{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path; on success rename it to `path`, on failure remove it."""
    path = os.fspath(path)
    tmp = partial_path(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_bytes_atomic(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def write_text_atomic(path, text):
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj):
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
