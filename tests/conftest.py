import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
os.environ.setdefault("MPLBACKEND", "Agg")
# Tests start their own Ray, also in the processes they spawn: never join an instance that
# `ray start` left on this machine (ray.init() without an address would, as on a cluster head).
os.environ.setdefault("RAY_ADDRESS", "local")


@pytest.fixture(scope="session")
def shared_cifar():
    if not SHARED_CIFAR.exists():
        pytest.skip(f"real CIFAR-10 copy not found at {SHARED_CIFAR}")
    return SHARED_CIFAR


@pytest.fixture(scope="session")
def real_cifar(shared_cifar, tmp_path_factory):
    """The real copy decoded in this run into a fresh cache, once per session (~10-14 s on
    the 2-core VM): a cache kept across runs would hide a JPEG decoding regression."""
    from raylab.data.sources import load_dataset

    return load_dataset(f"folder:{shared_cifar}", tmp_path_factory.mktemp("cifar-cache"))


def raylab_cmd(*args):
    """The console script of the venv that runs the tests."""
    return [sys.executable, "-m", "raylab", *map(str, args)]
