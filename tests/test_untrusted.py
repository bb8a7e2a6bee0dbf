"""Untrusted input files: archive bombs in folder: sources, pickles in the cifar10 source."""
from __future__ import annotations

import hashlib
import io
import pickle
import struct
import subprocess
import sys
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from conftest import assert_one_line_error, image_tree, raylab, tar_of, zip_of
from raylab.data import archive as untrusted_reader
from raylab.data import sources as data
from raylab.data.sources import DataError

ZEROS_MB = 100  # compresses to ~100 KB; over the default 64 MiB per-member limit


@pytest.fixture
def tree(tmp_path) -> Path:
    """train/ and test/ with 2 classes x 2 tiny PNGs each: a valid folder source."""
    image_tree(tmp_path / "tree", ("ant", "cat"), train=2, test=2)
    return tmp_path / "tree"


def fingerprint(path: Path) -> tuple:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns


def load(archive: Path, root: Path):
    return data.load_dataset(f"folder:{archive}", root)


@pytest.fixture
def opened(monkeypatch):
    """Names of archive members whose data was read (spies on the stdlib, which still runs)."""
    names = []
    real_zip, real_tar = zipfile.ZipFile.open, tarfile.TarFile.extractfile

    def zip_open(self, member, mode="r", *a, **k):
        if mode == "r":  # not the writes that build the test archives
            names.append(getattr(member, "filename", member))
        return real_zip(self, member, mode, *a, **k)

    def tar_extract(self, member):
        names.append(getattr(member, "name", member))
        return real_tar(self, member)

    monkeypatch.setattr(zipfile.ZipFile, "open", zip_open)
    monkeypatch.setattr(tarfile.TarFile, "extractfile", tar_extract)
    return names


def assert_one_line(e: pytest.ExceptionInfo, *parts: str) -> None:
    text = str(e.value)
    assert "\n" not in text
    for part in parts:
        assert part in text, (part, text)


# ============================================================ archive bombs

def test_zip_member_over_default_limit_refused_before_any_decompression(tree, tmp_path, opened):
    archive = zip_of(tree, tmp_path / "bomb.zip", {"train/cat/zeros.png": bytes(ZEROS_MB << 20)})
    assert archive.stat().st_size < 1 << 20  # the bomb: ~100 KB on disk, 100 MiB declared
    before = fingerprint(archive)
    with pytest.raises(DataError) as e:
        load(archive, tmp_path / "root")
    assert_one_line(e, str(archive), "train/cat/zeros.png", "100.0 MiB", "64.0 MiB limit per file",
                    "RAYLAB_MAX_MEMBER_MB")
    assert opened == []  # central directory only: not even the valid images were inflated
    assert fingerprint(archive) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.zip", "root", "tree"]  # nothing extracted
    assert not list((tmp_path / "root").rglob("*.npy"))  # and nothing cached


