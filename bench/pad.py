"""Batched augmentation speed, pad="mean" against pad="zero" (issue 12).

    .venv/bin/python bench/pad.py [--quick]

raylab.data.batches.train_batches over 20k random uint8 CIFAR-sized images, batch 128,
augment on, one torch thread, 5 interleaved repeats (3 with --quick); prints
one JSON object: median images/s of each and the median per-repeat ratio
mean / zero. Paired within one run because the machine is shared.
"""
import argparse
import json
import statistics
import time

import torch

from raylab.data.batches import train_batches
from raylab.declare.config import CIFAR_MEAN, CIFAR_STD


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 repeats of 2k images")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n, repeats = (2000, 3) if args.quick else (20000, 5)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(n, dtype=torch.long)
    rates = {"zero": [], "mean": []}
    for rep in range(repeats):
        for pad in rates:
            gen = torch.Generator().manual_seed(rep)
            start = time.perf_counter()
            seen = sum(len(b) for b, _ in train_batches(x, y, 128, generator=gen, augment=True,
                                                         mean=CIFAR_MEAN, std=CIFAR_STD, pad=pad))
            rates[pad].append(seen / (time.perf_counter() - start))
    print(json.dumps({"images_per_second": {k: round(statistics.median(v)) for k, v in rates.items()},
                      "ratio_mean_over_zero": round(statistics.median(
                          m / z for m, z in zip(rates["mean"], rates["zero"])), 2)}))


if __name__ == "__main__":
    main()
