"""Atomic file writes: write beside the target as `<name>.<pid>-<random>.partial`, then rename.

Each writer gets its own temporary name, so two processes writing the same file never rename each
other's half-written file; the last complete rename wins. Names ending in `.partial` are never read
as results and are safe to delete.
"""
import contextlib
import glob
import json
import os
import uuid

PARTIAL_SUFFIX = ".partial"


def partial_path(path):
    """A temporary name beside `path`, unique to this writer."""
    return f"{path}.{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(path):
    """Delete `<path>.<pid>-<random>.partial` files left by writers that are no longer running."""
    for stale in glob.glob(glob.escape(os.fspath(path)) + ".*" + PARTIAL_SUFFIX):
        tag = stale[len(os.fspath(path)) + 1: -len(PARTIAL_SUFFIX)]
        pid = tag.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(stale)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path; on success rename it to `path`, on failure remove it."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    remove_stale_partials(path)
    tmp = partial_path(path)
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
