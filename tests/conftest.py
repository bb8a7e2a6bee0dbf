import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def shared_cifar():
    if not SHARED_CIFAR.exists():
        pytest.skip(f"real CIFAR-10 copy not found at {SHARED_CIFAR}")
    return SHARED_CIFAR


def raylab_cmd(*args):
    """The console script of the venv that runs the tests."""
    return [sys.executable, "-m", "raylab", *map(str, args)]
