"""raylab.data.sources: augmentation semantics, normalisation, batching, sources, cache."""
from __future__ import annotations

import io
import os
import tarfile
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from conftest import image_tree, tar_of, zip_of
from raylab.data import batches as batching
from raylab.data import sources as data
from raylab.data.sources import DataError



# ============================================================ augmentation

def coded_image() -> torch.Tensor:
    """(3, 32, 32) uint8 whose every crop/flip is distinct: row, column and a constant code."""
    i = torch.arange(32, dtype=torch.uint8) + 1  # 1..32, never the padding value 0
    return torch.stack([i[:, None].expand(32, 32), i[None, :].expand(32, 32), torch.full((32, 32), 200, dtype=torch.uint8)])


@pytest.fixture(scope="module")
def crop_table():
    """Every outcome of torchvision pad(4) + crop(top, left) + optional hflip -> (top, left, flip)."""
    img, table = coded_image(), {}
    padded = TF.pad(img, [4])
    for top in range(9):
        for left in range(9):
            crop = TF.crop(padded, top, left, 32, 32)
            table[crop.numpy().tobytes()] = (top, left, 0)
            table[TF.hflip(crop).numpy().tobytes()] = (top, left, 1)
    assert len(table) == 162
    return table


def outcomes(batch: torch.Tensor, table) -> list[tuple[int, int, int]]:
    """Map each augmented image to its (top, left, flip); KeyError if it is no crop/flip at all."""
    return [table[img.to(torch.uint8).numpy().tobytes()] for img in batch]


def assert_uniform(values, k: int, n: int) -> None:
    counts = Counter(values)
    assert sorted(counts) == list(range(k))
    expected = n / k
    chi2 = sum((counts[v] - expected) ** 2 / expected for v in range(k))
    assert chi2 < 40, counts  # k-1 <= 8 dof: P(chi2 > 40) < 1e-5


def test_augment_offsets_uniform_zero_padding_and_flip_rate(crop_table):
    n = 9000
    x = coded_image().expand(n, 3, 32, 32).contiguous()
    out = batching.augment_batch(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    got = outcomes(out, crop_table)  # every image is exactly one zero-padded crop/flip
    assert_uniform([t for t, _, _ in got], 9, n)
    assert_uniform([l for _, l, _ in got], 9, n)
    flips = sum(f for _, _, f in got) / n
    assert abs(flips - 0.5) < 0.03
    # padding is zeros: the crop at (0, 0) has 4 zero rows on top and 4 zero columns on the left
    corner = out[[t == 0 and l == 0 and f == 0 for t, l, f in got]][0]
    assert corner[:, :4].eq(0).all() and corner[:, :, :4].eq(0).all() and corner[:, 4:, 4:].ne(0).all()


def test_augment_float_same_as_uint8_and_seeded():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    a = batching.augment_batch(x, torch.Generator().manual_seed(3))
    b = batching.augment_batch(x.float(), torch.Generator().manual_seed(3))
    c = batching.augment_batch(x, torch.Generator().manual_seed(4))
    assert b.dtype == torch.float32 and torch.equal(a.float(), b)
    assert not torch.equal(a, c)


def test_augment_matches_torchvision_in_distribution(crop_table):
    torch.manual_seed(0)
    tv = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])
    img = coded_image()
    theirs = outcomes(torch.stack([tv(img) for _ in range(3000)]), crop_table)
    ours = outcomes(batching.augment_batch(img.expand(3000, 3, 32, 32), torch.Generator().manual_seed(1)), crop_table)
    for i, k in ((0, 9), (1, 9), (2, 2)):  # same support and near-equal frequencies, per parameter
        a, b = Counter(o[i] for o in ours), Counter(o[i] for o in theirs)
        assert sorted(a) == sorted(b) == list(range(k))
        assert max(abs(a[v] - b[v]) for v in range(k)) < 0.06 * 3000 / k * 3


# ====================================================== normalise, batches