def test_tar_gz_member_over_default_limit_refused_before_it_is_read(tree, tmp_path, opened):
    archive = tar_of(tree, tmp_path / "bomb.tar.gz", {"train/cat/zeros.png": bytes(ZEROS_MB << 20)})
    assert archive.stat().st_size < 1 << 20
    before = fingerprint(archive)
    with pytest.raises(DataError) as e:
        load(archive, tmp_path / "root")
    assert_one_line(e, str(archive), "train/cat/zeros.png", "100.0 MiB", "64.0 MiB limit per file")
    assert opened and "train/cat/zeros.png" not in opened  # images before it were read, the bomb was not
    assert fingerprint(archive) == before
    assert not list((tmp_path / "root").rglob("*.npy"))


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_total_limit_from_env_and_stream_stopped_early(tree, tmp_path, monkeypatch, opened, kind):
    """3000 members of 1 KiB (~3 MiB) against a 1 MiB total: refused; the stream stops near 1 MiB."""
    extra = {f"train/cat/pad{i:04d}.txt": bytes(1024) for i in range(3000)}  # not images: skipped once read
    archive = (zip_of if kind == "zip" else tar_of)(tree, tmp_path / f"many.{kind}", extra)
    monkeypatch.setenv("RAYLAB_MAX_ARCHIVE_MB", "1")
    with pytest.raises(DataError) as e:
        load(archive, tmp_path / "root")
    assert_one_line(e, str(archive), "over 1.0 MiB uncompressed in total", "RAYLAB_MAX_ARCHIVE_MB")
    if kind == "zip":
        assert opened == []
    else:  # stopped once the running total passed 1 MiB: ~1000 of the 3000 pads read, no more
        assert 900 < len(opened) < 1100
    # Positive control: the same archive within the default limits loads (it is the limit that refused).
    monkeypatch.delenv("RAYLAB_MAX_ARCHIVE_MB")
    ds = load(archive, tmp_path / "root")
    assert ds.classes == ["ant", "cat"] and len(ds.train_y) == 4


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_member_limit_from_env(tree, tmp_path, monkeypatch, kind):
    archive = (zip_of if kind == "zip" else tar_of)(tree, tmp_path / f"d.{kind}", {"README": bytes(300_000)})
    monkeypatch.setenv("RAYLAB_MAX_MEMBER_MB", "0.25")  # 262,144 bytes
    with pytest.raises(DataError) as e:
        load(archive, tmp_path / "root")
    assert_one_line(e, "member README declares 300,000 bytes", "262,144 bytes limit per file")
    monkeypatch.setenv("RAYLAB_MAX_MEMBER_MB", "0.5")
    assert len(load(archive, tmp_path / "root").test_y) == 4


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_member_count_bounded(tree, tmp_path, monkeypatch, kind):
    archive = (zip_of if kind == "zip" else tar_of)(tree, tmp_path / f"d.{kind}", {f"x/{i}": b"" for i in range(60)})
    monkeypatch.setattr(untrusted_reader, "MAX_MEMBERS", 50)
    with pytest.raises(DataError) as e:
        load(archive, tmp_path / "root")
    assert_one_line(e, str(archive), "more than 50 members", "folder:DIR")
    monkeypatch.setattr(untrusted_reader, "MAX_MEMBERS", 100)
    assert len(load(archive, tmp_path / "root").train_y) == 4


def test_tar_pax_header_bomb_refused_before_tarfile_reads_it(tree, tmp_path, monkeypatch):
    """tarfile reads a pax header's payload whole before yielding the next member: check its header."""
    archive = tmp_path / "pax.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        tf.add(tree, arcname=".")
        info = tarfile.TarInfo("train/cat/meta.txt")
        info.pax_headers = {"comment": "x" * (2 << 20)}  # a 2 MiB pax record
        tf.addfile(info, io.BytesIO(b""))
    monkeypatch.setenv("RAYLAB_MAX_MEMBER_MB", "1")
    with pytest.raises(DataError) as e:
        load(archive, tmp_path / "root")
    assert_one_line(e, str(archive), "PaxHeader", "1.0 MiB limit per file")
    monkeypatch.delenv("RAYLAB_MAX_MEMBER_MB")
    assert len(load(archive, tmp_path / "root").train_y) == 4  # legitimately large pax headers still load


def test_zip_member_understating_its_size_inflates_only_that_much(tree, tmp_path):
    """A central directory may claim 10 bytes for 200 MiB of deflated zeros: read no more than declared."""
    archive = zip_of(tree, tmp_path / "lie.zip", {"train/cat/lie.png": bytes(200 << 20)})
    blob = bytearray(archive.read_bytes())
    entry = blob.rfind(b"PK\x01\x02")  # the central directory entry of the last member written
    struct.pack_into("<I", blob, entry + 24, 10)  # its uncompressed size field
    archive.write_bytes(blob)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="cannot read .*lie.png"):  # CRC of 10 bytes fails
            load(archive, tmp_path / "root")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, peak  # zf.read() would inflate up to 1 GiB (here 200 MiB) before trimming


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "nan"])
def test_bad_limit_env_is_one_line_error(tree, tmp_path, monkeypatch, value):
    archive = zip_of(tree, tmp_path / "d.zip")
    monkeypatch.setenv("RAYLAB_MAX_ARCHIVE_MB", value)
    with pytest.raises(DataError) as e:
        load(archive, tmp_path / "root")
    assert_one_line(e, "RAYLAB_MAX_ARCHIVE_MB", "not a positive number of MiB")


