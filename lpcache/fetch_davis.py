"""Fetch the official DAVIS 2017 trainval 480p archive and unpack it as a DAVIS root.

The download is resumable: bytes go to `<archive>.partial`, and a re-run asks the server for the rest
(HTTP Range). The archive is checked (zip CRCs, expected DAVIS layout, optional sha256) and unpacked
member by member into a staging folder inside ROOT (names with `..`, absolute paths and symlinks are
refused), then moved into place, so ROOT never holds a half-unpacked dataset.

fetch-davis never deletes or replaces what it did not create: a file or folder in ROOT that the archive
would replace (JPEGImages, Annotations, ImageSets, README.md, ...) is refused, naming it, unless `force`;
an archive the user put into ROOT is never deleted. It removes only its own download (after unpacking,
unless kept), its `.partial` download and its staging folder.
"""
import http.client
import json
import logging
import os
import posixpath
import shutil
import stat
import urllib.error
import urllib.request
import zipfile
from typing import List, Optional

from tqdm import tqdm

from .errors import InputError, LpcacheError
from .provenance import provenance, sha256_file
from .atomic import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

DAVIS_URL = "https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip"
#: Folders a DAVIS root must have after unpacking.
LAYOUT = ("JPEGImages/480p/", "Annotations/480p/", "ImageSets/2017/")
STAGING = ".lpcache-unpack.partial"
#: The provenance record fetch-davis writes into ROOT.
RECORD = "lpcache-fetch.json"
#: Written beside an archive that fetch-davis downloaded (only such an archive is deleted after unpacking).
DOWNLOAD_MARKER = ".lpcache-download"
CHUNK = 1 << 16


class DownloadError(LpcacheError):
    """The transfer failed; the `.partial` file is kept so that a re-run resumes."""


def download(url, dest, timeout=60.0, chunk_size=CHUNK, progress=True) -> str:
    """Download `url` to `dest`, resuming from `dest.partial` if it exists. Returns `dest`.

    An existing file `dest` is taken as the finished download; anything else there is refused.
    """
    if os.path.isfile(dest):
        log.info("%s: already downloaded", dest)
        return dest
    if os.path.lexists(dest):
        raise InputError(f"{dest}: exists and is not the archive; move it away (fetch-davis never replaces it)")
    partial = dest + ".partial"
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    have = os.path.getsize(partial) if os.path.isfile(partial) else 0
    request = urllib.request.Request(url, headers={"User-Agent": "lpcache-fetch-davis"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the partial file is whole
            os.replace(partial, dest)
            return dest
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url}: cannot connect ({getattr(exc, 'reason', exc)})") from None
    with response:
        resumed = have and response.status == 206
        if have and not resumed:
            log.warning("%s: server ignored the range request; downloading from the start", url)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        mode = "ab" if resumed else "wb"
        received = have
        with open(partial, mode) as handle, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                 desc=os.path.basename(dest), disable=not progress) as bar:
            try:
                while True:
                    block = response.read(chunk_size)
                    if not block:
                        break
                    handle.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(f"{url}: transfer interrupted after {received} bytes ({exc}); "
                                    f"re-run to resume from {partial}") from None
            handle.flush()
            os.fsync(handle.fileno())
    if total is not None and received != total:
        raise DownloadError(f"{url}: got {received} of {total} bytes; re-run to resume from {partial}")
    os.replace(partial, dest)
    return dest


def _archive_prefix(names: List[str]) -> str:
    """The folder holding ImageSets/2017/ in the archive: 'DAVIS/' for the official zip, '' for a bare root."""
    marker = "ImageSets/2017/"
    prefixes = sorted({n[:n.index(marker)] for n in names if marker in n}, key=len)
    return prefixes[0] if prefixes else ""


def _unsafe_reason(info: zipfile.ZipInfo) -> Optional[str]:
    name = info.filename
    if name.startswith("/") or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "'..' in path"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    return None