def test_normalize_matches_torchvision():
    arr = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    expected = T.Normalize(mean, std)(T.ToTensor()(Image.fromarray(arr)))
    ours = batching.normalize(torch.from_numpy(arr).permute(2, 0, 1)[None], mean, std)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours[0], expected, atol=1e-6, rtol=0)
    half = batching.normalize(torch.from_numpy(arr).permute(2, 0, 1)[None], mean, std, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16


def identity_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is constant (i % 251 + 1, i // 251 + 1, 7), label i: content and label can be matched."""
    i = torch.arange(n)
    x = torch.stack([i % 251 + 1, i // 251 + 1, torch.full_like(i, 7)], 1).to(torch.uint8)
    return x[:, :, None, None].expand(n, 3, 32, 32).contiguous(), i


def ids_of(xb: torch.Tensor) -> torch.Tensor:
    """Recover image ids from normalised (mean 0, std 1) batches via the centre pixel."""
    centre = (xb[:, :, 16, 16] * 255).round().long()
    return (centre[:, 0] - 1) + 251 * (centre[:, 1] - 1)


@pytest.mark.parametrize("augment", [False, True])
def test_train_batches_epoch_alignment_and_determinism(augment):
    x, y = identity_data(600)
    run = lambda seed: list(batching.train_batches(x, y, 64, generator=torch.Generator().manual_seed(seed),  # noqa: E731
                                               augment=augment, mean=(0, 0, 0), std=(1, 1, 1)))
    batches = run(5)
    assert [len(b[1]) for b in batches] == [64] * 9 + [24]  # last partial batch kept
    seen = torch.cat([yb for _, yb in batches])
    assert sorted(seen.tolist()) == list(range(600))  # a permutation: every image once
    assert not torch.equal(seen, torch.arange(600))
    for xb, yb in batches:  # labels travel with their images, through crop and flip
        assert xb.dtype == torch.float32 and torch.equal(ids_of(xb), yb)
    again = run(5)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    assert not torch.equal(torch.cat([yb for _, yb in run(6)]), seen)


def test_train_batches_shards_partition_the_epoch_and_stay_in_step():
    x, y = identity_data(600)
    gens = [torch.Generator().manual_seed(9) for _ in range(2)]
    shards = []
    for rank in range(2):
        for _ in range(2):  # two epochs: the second permutation must agree across ranks too
            ids = torch.cat([yb for _, yb in batching.train_batches(
                x, y, 64, generator=gens[rank], augment=True, mean=0, std=1, shard=(rank, 2))])
        shards.append(ids)
    assert len(shards[0]) == len(shards[1]) == 300
    assert sorted(torch.cat(shards).tolist()) == list(range(600))
    assert torch.equal(gens[0].get_state(), gens[1].get_state())
    with pytest.raises(DataError, match="shard"):
        next(batching.train_batches(x, y, 64, generator=gens[0], augment=False, mean=0, std=1, shard=(2, 2)))


def test_eval_batches_in_order():
    x, y = identity_data(250)
    batches = list(batching.eval_batches(x, y, 100, mean=(0, 0, 0), std=(1, 1, 1)))
    assert [len(yb) for _, yb in batches] == [100, 100, 50]
    assert torch.equal(torch.cat([xb for xb, _ in batches]), x.float() / 255)
    assert torch.equal(torch.cat([yb for _, yb in batches]), y)


def test_holdout_split():
    x, y = identity_data(100)
    (tx, ty), (vx, vy) = data.holdout_split(x, y, 20, seed=1)
    assert len(vy) == 20 and len(ty) == 80
    assert sorted(torch.cat([ty, vy]).tolist()) == list(range(100))
    assert torch.equal(tx[:, 0, 0, 0], x[ty, 0, 0, 0])
    assert torch.equal(data.holdout_split(x, y, 20, seed=1)[1][1], vy)
    assert not torch.equal(data.holdout_split(x, y, 20, seed=2)[1][1], vy)
    for bad in (100, 0):
        with pytest.raises(DataError, match="holdout"):
            data.holdout_split(x, y, bad, seed=1)


# ================================================================ sources

CLASSES = ["ant", "cat", "dog"]  # conftest.image_tree's classes: 4 train and 2 test images each


def test_folder_tree_and_archives_agree(tmp_path):
    arrays = image_tree(tmp_path / "tree")
    ds = data.load_dataset(f"folder:{tmp_path / 'tree'}", tmp_path / "root")
    assert ds.classes == CLASSES
    assert ds.train_x.shape == (12, 3, 8, 8) and ds.test_x.shape == (6, 3, 8, 8)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert ds.train_x.is_contiguous() and ds.test_x.is_contiguous()
    assert ds.train_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert torch.equal(ds.train_x, torch.from_numpy(np.stack(arrays["train"])).permute(0, 3, 1, 2))
    assert torch.equal(ds.test_x, torch.from_numpy(np.stack(arrays["test"])).permute(0, 3, 1, 2))
    archives = [tar_of(tmp_path / "tree", tmp_path / "d.tar.gz", arcname="mydata"),  # one wrapping directory
                tar_of(tmp_path / "tree", tmp_path / "d.tar"),
                zip_of(tmp_path / "tree", tmp_path / "d.zip")]
    for archive in archives:
        other = data.load_dataset(f"folder:{archive}", tmp_path / "root")
        assert other.classes == CLASSES and other.source == f"folder:{archive}"
        for name in ("train_x", "train_y", "test_x", "test_y"):
            assert torch.equal(getattr(other, name), getattr(ds, name)), (archive, name)


def test_folder_grayscale_converted_with_warning(tmp_path):
    image_tree(tmp_path / "tree")
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(gray, mode="L").save(tmp_path / "tree/train/cat/00.png")
    with pytest.warns(UserWarning, match=r"1 image.*train/cat/00\.png"):
        ds = data.load_dataset(f"folder:{tmp_path / 'tree'}", tmp_path / "root")
    img = ds.train_x[4]  # first cat image
    assert all(torch.equal(img[c], torch.from_numpy(gray)) for c in range(3))


def test_folder_errors(tmp_path):
    image_tree(tmp_path / "tree")
    load = lambda p: data.load_dataset(f"folder:{p}", tmp_path / "root")  # noqa: E731
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "nope")
    (tmp_path / "empty/train").mkdir(parents=True)
    with pytest.raises(DataError, match="no train/<class>/"):
        load(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="no train/ folder"):
        load(tmp_path / "flat")
    (tmp_path / "tree/train/dog/bad.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"cannot decode image .*dog/bad\.png"):
        load(tmp_path / "tree")
    (tmp_path / "tree/train/dog/bad.png").unlink()
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(tmp_path / "tree/test/ant/big.png")
    with pytest.raises(DataError, match="mixed image sizes.*8x9"):
        load(tmp_path / "tree")
    (tmp_path / "tree/test/ant/big.png").unlink()
    (tmp_path / "tree/test/cow").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "tree/test/cow/0.png")
    with pytest.raises(DataError, match="cow"):
        load(tmp_path / "tree")


def add_member(archive: Path, name: str, kind: bytes = tarfile.REGTYPE) -> None:
    with tarfile.open(archive, "a") as tf:
        info = tarfile.TarInfo(name)
        info.type = kind
        if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
            info.linkname = "/etc/passwd"
            tf.addfile(info)
        elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
            info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
            tf.addfile(info)
        else:
            info.size = 3
            tf.addfile(info, io.BytesIO(b"abc"))


@pytest.mark.parametrize("name, kind, match", [
    ("../evil.png", tarfile.REGTYPE, r"'\.\.' path"),
    ("/abs/train/cat/x.png", tarfile.REGTYPE, "absolute"),
    ("train/cat/link.png", tarfile.SYMTYPE, "link or device"),
    ("train/cat/hard.png", tarfile.LNKTYPE, "link or device"),
    ("train/cat/dev.png", tarfile.CHRTYPE, "link or device"),
    ("train/cat/blk.png", tarfile.BLKTYPE, "link or device"),
    ("train/cat/fifo.png", tarfile.FIFOTYPE, "link or device"),
])
def test_archive_unsafe_members_refused(tmp_path, name, kind, match):
    image_tree(tmp_path / "tree")
    archive = tar_of(tmp_path / "tree", tmp_path / "d.tar")
    add_member(archive, name, kind)
    with pytest.raises(DataError, match=match):
        data.load_dataset(f"folder:{archive}", tmp_path / "root")


@pytest.mark.parametrize("name, mode, match", [
    ("train/../../evil.png", 0o100644, r"'\.\.' path"),
    ("/abs/train/cat/x.png", 0o100644, "absolute"),
    ("train/cat/link.png", 0o120777, "link or device"),
])
def test_zip_unsafe_member_refused(tmp_path, name, mode, match):
    image_tree(tmp_path / "tree")
    archive = zip_of(tmp_path / "tree", tmp_path / "d.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16  # unix mode bits, where zip keeps "this is a symlink"
        zf.writestr(info, b"/etc/passwd")
    with pytest.raises(DataError, match=match):
        data.load_dataset(f"folder:{archive}", tmp_path / "root")


def test_cache_hit_does_not_decode_again(tmp_path):
    image_tree(tmp_path / "tree")
    archive = tar_of(tmp_path / "tree", tmp_path / "d.tar.gz", arcname="mydata")
    first = data.load_dataset(f"folder:{archive}", tmp_path / "root")
    entries = list((tmp_path / "root/cache").iterdir())
    folders = [p for p in entries if p.is_dir()]
    assert len(folders) == 1 and not [p for p in entries if ".tmp" in p.name]
    assert sorted(p.name for p in folders[0].iterdir()) == [
        "meta.json", "test_x.npy", "test_y.npy", "train_x.npy", "train_y.npy"]
    # Garbage of the same size and mtime: the key still matches, so only the cache can answer.
    st = archive.stat()
    archive.write_bytes(np.random.default_rng(0).integers(0, 256, st.st_size, dtype=np.uint8).tobytes())
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = data.load_dataset(f"folder:{archive}", tmp_path / "root")
    assert second.classes == first.classes
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(second, name), getattr(first, name))
    # A changed file (new mtime) is a new key: decoding it now fails loudly.
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match="cannot read"):
        data.load_dataset(f"folder:{archive}", tmp_path / "root")


def test_concurrent_loads_decode_once(tmp_path, monkeypatch):
    image_tree(tmp_path / "tree")
    calls, real = [], data.decode_folder

    def slow_decode(path):
        calls.append(path)
        time.sleep(0.3)  # hold the lock long enough for the other thread to queue on it
        return real(path)

    monkeypatch.setattr(data, "decode_folder", slow_decode)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        data.load_dataset(f"folder:{tmp_path / 'tree'}", tmp_path / "root"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 2
    assert torch.equal(results[0].train_x, results[1].train_x)


def test_cifar10_folder_decoded_and_cached(tmp_path, monkeypatch):
    """torchvision's pickled format with fake pixels; its md5 check is patched out."""
    import pickle

    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng, batches = np.random.default_rng(0), {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "labels": [0, 9, 4]}
        (folder / name).write_bytes(pickle.dumps(batches[name]))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    for _ in range(2):  # decode, then the cache
        ds = data.load_dataset("cifar10", tmp_path, download=False)
        assert ds.classes == names and ds.train_x.shape == (15, 3, 32, 32) and ds.test_x.shape == (3, 3, 32, 32)
        assert torch.equal(ds.train_x[3].flatten(), torch.from_numpy(batches["data_batch_2"]["data"][0]))
        assert ds.train_y.tolist() == [0, 9, 4] * 5 and ds.train_x.is_contiguous()
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 1


def test_cifar10_missing_without_download(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path}/cifar-10-batches-py.*download disabled.*synthetic"):
        data.load_dataset("cifar10", tmp_path, download=False)


@pytest.mark.parametrize("source", ["imagenet", "folder:", "synthetic:abc", "synthetic:5", "cifar10:x"])
def test_unknown_source(source, tmp_path):
    with pytest.raises(DataError):
        data.load_dataset(source, tmp_path)


# ============================================================== synthetic

def test_synthetic_deterministic_balanced():
    a, b = data.load_dataset("synthetic:1000"), data.load_dataset("synthetic:1000")
    assert a.train_x.shape == (1000, 3, 32, 32) and a.test_x.shape == (200, 3, 32, 32)
    assert a.train_x.dtype == torch.uint8 and a.train_y.dtype == torch.int64 and a.train_x.is_contiguous()
    assert len(a.classes) == 10 and len(data.load_dataset("synthetic:100").test_y) == 100
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert torch.bincount(a.train_y).tolist() == [100] * 10
    assert torch.bincount(a.test_y).tolist() == [20] * 10


def test_synthetic_learnable_but_not_trivial():
    """SimpleNN-size CNN (conv5x5 8, conv3x3 16, fc 120-84-10), SGD lr 0.01 momentum 0.9, 2 epochs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs: 2 threads on the 2-core VM ran ~10x slower (contention)
    try:
        _train_simplenn_on_synthetic()
    finally:
        torch.set_num_threads(threads)


def _train_simplenn_on_synthetic():
    torch.manual_seed(0)
    ds = data.load_dataset("synthetic")
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(576, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(), torch.nn.Linear(84, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    mean, std, g = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), torch.Generator().manual_seed(0)

    def accuracy() -> float:
        with torch.no_grad():
            return (net(batching.normalize(ds.test_x, mean, std)).argmax(1) == ds.test_y).float().mean().item()

    assert accuracy() < 0.25  # chance before training
    for _ in range(2):
        for xb, yb in batching.train_batches(ds.train_x, ds.train_y, 128, generator=g, augment=False, mean=mean, std=std):
            opt.zero_grad()
            F.cross_entropy(net(xb), yb).backward()
            opt.step()
    assert 0.3 <= accuracy() < 0.995


# ============================================================ real CIFAR

@pytest.mark.slow
def test_real_cifar10_archive(real_cifar):
    ds = real_cifar  # decoded in this run, not read from an older run's cache
    assert ds.classes == ["airplane", "automobile", "bird", "cat", "deer",
                          "dog", "frog", "horse", "ship", "truck"]
    assert ds.train_x.shape == (50000, 3, 32, 32) and ds.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(ds.train_y).tolist() == [5000] * 10
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    means = ds.train_x.float().mean((0, 2, 3)) / 255
    torch.testing.assert_close(means, torch.tensor([0.491, 0.482, 0.447]), atol=2e-3, rtol=0)