# ============================================================ CIFAR pickles

class Payload:
    """Unpickling this creates `marker`: proof that a file was unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


PEAK_OF_LOAD = """
import sys
from pathlib import Path
from raylab.data import archive
from raylab.data import sources as data


def kib(field):
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status[field].split()[0])


if sys.argv[3] == "no bound":  # the control: what decoding that image costs
    archive.MAX_IMAGE_PIXELS = 10**9
Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS: importing torch peaks higher
before = kib("VmRSS")
try:
    data.load_dataset("folder:" + sys.argv[1], sys.argv[2])
except data.DataError as e:
    print(e, file=sys.stderr)
print(kib("VmHWM") - before)  # KiB the load added at its peak
"""


def test_image_claiming_gigapixels_refused_before_decoding(tree, tmp_path):
    """A 200 KB PNG decodes to 108 MB of pixels: the header is checked first. Proven by
    the loading process's peak memory against a control that decodes the same file."""
    Image.new("RGB", (6000, 6000)).save(tree / "train" / "cat" / "huge.png")
    assert (tree / "train" / "cat" / "huge.png").stat().st_size < 1_000_000
    archive = zip_of(tree, tmp_path / "px.zip")
    with pytest.raises(DataError) as e:
        load(archive, tmp_path / "root")
    assert_one_line(e, "huge.png", "6000x6000", "resize it")

    def peak(mode: str) -> int:
        proc = subprocess.run([sys.executable, "-c", PEAK_OF_LOAD, str(archive), str(tmp_path / mode), mode],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.split()[-1]) << 10

    refused, decoded = peak("bound"), peak("no bound")
    # Decoding holds the 108 MB image and its 108 MB tobytes() copy at once; refusing holds neither.
    assert decoded > 150 << 20 and refused < 20 << 20, (refused, decoded)


def malicious_cifar(root: Path, marker: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR_FILES:
        (folder / name).write_bytes(pickle.dumps(Payload(marker)))
    return folder


def test_payload_control(tmp_path):
    """The payload works: if raylab unpickled a batch, the marker would exist."""
    folder = malicious_cifar(tmp_path, tmp_path / "control")
    pickle.loads((folder / "data_batch_1").read_bytes())
    assert (tmp_path / "control").exists()


def test_cifar10_bad_checksums_refused_without_unpickling(tmp_path):
    marker = tmp_path / "UNPICKLED"
    folder = malicious_cifar(tmp_path, marker)
    with pytest.raises(DataError) as e:
        data.load_dataset("cifar10", tmp_path, download=False)
    assert_one_line(e, str(folder), "data_batch_1", "batches.meta",
                    "do not match the official CIFAR-10 release checksums", "only loaded when they match",
                    f"delete {folder}", "folder:")
    assert not marker.exists()
    assert not list((tmp_path / "cache").rglob("*.npy"))


def test_cifar10_bad_checksums_cli_exit_2(tmp_path):
    marker = tmp_path / "UNPICKLED"
    malicious_cifar(tmp_path, marker)
    proc = raylab("train", "--data", "cifar10", "--data-root", tmp_path, "--no-download", "--out", tmp_path / "out",
                  "--epochs", "1", "--quiet")
    assert_one_line_error(proc, "do not match the official CIFAR-10 release checksums")
    assert not marker.exists()


def test_cifar10_missing_batch_named(tmp_path):
    marker = tmp_path / "UNPICKLED"
    folder = malicious_cifar(tmp_path, marker)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError) as e:
        data.load_dataset("cifar10", tmp_path, download=False)
    assert_one_line(e, "incomplete (no data_batch_3)", f"delete {folder}")
    assert not marker.exists()
