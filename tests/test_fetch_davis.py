"""fetch-davis: a small archive made from real DAVIS frames; local unpacking, checks, resumable download.

The download tests serve the archive from an http.server on 127.0.0.1 (loopback only) that answers a bounded
number of requests and stops by itself.
"""
import hashlib
import http.server
import os
import threading
import time
import zipfile

import pytest
from click.testing import CliRunner

from lpcache.cli import cli
from lpcache.davis import load_davis, read_mask
from lpcache.errors import InputError
from lpcache.fetch_davis import DownloadError, download, fetch_davis, verify_archive

SEQUENCES = ("blackswan", "car-shadow")
FRAMES = 3


def _add_tree(archive, davis_root, prefix="DAVIS/", sequences=SEQUENCES, annotations=True):
    for seq in sequences:
        for t in range(FRAMES):
            archive.write(os.path.join(davis_root, "JPEGImages", "480p", seq, f"{t:05d}.jpg"),
                          f"{prefix}JPEGImages/480p/{seq}/{t:05d}.jpg")
            if annotations:
                archive.write(os.path.join(davis_root, "Annotations", "480p", seq, f"{t:05d}.png"),
                              f"{prefix}Annotations/480p/{seq}/{t:05d}.png")
    archive.writestr(f"{prefix}ImageSets/2017/val.txt", "".join(s + "\n" for s in sequences))
    archive.writestr(f"{prefix}README.md", "small DAVIS archive for tests\n")


@pytest.fixture
def small_archive(tmp_path, davis_root):
    """A zip shaped like DAVIS-2017-trainval-480p.zip (top-level DAVIS/), 2 sequences x 3 real frames."""
    path = tmp_path / "DAVIS-2017-trainval-480p.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        _add_tree(archive, davis_root)
    return str(path)


def _assert_davis_root(root, davis_root):
    sequences = load_davis(str(root))
    assert [s.name for s in sequences] == list(SEQUENCES)
    for sequence in sequences:
        assert len(sequence.image_paths) == FRAMES
        source = os.path.join(davis_root, "JPEGImages", "480p", sequence.name, "00002.jpg")
        assert open(sequence.image_paths[2], "rb").read() == open(source, "rb").read()
        assert read_mask(sequence.annotation_paths[0]).max() == 1


def test_local_archive_via_cli(tmp_path, small_archive, davis_root):
    root = tmp_path / "davis"
    result = CliRunner().invoke(cli, ["fetch-davis", str(root), "--archive", small_archive, "--no-progress"])
    assert result.exit_code == 0, result.output
    _assert_davis_root(root, davis_root)
    assert os.path.isfile(small_archive)  # a user's archive is never deleted
    assert not os.path.exists(root / ".lpcache-unpack.partial")
    assert (root / "lpcache-fetch.json").is_file()
    # A second run leaves the root alone.
    marker = root / "JPEGImages" / "480p" / "blackswan" / "00000.jpg"
    before = marker.stat().st_mtime_ns
    assert CliRunner().invoke(cli, ["fetch-davis", str(root), "--archive", small_archive]).exit_code == 0
    assert marker.stat().st_mtime_ns == before


def test_sha256_checked(tmp_path, small_archive):
    good = hashlib.sha256(open(small_archive, "rb").read()).hexdigest()
    fetch_davis(tmp_path / "ok", archive=small_archive, sha256=good, progress=False)
    result = CliRunner().invoke(cli, ["fetch-davis", str(tmp_path / "bad"), "--archive", small_archive,
                                      "--sha256", "0" * 64])
    assert result.exit_code == 1
    assert "sha256" in result.output and "does not match" in result.output
    assert not os.path.exists(tmp_path / "bad" / "JPEGImages")


def test_path_traversal_refused(tmp_path, davis_root):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        _add_tree(archive, davis_root, sequences=SEQUENCES[:1])
        archive.writestr("DAVIS/../../escaped.txt", "outside")
    with pytest.raises(InputError, match=r"unsafe entry .*escaped.txt.*'\.\.'"):
        fetch_davis(tmp_path / "root", archive=str(path), progress=False)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "root" / "JPEGImages").exists()


def test_absolute_path_and_symlink_refused(tmp_path, davis_root):
    path = tmp_path / "abs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        _add_tree(archive, davis_root, sequences=SEQUENCES[:1])
        archive.writestr("/tmp/absolute.txt", "outside")
    with pytest.raises(InputError, match="absolute path"):
        verify_archive(str(path))
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as archive:
        _add_tree(archive, davis_root, sequences=SEQUENCES[:1])
        info = zipfile.ZipInfo("DAVIS/JPEGImages/480p/link")
        info.external_attr = (0o120777 << 16)
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(InputError, match="symbolic link"):
        verify_archive(str(link))


