"""Per-step batches on the trial's device: shuffle, random crop + flip, normalise.

Same semantics as torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip
+ Normalize, on whole batches instead of a per-image loop (sources.py says why).
Every random number comes from a CPU generator whose state a checkpoint saves.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from raylab.errors import DataError

PAD = 4  # random-crop zero padding in pixels: offsets 0..2*PAD in each axis


def _draw_crop_flip(n: int, generator: torch.Generator, *, augment: bool = True,
                    vflip: bool = False) -> torch.Tensor:
    """(3 or 4, n) int64 on CPU: row offset, column offset (0..2*PAD), flip (0/1)[, vertical flip].

    The vertical-flip row is drawn after the others, so runs without vflip keep
    the random stream they always had. Without `augment` the crop is the centre
    (offset PAD) and nothing is mirrored, but the rows are still drawn: one code path.
    """
    params = torch.randint(0, 2 * PAD + 1, (3, n), generator=generator)
    params[2] = torch.randint(0, 2, (n,), generator=generator)
    if not augment:
        params[:2], params[2] = PAD, 0
    if vflip:
        params = torch.cat([params, torch.randint(0, 2, (1, n), generator=generator)])
    return params


def _crop_index(params: torch.Tensor, b: int, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H) rows and (B, W) columns of the padded image that each output pixel reads."""
    dy, dx, flip = params[:3].to(device)
    rows = torch.arange(h, device=device).expand(b, h)
    if len(params) > 3:
        rows = torch.where(params[3].to(device)[:, None].bool(), rows.flip(1), rows)
    cols = torch.arange(w, device=device).expand(b, w)
    return dy[:, None] + rows, dx[:, None] + torch.where(flip[:, None].bool(), cols.flip(1), cols)


def _crop_flip(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Pad by PAD with 0, then per image crop at (dy, dx) and maybe mirror: two gathers.

    Same distribution as torchvision RandomCrop(H, padding=4) + RandomHorizontalFlip
    (+ RandomVerticalFlip when params has a fourth row). The pad value is 0 in
    x's units: black on uint8 pixels.
    Gathering rows then columns beat one 4-D advanced index ~20x on CPU (~100k vs
    5k images/s, batch 128, 2-core VM).
    """
    b, c, h, w = x.shape
    rows, cols = _crop_index(params, b, h, w, x.device)
    padded = torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD))
    x = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * PAD))
    return x.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def _inside(params: torch.Tensor, b: int, h: int, w: int, device) -> torch.Tensor:
    """(B, 1, H, W) bool: which output pixels of `_crop_flip` come from the image, not the padding."""
    rows, cols = _crop_index(params, b, h, w, device)
    return (((rows >= PAD) & (rows < PAD + h))[:, None, :, None]
            & ((cols >= PAD) & (cols < PAD + w))[:, None, None, :])


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding 4) + horizontal flip p=0.5, per image, same dtype/shape.

    Random numbers come from the CPU `generator` (so a checkpoint can save its
    state) and move to x.device in one small copy.
    """
    return _crop_flip(x, _draw_crop_flip(len(x), generator))


def normalize(x_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float], dtype=torch.float32) -> torch.Tensor:
    """x/255, then (x - mean) / std per channel; computed in float32, returned as dtype."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=x_uint8.device).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=x_uint8.device).view(-1, 1, 1)
    return ((x_uint8.to(torch.float32) / 255 - mean) / std).to(dtype)


def _on_device(values, device) -> torch.Tensor:
    # Once per epoch: a CPU->GPU copy from pageable memory waits for the GPU queue
    # to drain, so one copy per batch would stall the pipeline every step.
    return torch.as_tensor(values, dtype=torch.float32).to(device)


def train_batches(x, y, batch_size: int, *, generator: torch.Generator, augment: bool,
                  mean, std, shard: tuple[int, int] = (0, 1), pad: str = "zero",
                  vflip: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled (optionally augmented), normalised batches of this worker's shard.

    Every worker draws the same permutation (generators seeded alike) and keeps
    perm[rank::world], in batches of batch_size (the last one partial). The
    crop/flip numbers are drawn once per epoch for every position of the
    permutation, so each worker consumes the same random numbers (generators
    stay in step for the next epoch) and the ranks get different crops.
    DDP callers want len(x) % world == 0: then every rank gets the same number
    of batches, of the same sizes.

    pad="zero" pads the uint8 images black (~-2 after normalising); pad="mean"
    gives what the course report's transform gives (Normalize before
    RandomCrop): padding 0 after normalisation, the mean colour. It crops the
    uint8 batch too and zeroes the border after normalising (bit-identical to
    normalising first). The extra masked fill makes batching ~0.8x as fast as
    pad="zero" (bench/pad.py: 0.77-0.79, 2-core VM at load average 30-40;
    cropping the float batch instead measured 0.78), a few % of a SimpleNN
    step. Both draw the same random numbers.
    """
    rank, world = shard
    if not 0 <= rank < world:
        raise DataError(f"shard {shard} is not (rank, world) with 0 <= rank < world")
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    moved = augment or vflip
    params = _draw_crop_flip(len(x), generator, augment=augment, vflip=vflip).to(x.device) if moved else None
    mean, std = _on_device(mean, x.device), _on_device(std, x.device)
    step = batch_size * world  # a global batch: chunk starts are multiples of world
    for start in range(0, len(perm), step):
        idx = perm[start:start + step][rank::world]
        if len(idx) == 0:
            continue
        xb = x[idx]
        if moved:
            p = params[:, start:start + step][:, rank::world]
            xb = _crop_flip(xb, p)
        xb = normalize(xb, mean, std)
        if moved and pad == "mean":  # as if normalised before padding: the border is 0, the mean colour
            xb.masked_fill_(~_inside(p, *xb.shape[:1], *xb.shape[2:], xb.device), 0.0)
        yield xb, y[idx]


def eval_batches(x, y, batch_size: int, *, mean, std) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """In order, normalised, no augmentation."""
    mean, std = _on_device(mean, x.device), _on_device(std, x.device)
    for start in range(0, len(x), batch_size):
        yield normalize(x[start:start + batch_size], mean, std), y[start:start + batch_size]
