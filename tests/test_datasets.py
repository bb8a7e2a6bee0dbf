"""CIFAR-100, SVHN, MNIST/FashionMNIST read from small files written here in torchvision's
on-disk formats (no download: this machine has no internet), arrays registered in Python,
normalisation from the training split, and a real training run on each."""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from conftest import job_file, raylab
from raylab.declare.config import CIFAR_MEAN, TrialConfig
from raylab.data.sources import DataError, load_dataset
from raylab.data.arrays import register_data
from raylab.data.stats import channel_stats, with_stats
from raylab.train.loop import train

RNG = np.random.default_rng(0)


def images(n, h=32, w=32, c=3):
    return RNG.integers(0, 256, (n, h, w, c), dtype=np.uint8) if c else RNG.integers(0, 256, (n, h, w), dtype=np.uint8)


def write_cifar100(root, n_train=60, n_test=20):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        x = images(n).transpose(0, 3, 1, 2).reshape(n, 3072)  # rows of R, G, B planes, as the release
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": x, "fine_labels": RNG.integers(0, 100, n).tolist(),
                         "coarse_labels": [0] * n, "filenames": [f"{i}.png" for i in range(n)]}, fh, protocol=2)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, fh, protocol=2)
    return folder


def write_idx(path, array, gz=False):
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def write_mnist(root, folder="MNIST", gz=False, n_train=60, n_test=20):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images(n, 28, 28, 0), gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", RNG.integers(0, 10, n), gz)


def write_svhn(root, n_train=60, n_test=20):
    from scipy.io import savemat

    for name, n in (("train", n_train), ("test", n_test)):
        savemat(root / f"{name}_32x32.mat", {"X": images(n).transpose(1, 2, 3, 0),
                                             "y": RNG.integers(1, 11, (n, 1)).astype(np.uint8)})


def one_epoch(data, root, **kw):
    cfg = TrialConfig.from_dict(data=data, data_root=str(root), epochs=1, batch_size=20, threads=1,
                                download=False, **kw)
    return train(cfg)


def test_cifar100_fine_labels_and_training(tmp_path):
    write_cifar100(tmp_path)
    ds = load_dataset("cifar100", tmp_path, download=False)
    assert ds.train_x.shape == (60, 3, 32, 32) and len(ds.classes) == 100 and ds.test_x.shape[0] == 20
    # The row layout is R plane, G plane, B plane: pixel (0, 0) of image 0 is bytes 0, 1024, 2048.
    raw = pickle.load(open(tmp_path / "cifar-100-python" / "train", "rb"))["data"]
    assert ds.train_x[0, :, 0, 0].tolist() == [raw[0, 0], raw[0, 1024], raw[0, 2048]]
    outcome = one_epoch("cifar100", tmp_path)
    assert outcome.status == "completed" and outcome.n_params > 0


def test_cifar100_pickle_that_runs_code_is_refused(tmp_path):
    folder = write_cifar100(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(folder / "train", "wb") as fh:
        pickle.dump({"data": Evil()}, fh)
    with pytest.raises(DataError, match="builtins.print is not allowed"):
        load_dataset("cifar100", tmp_path, download=False)


@pytest.mark.parametrize("folder, gz", [("MNIST", False), ("FashionMNIST", True)])
def test_mnist_one_channel_padded_to_32(tmp_path, folder, gz):
    write_mnist(tmp_path, folder, gz)
    source = folder.lower()
    ds = load_dataset(source, tmp_path, download=False)
    assert ds.train_x.shape == (60, 1, 32, 32)
    assert ds.train_x[:, :, :2].sum() == 0 and ds.train_x[:, :, :, -2:].sum() == 0  # the zero border
    assert (ds.classes[0] == "T-shirt/top") == (folder == "FashionMNIST")
    # Normalisation from the training split: one channel, not CIFAR's three.
    cfg = with_stats(TrialConfig.from_dict(data=source), ds)
    mean, std = channel_stats(ds.train_x)
    assert cfg.mean == mean and len(cfg.mean) == 1
    x = ds.train_x.double() / 255
    assert abs(mean[0] - x.mean().item()) < 1e-4 and abs(std[0] - x.std().item()) < 1e-3
    for model in ("simplenn", "resnet20"):
        assert one_epoch(source, tmp_path, model=model).status == "completed"


def test_svhn_label_10_is_digit_0(tmp_path):
    from scipy.io import loadmat

    write_svhn(tmp_path)
    ds = load_dataset("svhn", tmp_path, download=False)
    y = loadmat(tmp_path / "train_32x32.mat")["y"].reshape(-1)
    assert ds.train_x.shape == (60, 3, 32, 32) and ds.train_y.tolist() == [int(v) % 10 for v in y]
    assert one_epoch("svhn", tmp_path).status == "completed"


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DataError, match="MNIST.raw lacks train-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path, download=False)


def test_registered_arrays_train_and_survive_a_new_process(tmp_path):
    x, y = images(50, 16, 16, 0), RNG.integers(0, 3, 50)
    source = register_data("blobs", train=(x, y), test=(x[:10], y[:10]), classes=["a", "b", "c"])
    ds = load_dataset(source, tmp_path)
    assert ds.train_x.shape == (50, 1, 16, 16) and ds.classes == ["a", "b", "c"]
    cfg = with_stats(TrialConfig.from_dict(data=source), ds)
    assert cfg.mean != CIFAR_MEAN and len(cfg.std) == 1
    # A resume runs no job file: the cache keeps the arrays.
    from raylab.data import arrays
    del arrays.ARRAYS["blobs"]
    again = load_dataset(source, tmp_path)
    assert torch.equal(again.train_x, ds.train_x)
    with pytest.raises(DataError, match="register_data\\('other'"):
        load_dataset("arrays:other", tmp_path)
    with pytest.raises(DataError, match="must be uint8"):
        register_data("bad", train=(x.astype(np.float32), y), test=(x, y))


@pytest.mark.ray
def test_job_file_arrays_run_as_a_sweep(tmp_path):
    """The driver decodes registered arrays into the object store; trials in other processes
    train on them (they never run the job file)."""
    from raylab.results import TRIALS, read_table

    job = job_file(tmp_path, f"""
        import numpy as np
        import raylab
        from raylab import Study, grid

        rng = np.random.default_rng(0)
        y = np.arange(120) % 4
        x = (rng.integers(0, 60, (120, 32, 32)) + 50 * y[:, None, None]).astype(np.uint8)  # class = brightness
        DATA = raylab.register_data("bright", train=(x[:100], y[:100]), test=(x[100:], y[100:]))
        STUDY = Study("bright", grid(lr=[0.05, 0.01]), dict(data=DATA, data_root={str(tmp_path / 'data')!r},
                                                           epochs=1, threads=1, batch_size=20))
    """, "blobs.py")
    proc = raylab("run", job, "--storage", tmp_path / "res", "--num-cpus", "2", "--quiet", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = read_table(str(tmp_path / "res" / "bright"), TRIALS)
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}
    assert set(trials["data"]) == {"arrays:bright"}