def test_corrupt_and_wrong_archives(tmp_path, small_archive, davis_root):
    data = bytearray(open(small_archive, "rb").read())
    corrupt = tmp_path / "corrupt.zip"
    # Flip bytes inside the first stored JPEG (after its local header): the CRC check must catch it.
    start = data.index(b"\xff\xd8\xff")
    data[start + 500:start + 510] = bytes(b ^ 0xFF for b in data[start + 500:start + 510])
    corrupt.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt entry|not a valid zip"):
        fetch_davis(tmp_path / "r1", archive=str(corrupt), progress=False)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(open(small_archive, "rb").read()[:-200])
    with pytest.raises(InputError, match="not a valid zip|unreadable"):
        verify_archive(str(truncated))
    no_annotations = tmp_path / "images-only.zip"
    with zipfile.ZipFile(no_annotations, "w") as archive:
        _add_tree(archive, davis_root, annotations=False)
    with pytest.raises(InputError, match="not a DAVIS archive.*Annotations/480p"):
        verify_archive(str(no_annotations))
    with pytest.raises(InputError, match="archive not found"):
        verify_archive(str(tmp_path / "missing.zip"))


class _Server:
    """Serves one file on 127.0.0.1 with HTTP Range support; can cut the first response short."""

    def __init__(self, payload, cut_first_at=None, honour_range=True, max_requests=6, lifetime_s=30):
        self.payload = payload
        self.requests = []  # (Range header or None, bytes sent)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                header = self.headers.get("Range")
                start = 0
                if header and honour_range:
                    start = int(header.split("=")[1].split("-")[0])
                    if start >= len(payload):
                        self.send_response(416)
                        self.end_headers()
                        server.requests.append((header, 0))
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
                else:
                    self.send_response(200)
                body = payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if cut_first_at is not None and not server.requests:
                    body = body[:cut_first_at]
                    self.close_connection = True
                self.wfile.write(body)
                server.requests.append((header, len(body)))

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 0.2
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/DAVIS-2017-trainval-480p.zip"
        deadline = time.monotonic() + lifetime_s

        def serve():  # bounded: a fixed number of requests or a deadline, whichever comes first
            while len(self.requests) < max_requests and time.monotonic() < deadline and not self.stopped:
                self.httpd.handle_request()
            self.httpd.server_close()

        self.stopped = False
        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopped = True
        self.thread.join(timeout=5)


def test_interrupted_download_resumes_with_range(tmp_path, small_archive, davis_root):
    payload = open(small_archive, "rb").read()
    cut = len(payload) // 3
    server = _Server(payload, cut_first_at=cut)
    try:
        root = tmp_path / "davis"
        with pytest.raises(DownloadError, match="re-run to resume"):
            fetch_davis(root, url=server.url, progress=False)
        partial = root / "DAVIS-2017-trainval-480p.zip.partial"
        assert partial.stat().st_size == cut
        assert not (root / "JPEGImages").exists()
        # The CLI re-run asks only for the missing bytes and finishes.
        result = CliRunner().invoke(cli, ["fetch-davis", str(root), "--url", server.url, "--no-progress",
                                          "--keep-archive"])
        assert result.exit_code == 0, result.output
        assert server.requests == [(None, cut), (f"bytes={cut}-", len(payload) - cut)]
        assert open(root / "DAVIS-2017-trainval-480p.zip", "rb").read() == payload
        assert not partial.exists()
        _assert_davis_root(root, davis_root)
    finally:
        server.stop()


def test_server_without_range_restarts_cleanly(tmp_path, small_archive):
    payload = open(small_archive, "rb").read()
    server = _Server(payload, honour_range=False)
    try:
        dest = tmp_path / "a.zip"
        (tmp_path / "a.zip.partial").write_bytes(b"garbage that must not stay in front")
        download(server.url, str(dest), progress=False)
        assert open(dest, "rb").read() == payload
        assert server.requests[0][1] == len(payload)
    finally:
        server.stop()


def test_downloaded_archive_removed_after_unpack(tmp_path, small_archive, davis_root):
    payload = open(small_archive, "rb").read()
    server = _Server(payload)
    try:
        root = tmp_path / "davis"
        fetch_davis(root, url=server.url, progress=False)
        _assert_davis_root(root, davis_root)
        assert not (root / "DAVIS-2017-trainval-480p.zip").exists()
    finally:
        server.stop()


def test_unreachable_server_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(cli, ["fetch-davis", str(tmp_path / "r"), "--url", f"http://127.0.0.1:{port}/x.zip"])
    assert result.exit_code == 1
    assert "cannot connect" in result.output