def verify_archive(path, sha256=None) -> str:
    """Check a DAVIS archive; returns the top-level prefix to strip (e.g. 'DAVIS/'). Raises InputError."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: archive not found")
    if sha256:
        digest = sha256_file(path)
        if digest.lower() != sha256.lower():
            raise InputError(f"{path}: sha256 {digest} does not match the expected {sha256}")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            for info in infos:
                reason = _unsafe_reason(info)
                if reason:
                    raise InputError(f"{path}: unsafe entry {info.filename!r} ({reason})")
            bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        raise InputError(f"{path}: not a valid zip archive ({exc})") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: unreadable archive ({exc})") from None
    if bad is not None:
        raise InputError(f"{path}: corrupt entry {bad!r} (CRC mismatch)")
    names = [i.filename for i in infos]
    prefix = _archive_prefix(names)
    missing = [d for d in LAYOUT if not any(n.startswith(prefix + d) for n in names)]
    if missing:
        raise InputError(f"{path}: not a DAVIS archive (no {', '.join(prefix + d for d in missing)})")
    return prefix


def _members(archive: zipfile.ZipFile, prefix) -> List[zipfile.ZipInfo]:
    return [i for i in archive.infolist() if i.filename.startswith(prefix) and i.filename != prefix]


def top_level_names(path, prefix) -> List[str]:
    """The files and folders an archive puts directly into ROOT (e.g. Annotations, ImageSets, README.md)."""
    with zipfile.ZipFile(path) as archive:
        return sorted({i.filename[len(prefix):].split("/", 1)[0] for i in _members(archive, prefix)} - {""})


def _is_own_record(path) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle).get("stage") == "fetch-davis"
    except (OSError, ValueError, AttributeError):
        return False


def conflicts(root, names) -> List[str]:
    """Paths in ROOT that unpacking `names` would replace (fetch-davis did not create them)."""
    found = [os.path.join(root, n) for n in names if os.path.lexists(os.path.join(root, n))]
    record = os.path.join(root, RECORD)
    if os.path.lexists(record) and not _is_own_record(record):
        found.append(record)
    return found


def _staging_folder(root) -> str:
    """ROOT/.lpcache-unpack.partial, emptied if an interrupted run left it (it is fetch-davis's own)."""
    staging = os.path.join(root, STAGING)
    if os.path.islink(staging) or (os.path.lexists(staging) and not os.path.isdir(staging)):
        raise InputError(f"{staging}: exists and is not fetch-davis's staging folder; move it away")
    if os.path.isdir(staging):
        shutil.rmtree(staging)
    os.makedirs(staging)
    return staging


def _extract(path, prefix, staging, root):
    staging_real = os.path.realpath(staging)
    with zipfile.ZipFile(path) as archive:
        members = _members(archive, prefix)
        for info in tqdm(members, desc="unpack", unit="file", disable=len(members) < 100):
            relative = info.filename[len(prefix):]
            target = os.path.realpath(os.path.join(staging, *posixpath.normpath(relative).split("/")))
            if not target.startswith(staging_real + os.sep):
                raise InputError(f"{path}: entry {info.filename!r} would land outside {root}")
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink, CHUNK)


def unpack_archive(path, root, prefix, force=False) -> List[str]:
    """Extract the archive's DAVIS tree into `root` (staging folder, then move). Returns the top-level names.

    An existing file or folder of the same name in `root` is refused (InputError naming it) unless `force`,
    which replaces it. Only the staging folder is ever removed otherwise.
    """
    tops = top_level_names(path, prefix)
    clashes = conflicts(root, tops)
    if clashes and not force:
        raise InputError(f"{clashes[0]}: already exists and fetch-davis would replace it; move it away or use "
                         f"--force to replace it" + (f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""))
    staging = _staging_folder(root)
    try:
        _extract(path, prefix, staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for name in sorted(os.listdir(staging)):
        destination = os.path.join(root, name)
        if os.path.isdir(destination) and not os.path.islink(destination):
            shutil.rmtree(destination)  # only reached with force (checked above)
        elif os.path.lexists(destination):
            os.remove(destination)
        os.replace(os.path.join(staging, name), destination)
    os.rmdir(staging)
    return tops


def is_davis_root(root) -> bool:
    return all(os.path.isdir(os.path.join(root, d)) for d in LAYOUT) and \
        os.path.isfile(os.path.join(root, "ImageSets", "2017", "val.txt"))


def fetch_davis(root, archive=None, url=DAVIS_URL, sha256=None, keep_archive=False, force=False,
                progress=True) -> str:
    """Make `root` a DAVIS 2017 root from a local `archive` or by downloading `url`. Returns `root`.

    Resumable: a finished download is reused, an interrupted one continues; a root that already has
    the layout is left alone unless `force`. Files in ROOT that the archive would replace are refused
    unless `force`; the archive is deleted after unpacking only if fetch-davis downloaded it.
    """
    root = os.fspath(root)
    if is_davis_root(root) and not force:
        log.info("%s: already a DAVIS root; nothing to do (use --force to unpack again)", root)
        return root
    os.makedirs(root, exist_ok=True)
    downloaded = archive is None
    if downloaded:
        archive = os.path.join(root, posixpath.basename(url.split("?", 1)[0]) or "davis.zip")
        marker = archive + DOWNLOAD_MARKER
        if not os.path.isfile(archive):  # a file already there without the marker is the user's
            download(url, archive, progress=progress)
            write_text_atomic(marker, url + "\n")
    prefix = verify_archive(archive, sha256)
    tops = unpack_archive(archive, root, prefix, force=force)
    if not is_davis_root(root):
        raise InputError(f"{archive}: unpacked, but {root} still lacks the DAVIS layout")
    record = provenance(stage="fetch-davis", source=url if downloaded else os.path.abspath(archive),
                        archive_sha256=sha256_file(archive), unpacked=tops)
    write_json_atomic(os.path.join(root, RECORD), record)
    if downloaded and os.path.isfile(marker):
        if not keep_archive:
            os.remove(archive)
        os.remove(marker)
    log.info("%s: DAVIS root ready (%s)", root, ", ".join(tops))
    return root
