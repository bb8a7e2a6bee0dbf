"""The `pad` and `vflip` options of the batched augmentation.

pad="mean" must give what the course report's torchvision transform gives
(ToTensor, Normalize, then RandomCrop(32, padding=4) and RandomHorizontalFlip),
pixel for pixel on real CIFAR-10 images; pad="zero" keeps the usual recipe.
"""
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from raylab.declare.config import CIFAR_MEAN, CIFAR_STD, ConfigError, TrialConfig
from raylab.data.batches import PAD, _crop_flip, _draw_crop_flip, normalize, train_batches

from conftest import SHARED_CIFAR

MEAN = torch.tensor(CIFAR_MEAN).view(3, 1, 1)
STD = torch.tensor(CIFAR_STD).view(3, 1, 1)


def _cifar_archive() -> Path:
    path = Path(os.environ.get("RAYLAB_SHARED_CIFAR", SHARED_CIFAR))
    if not path.exists():
        pytest.skip(f"real CIFAR-10 copy not found at {path} (set RAYLAB_SHARED_CIFAR to its path)")
    return path


def _real_images(n: int) -> list[Image.Image]:
    """The first n training JPEGs of the archive, decoded by PIL as the report's loader does."""
    out = []
    with tarfile.open(_cifar_archive(), "r:gz") as tf:
        for m in tf:
            if m.isfile() and "/train/" in f"/{m.name}" and m.name.lower().endswith((".jpg", ".jpeg", ".png")):
                out.append(Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB"))
                if len(out) == n:
                    break
    return out


def _uint8(images: list[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).contiguous()


def test_pad_mean_is_the_course_report_transform_on_real_images():
    torchvision = pytest.importorskip("torchvision")
    T = torchvision.transforms
    images = _real_images(24)
    report = T.Compose([T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD),
                        T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])
    theirs, params = [], []
    for k, im in enumerate(images):
        torch.manual_seed(k)
        theirs.append(report(im))
        torch.manual_seed(k)  # the same draws, in RandomCrop's and RandomHorizontalFlip's order
        dy, dx = (int(torch.randint(0, 2 * PAD + 1, (1,))) for _ in range(2))
        params.append((dy, dx, int(torch.rand(1) < 0.5)))
    theirs = torch.stack(theirs)
    p = torch.tensor(params).T
    ours = _crop_flip(normalize(_uint8(images), CIFAR_MEAN, CIFAR_STD), p)
    assert p[0].unique().numel() > 3 and p[2].unique().numel() == 2  # several offsets and both flips met
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    # what makes "mean" the report's padding: a crop reaching into the border reads exactly 0
    edge = int(np.argmax([dy == 0 for dy, _, _ in params]))
    assert params[edge][0] == 0 and torch.all(theirs[edge, :, :PAD, :] == 0)


def test_pad_zero_pads_black_which_normalises_to_minus_mean_over_std():
    x = torch.full((2, 3, 32, 32), 200, dtype=torch.uint8)
    corner = torch.tensor([[0, 0], [0, 0], [0, 1]])  # offset (0, 0): the top 4 rows and left 4 columns are padding
    zero = normalize(_crop_flip(x, corner), CIFAR_MEAN, CIFAR_STD)
    mean = _crop_flip(normalize(x, CIFAR_MEAN, CIFAR_STD), corner)
    black = (-MEAN / STD).expand(3, PAD, 32)
    torch.testing.assert_close(zero[0, :, :PAD, :], black)            # about -2.2 .. -2.4
    assert torch.all(mean[:, :, :PAD, :] == 0)
    assert torch.equal(zero[0, :, PAD:, PAD:], mean[0, :, PAD:, PAD:])  # inside the image: the same pixels
    assert torch.all(mean[1, :, :, -PAD:] == 0)                          # mirrored: the padding is on the right


def _epoch(pad: str, vflip: bool = False, augment: bool = True, seed: int = 0):
    x = torch.randint(0, 256, (300, 3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    y = torch.arange(300) % 10
    gen = torch.Generator().manual_seed(seed)
    batches = list(train_batches(x, y, 64, generator=gen, augment=augment, mean=CIFAR_MEAN, std=CIFAR_STD,
                                 pad=pad, vflip=vflip))
    return torch.cat([b for b, _ in batches]), torch.cat([t for _, t in batches]), gen


def test_pads_draw_the_same_crops_and_differ_only_in_the_border():
    zero, yz, gz = _epoch("zero")
    mean, ym, gm = _epoch("mean")
    assert torch.equal(yz, ym) and torch.equal(gz.get_state(), gm.get_state())  # same order, same draws
    border = (mean == 0).all(dim=1)                                         # (N, H, W): padded pixels
    assert 0.05 < border.float().mean() < 0.2                               # E[pad area] = 1 - (1 - 2/32)^2 ~ 0.12
    inside = ~border[:, None].expand_as(mean)
    torch.testing.assert_close(zero[inside], mean[inside], rtol=0, atol=1e-6)
    assert (zero[~inside] < -1.9).all()                                      # black, normalised


def test_without_augment_pad_changes_nothing():
    a, _, _ = _epoch("zero", augment=False)
    b, _, _ = _epoch("mean", augment=False)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_vflip_mirrors_rows_and_keeps_the_old_random_stream():
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    plain, with_v = _draw_crop_flip(500, g()), _draw_crop_flip(500, g(), vflip=True)
    assert torch.equal(plain, with_v[:3])        # runs without vflip draw exactly what they always drew
    assert 0.4 < with_v[3].float().mean() < 0.6
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    centre = torch.tensor([[PAD, PAD], [PAD, PAD], [0, 0], [1, 0]])  # no shift, no mirror; image 0 flipped upside down
    out = _crop_flip(x, centre)
    assert torch.equal(out[0], x[0].flip(1)) and torch.equal(out[1], x[1])


def test_vflip_alone_flips_without_cropping():
    flipped, _, _ = _epoch("zero", vflip=True, augment=False)
    plain, _, _ = _epoch("zero", augment=False)
    same = [(torch.equal(f, p), torch.equal(f, p.flip(1))) for f, p in zip(flipped, plain)]
    assert all(a or b for a, b in same)                       # each image as it was or upside down, never shifted
    assert 0.3 < np.mean([b for _, b in same]) < 0.7


def test_config_fields_validate():
    assert TrialConfig().pad == "zero" and TrialConfig().vflip is False
    assert TrialConfig.from_dict({"pad": "mean", "vflip": "true"}).vflip is True
    with pytest.raises(ConfigError, match="pad 'grey' is not one of: zero, mean"):
        TrialConfig.from_dict({"pad": "grey"})


def test_training_runs_with_mean_padding_and_vflip():
    from raylab.data.sources import load_dataset
    from raylab.train.loop import train

    data = load_dataset("synthetic:200")
    cfg = TrialConfig.from_dict(dict(data="synthetic:200", epochs=1, augment=True, pad="mean", vflip=True,
                                     device="cpu", threads=1))
    out = train(cfg, data)
    assert out.status == "completed" and len(out.history) == 2
