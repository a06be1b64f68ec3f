"""Atomic file writes, contained paths and space reservation.

Writes go beside the target as `<name>.<host>-<pid>-<random>.partial`, then are renamed. Each writer gets
its own temporary name, so two processes writing the same file never rename each other's half-written
file; the last complete rename wins. Names ending in `.partial` are never read as results. A stale
partial is deleted only when it was written on this host by a process that is no longer running (a pid
means nothing on another host of a shared file system; old `<pid>-<random>` names have no host and are
left alone).

    ensure_inside(path, root, what)   -> real path; InputError when `path` resolves outside `root`
    reserve_file_space(fd, nbytes)    claim bytes (posix_fallocate, or a checked zero-fill where it is absent)
"""
import contextlib
import errno
import glob
import json
import os
import re
import socket
import uuid

from .errors import InputError

PARTIAL_SUFFIX = ".partial"
_CHUNK = 1 << 20


def host_tag() -> str:
    """This host's name with anything outside [A-Za-z0-9_.-] replaced by '_' (for partial-file names)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"


def partial_path(path):
    """A temporary name beside `path`, unique to this writer: `<path>.<host>-<pid>-<random>.partial`."""
    return f"{path}.{host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _partial_owner(tag):
    """(host, pid) of a partial's tag `<host>-<pid>-<8 hex>`; None for old or unparseable names."""
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)-([0-9]+)-[0-9a-f]{8}", tag)
    return (match.group(1), int(match.group(2))) if match else None


def remove_stale_partials(path):
    """Delete partials of `path` written on this host by processes that are no longer running."""
    path = os.fspath(path)
    here = host_tag()
    for stale in glob.glob(glob.escape(path) + ".*" + PARTIAL_SUFFIX):
        owner = _partial_owner(stale[len(path) + 1: -len(PARTIAL_SUFFIX)])
        if owner is None or owner[0] != here:
            continue
        pid = owner[1]
        if pid != os.getpid() and not _pid_alive(pid):
            with contextlib.suppress(FileNotFoundError):
                os.remove(stale)


def ensure_inside(path, root, what="path", allow_root=False) -> str:
    """The real path of `path`; InputError when it does not resolve inside `root` (symlinks resolved).

    Call it before writing or removing anything under a folder the user named (run folders, caches):
    `ensure_inside(os.path.join(out, name), out, "output folder")`. `root` itself is refused unless
    `allow_root`.
    """
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    inside = os.path.commonpath([real, real_root]) == real_root
    if not inside or (real == real_root and not allow_root):
        raise InputError(f"{path}: {what} resolves to {real}, outside {real_root}")
    return real


def _named(exc: OSError, path, tmp) -> OSError:
    """The same error naming `path` (the file the user asked for) instead of nothing or the partial."""
    if exc.filename not in (None, tmp):
        return exc
    renamed = OSError(exc.errno, exc.strerror or str(exc), path)
    renamed.__cause__ = exc
    return renamed


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path; on success rename it to `path`, on failure remove it.

    An OSError that names no file (disk full from a library, for one) is re-raised naming `path`.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    remove_stale_partials(path)
    tmp = partial_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        named = _named(exc, path, tmp)
        if named is exc:
            raise
        raise named from exc
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


def reserve_file_space(fd, nbytes):
    """Make the file behind `fd` at least `nbytes` long with its blocks really claimed.

    Uses `os.posix_fallocate`; where it is missing (macOS, Windows) or the file system does not support it,
    checks the free space (`os.fstatvfs`) and writes zeros in 1 MiB chunks. Raises OSError(ENOSPC) when
    the space is not there.
    """
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, 0, nbytes)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
                raise
    size = os.fstat(fd).st_size
    missing = nbytes - size
    if missing <= 0:
        return
    if hasattr(os, "fstatvfs"):
        stats = os.fstatvfs(fd)
        if stats.f_bavail * stats.f_frsize < missing:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    os.lseek(fd, size, os.SEEK_SET)
    zeros = bytes(_CHUNK)
    while missing > 0:
        written = os.write(fd, zeros[:min(missing, _CHUNK)])
        missing -= written