def test_bare_root_archive_and_stray_top_folder(tmp_path, davis_root):
    """An archive without the DAVIS/ folder, or with an extra top-level folder (e.g. __MACOSX/), still unpacks."""
    path = tmp_path / "bare.zip"
    with zipfile.ZipFile(path, "w") as archive:
        _add_tree(archive, davis_root, prefix="")
    fetch_davis(tmp_path / "bare", archive=str(path), progress=False)
    _assert_davis_root(tmp_path / "bare", davis_root)
    mac = tmp_path / "mac.zip"
    with zipfile.ZipFile(mac, "w") as archive:
        _add_tree(archive, davis_root)
        archive.writestr("__MACOSX/DAVIS/._README.md", "resource fork")
    fetch_davis(tmp_path / "mac", archive=str(mac), progress=False)
    _assert_davis_root(tmp_path / "mac", davis_root)
    assert not (tmp_path / "mac" / "__MACOSX").exists()


# ------------------------------------------------------------------ never delete or replace what it did not create
def _tree_snapshot(folder):
    """{relative path: bytes or 'dir'} of everything under folder."""
    out = {}
    for base, dirs, files in os.walk(folder):
        for name in dirs:
            out[os.path.relpath(os.path.join(base, name), folder)] = "dir"
        for name in files:
            path = os.path.join(base, name)
            out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out


def test_existing_files_are_a_conflict_unless_force(tmp_path, small_archive, davis_root):
    root = tmp_path / "davis"
    (root / "JPEGImages" / "mine").mkdir(parents=True)
    (root / "JPEGImages" / "mine" / "notes.txt").write_text("my own work")
    (root / "README.md").write_text("my readme")
    before = _tree_snapshot(root)
    result = CliRunner().invoke(cli, ["fetch-davis", str(root), "--archive", small_archive, "--no-progress"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {root / 'JPEGImages'}: already exists")
    assert "--force" in lines[0] and "1 more" in lines[0]  # README.md too
    assert _tree_snapshot(root) == before  # nothing replaced, no staging folder left
    result = CliRunner().invoke(cli, ["fetch-davis", str(root), "--archive", small_archive, "--no-progress",
                                      "--force"])
    assert result.exit_code == 0, result.output
    _assert_davis_root(root, davis_root)
    assert (root / "README.md").read_text() == "small DAVIS archive for tests\n"
    assert not (root / "JPEGImages" / "mine").exists()


def test_a_foreign_record_file_is_a_conflict(tmp_path, small_archive):
    root = tmp_path / "davis"
    root.mkdir()
    (root / "lpcache-fetch.json").write_text("not written by fetch-davis")
    with pytest.raises(InputError, match=r"lpcache-fetch\.json: already exists"):
        fetch_davis(root, archive=small_archive, progress=False)
    assert (root / "lpcache-fetch.json").read_text() == "not written by fetch-davis"
    assert sorted(os.listdir(root)) == ["lpcache-fetch.json"]


def test_an_archive_the_user_put_in_root_is_never_deleted(tmp_path, small_archive, davis_root):
    root = tmp_path / "davis"
    root.mkdir()
    mine = root / "DAVIS-2017-trainval-480p.zip"
    mine.write_bytes(open(small_archive, "rb").read())
    # Nobody listens on this port: the file in ROOT is taken as the download and nothing is fetched.
    fetch_davis(root, url="http://127.0.0.1:9/DAVIS-2017-trainval-480p.zip", progress=False)
    _assert_davis_root(root, davis_root)
    assert mine.read_bytes() == open(small_archive, "rb").read()


def test_own_download_and_marker_removed_after_unpack(tmp_path, small_archive):
    payload = open(small_archive, "rb").read()
    server = _Server(payload)
    try:
        root = tmp_path / "davis"
        fetch_davis(root, url=server.url, progress=False)
        assert not [n for n in os.listdir(root) if n.startswith("DAVIS-2017-trainval-480p.zip")]
    finally:
        server.stop()


def test_non_file_at_the_archive_path_or_staging_path_is_refused(tmp_path, small_archive):
    root = tmp_path / "davis"
    (root / "DAVIS-2017-trainval-480p.zip").mkdir(parents=True)
    (root / "DAVIS-2017-trainval-480p.zip" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match=r"DAVIS-2017-trainval-480p\.zip: exists and is not the archive"):
        fetch_davis(root, url="http://127.0.0.1:9/DAVIS-2017-trainval-480p.zip", progress=False)
    assert (root / "DAVIS-2017-trainval-480p.zip" / "keep.txt").read_text() == "mine"
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("keep")
    root2 = tmp_path / "davis2"
    root2.mkdir()
    (root2 / ".lpcache-unpack.partial").symlink_to(other, target_is_directory=True)
    with pytest.raises(InputError, match=r"\.lpcache-unpack\.partial: exists and is not fetch-davis's staging"):
        fetch_davis(root2, archive=small_archive, progress=False)
    assert (other / "precious.txt").read_text() == "keep"
