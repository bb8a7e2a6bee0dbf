"""`synthetic[:N]`: a generated, learnable, offline data set for tests and smoke runs."""
from __future__ import annotations

import numpy as np
import torch

from raylab.data.cache import Tensors


def synthetic(n: int) -> Tensors:
    """10 classes: a class colour tint whose contrast carries oriented stripes in a
    shifted Gaussian blob, plus pixel noise. Fixed seed: the same tensors every call.

    Colour is the quick cue but 20% of it is random, so colour alone is not
    enough; the stripe angle (18 degrees apart per class) disambiguates. Measured
    (2-core CPU VM, 3 seeds): SimpleNN (8/16 conv, SGD lr 0.01, momentum 0.9,
    batch 128) reaches 0.27-0.47 val acc after 1 epoch, 0.78-0.91 after 2.
    """
    rng = np.random.default_rng(1234)
    palette = rng.uniform(0, 1, (10, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)

    def make(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = rng.permutation(np.arange(count) % 10)  # balanced: counts differ by at most 1
        r = lambda *shape: rng.random(shape, dtype=np.float32)  # noqa: E731
        cy, cx = 8 + 16 * r(2, count, 1, 1)
        theta = y[:, None, None] * np.float32(np.pi / 10) + 0.08 * (r(count, 1, 1) - 0.5)
        stripes = np.cos(0.9 * (xx * np.cos(theta) + yy * np.sin(theta)) + 2 * np.pi * r(count, 1, 1))
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 8.0**2))
        colour = 0.8 * palette[y] + 0.2 * r(count, 3)
        img = 0.5 + (colour[:, :, None, None] - 0.5) * (1 + 0.8 * (blob * stripes)[:, None])
        img += 0.08 * rng.standard_normal(img.shape, dtype=np.float32)
        x = np.clip(img * 255, 0, 255).astype(np.uint8)
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    train_x, train_y = make(n)
    test_x, test_y = make(max(n // 5, 100))
    return [f"class{i}" for i in range(10)], train_x, train_y, test_x, test_y
