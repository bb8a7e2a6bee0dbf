"""Trainer benchmark: raylab's training function against a bare PyTorch loop and
the course report's DataLoader pipeline, SimpleNN on CIFAR-10, one JSON object on stdout.

    python bench/trainer.py                      # real CIFAR copy, 3 interleaved repeats
    python bench/trainer.py --quick              # synthetic data, smoke run (< 60 s)
    python bench/trainer.py --threads 2 --repeats 5 --data folder:PATH

What is timed (all in one process, same torch thread count, same model,
SGD lr 0.01 momentum 0.9 weight decay 1e-4, batch 128):

    raylab       raylab.train.loop.train(); images/s is its own per-epoch
                 `images_per_second` (training phase only: evaluation is
                 outside that window but inside `epoch_seconds`)
    bare         a hand-written loop over the same in-memory uint8 tensors:
                 random permutation, optional raylab.data.batches.augment_batch,
                 normalise on the fly, forward/backward/step, no metrics.
                 The "speed of light" of the design.
    dataloader   per-image PIL transforms (ToTensor, Normalize; with augment
                 RandomCrop(32, padding=4) + RandomHorizontalFlip) through a
                 torch DataLoader with num_workers 0 and 2, fed decoded images
                 held in memory (no disk decode), same training step. Timed over
                 a fixed number of batches after warm-up batches (worker start-up
                 excluded), because a full epoch of it is slow.

Every repeat runs all cases once, in an order that rotates between repeats
(A B A B ...); figures are medians over repeats, ratios are medians of the
per-repeat ratios (paired, so machine drift cancels).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from raylab.declare.config import CIFAR_MEAN, CIFAR_STD, TrialConfig
from raylab.data.batches import augment_batch
from raylab.data.sources import load_dataset
from raylab.train.models import build_model
import raylab.train.loop
from raylab.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
DEFAULT_CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "raylab-bench-cache"

# ------------------------------------------------------------------ settings
BATCH = 128          # images per step, the report's
LR = 0.01            # SGD learning rate
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4  # L2 through the optimiser, on every parameter (raylab's regularize="all")
SEED = 0
TARGET_RAYLAB_OVER_BARE = 0.95             # (a)/(b), both augment settings
TARGET_RAYLAB_OVER_DATALOADER_AUG = 1.5    # (a) / best (c), with augmentation


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------- cases
def run_raylab(data, source: str, augment: bool, epochs: int, threads: int) -> dict:
    """(a) The training function as a trial calls it; images/s from its own report."""
    cfg = TrialConfig.from_dict(model="simplenn", epochs=epochs, data=source, threads=threads,
                                augment=augment, seed=SEED, device="cpu", batch_size=BATCH,
                                lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    cpu_seconds: list[float] = []
    original = raylab.train.loop.train_batches

    def timed_batches(*args, **kwargs):
        # CPU time of each training phase (the window train() times), read from outside:
        # images per CPU-second hardly moves when other tenants steal the cores.
        c0 = time.process_time()
        yield from original(*args, **kwargs)
        cpu_seconds.append(time.process_time() - c0)

    raylab.train.loop.train_batches = timed_batches
    try:
        t0 = time.perf_counter()
        out = train(cfg, data=data)
        wall = time.perf_counter() - t0
    finally:
        raylab.train.loop.train_batches = original
    rows = [r for r in out.history if r["epoch"] >= 1]
    ips = [r["images_per_second"] for r in rows]
    return {"images_per_second": statistics.median(ips),
            "images_per_cpu_second": statistics.median(r["train_images"] / c for r, c in zip(rows, cpu_seconds)),
            "train_seconds": statistics.median(r["train_images"] / r["images_per_second"] for r in rows),
            "epoch_seconds": statistics.median(r["epoch_seconds"] for r in rows),
            "epoch0_eval_seconds": out.history[0]["epoch_seconds"],
            "wall_seconds": wall, "val_acc": rows[-1]["val_acc"]}


def _sgd(model):
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def _step(model, opt, xb, yb) -> None:
    loss = F.cross_entropy(model(xb), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def run_bare(x: torch.Tensor, y: torch.Tensor, augment: bool, epochs: int) -> dict:
    """(b) The speed of light: the same work with nothing around it."""
    torch.manual_seed(SEED)
    model = build_model("simplenn")
    opt = _sgd(model)
    gen = torch.Generator().manual_seed(SEED)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    model.train()
    ips, secs, cpu = [], [], []
    for _ in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        perm = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), BATCH):
            idx = perm[start:start + BATCH]
            xb = x[idx]
            if augment:
                xb = augment_batch(xb, gen)
            xb = (xb.float().div_(255).sub_(mean)).div_(std)
            _step(model, opt, xb, y[idx])
        secs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        ips.append(len(x) / secs[-1])
    return {"images_per_second": statistics.median(ips), "train_seconds": statistics.median(secs),
            "images_per_cpu_second": statistics.median(len(x) / c for c in cpu)}


class InMemoryImages(torch.utils.data.Dataset):
    """CIFAR-style dataset over decoded uint8 HWC images: PIL image per item, then transforms
    (what torchvision.datasets.CIFAR10 / ImageFolder do, minus the disk decode)."""

    def __init__(self, hwc: np.ndarray, labels: np.ndarray, transform):
        self.hwc, self.labels, self.transform = hwc, labels, transform

    def __len__(self) -> int:
        return len(self.hwc)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.hwc[i])), int(self.labels[i])


def report_transform(augment: bool):
    import torchvision.transforms as T
    aug = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment else []
    return T.Compose([*aug, T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)])


def run_dataloader(hwc: np.ndarray, labels: np.ndarray, augment: bool, workers: int,
                   batches: int, warmup: int) -> dict:
    """(c) The course report's pipeline, `batches` timed steps after `warmup` untimed ones."""
    torch.manual_seed(SEED)
    model = build_model("simplenn")
    opt = _sgd(model)
    model.train()
    ds = InMemoryImages(hwc, labels, report_transform(augment))
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers,
                                         drop_last=True, generator=torch.Generator().manual_seed(SEED))
    it = iter(loader)
    t_start = time.perf_counter()
    for _ in range(warmup):
        _step(model, opt, *next(it))
    t0 = time.perf_counter()
    for _ in range(batches):
        _step(model, opt, *next(it))
    secs = time.perf_counter() - t0
    del it  # shuts the workers down
    return {"images_per_second": batches * BATCH / secs, "train_seconds": secs,
            "startup_and_warmup_seconds": t0 - t_start}


# ---------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None,
                   help=f"raylab data source (default: folder:{SHARED_CIFAR} when present, else synthetic:50000; "
                        "--quick: synthetic:2048)")
    p.add_argument("--root", default=str(DEFAULT_CACHE), help="cache root for decoded data (default %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per repeat of raylab and bare (default 1)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 3; --quick 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads everywhere (default 1: one sweep trial)")
    p.add_argument("--dl-batches", type=int, default=None, help="timed DataLoader batches (default 100; --quick 5)")
    p.add_argument("--dl-warmup", type=int, default=None, help="untimed DataLoader batches first (default 10; --quick 2)")
    p.add_argument("--workers", default="0,2", help="DataLoader num_workers to try, comma-separated (default 0,2)")
    p.add_argument("--cases", default="raylab,bare,dataloader", help="which of raylab,bare,dataloader to run")
    p.add_argument("--quick", action="store_true", help="smoke run: small synthetic data, 1 repeat")
    a = p.parse_args(argv)
    q = a.quick
    a.data = a.data or ("synthetic:2048" if q else f"folder:{SHARED_CIFAR}" if SHARED_CIFAR.exists() else "synthetic:50000")
    a.epochs = a.epochs or 1
    a.repeats = a.repeats or (1 if q else 3)
    a.dl_batches = a.dl_batches or (5 if q else 100)
    a.dl_warmup = a.dl_warmup if a.dl_warmup is not None else (2 if q else 10)
    a.workers = [int(w) for w in a.workers.split(",") if w.strip()]
    a.cases = set(a.cases.split(","))
    if a.threads < 1 or a.epochs < 1 or a.repeats < 1 or a.dl_batches < 1:
        p.error("--threads, --epochs, --repeats and --dl-batches must be >= 1")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    data = load_dataset(a.data, a.root)
    load_seconds = time.perf_counter() - t0
    load_avg_start = os.getloadavg()
    x, y = data.train_x, data.train_y
    hwc = np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())  # what PIL wants
    labels = y.numpy()
    log(f"data {a.data}: {len(x)} train images, loaded in {load_seconds:.1f} s; threads {a.threads}")

    cases = []  # (name, augment, thunk)
    for aug in (False, True):
        tag = "augment" if aug else "plain"
        if "raylab" in a.cases:
            cases.append(("raylab", tag, lambda aug=aug: run_raylab(data, a.data, aug, a.epochs, a.threads)))
        if "bare" in a.cases:
            cases.append(("bare", tag, lambda aug=aug: run_bare(x, y, aug, a.epochs)))
        if "dataloader" in a.cases:
            for w in a.workers:
                cases.append((f"dataloader_w{w}", tag,
                              lambda aug=aug, w=w: run_dataloader(hwc, labels, aug, w, a.dl_batches, a.dl_warmup)))

    runs: dict[str, dict[str, list[dict]]] = {}
    for rep in range(a.repeats):
        shift = rep % len(cases)  # rotate the order: no case always runs first or last
        for name, tag, thunk in cases[shift:] + cases[:shift]:
            torch.set_num_threads(a.threads)  # a case may change it (train() sets cfg.threads)
            r = thunk()
            runs.setdefault(name, {}).setdefault(tag, []).append(r)
            log(f"repeat {rep + 1}/{a.repeats}  {name:<14} {tag:<8} {r['images_per_second']:8,.0f} img/s")

    def med(name, tag, key="images_per_second"):
        vals = [r[key] for r in runs.get(name, {}).get(tag, [])]
        return round(statistics.median(vals), 3) if vals else None

    def paired(num, den_names, tag, key="images_per_second"):
        """Median over repeats of num / best(den) within the same repeat."""
        if num not in runs or not all(d in runs for d in den_names):
            return None
        ratios = [runs[num][tag][i][key] / max(runs[d][tag][i][key] for d in den_names) for i in range(a.repeats)]
        return round(statistics.median(ratios), 3)

    tags = ("plain", "augment")
    dl_names = [f"dataloader_w{w}" for w in a.workers]
    ips = {name: {tag: med(name, tag) for tag in tags} for name in runs}
    ratios = {
        "raylab_over_bare": {tag: paired("raylab", ["bare"], tag) for tag in tags},
        "raylab_over_best_dataloader": {tag: paired("raylab", dl_names, tag) for tag in tags},
        # the same (a)/(b) in images per CPU-second of the process: robust to stolen cores
        "raylab_over_bare_cpu": {tag: paired("raylab", ["bare"], tag, "images_per_cpu_second") for tag in tags},
    }
    cpu_ips = {name: {tag: med(name, tag, "images_per_cpu_second") for tag in tags}
               for name in ("raylab", "bare") if name in runs}
    result = {
        "bench": "trainer",
        "model": "simplenn",
        "data": a.data,
        "train_images": len(x),
        "threads": a.threads,
        "batch_size": BATCH,
        "epochs_per_repeat": a.epochs,
        "repeats": a.repeats,
        "quick": a.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible, torch {torch.__version__}",
        "data_load_seconds": round(load_seconds, 2),
        # other tenants' load: above ~threads, wall-clock figures are inflated and noisy
        "load_average_1min": {"start": round(load_avg_start[0], 2), "end": round(os.getloadavg()[0], 2)},
        "images_per_second": ips,  # medians over repeats
        "images_per_cpu_second": cpu_ips,
        "ratios": ratios,          # medians of per-repeat (paired) ratios
        "targets": {"raylab_over_bare": TARGET_RAYLAB_OVER_BARE,
                    "raylab_over_best_dataloader_augment": TARGET_RAYLAB_OVER_DATALOADER_AUG},
        "meets_targets": {
            "raylab_over_bare": (None if None in ratios["raylab_over_bare"].values() else
                                 min(ratios["raylab_over_bare"].values()) >= TARGET_RAYLAB_OVER_BARE),
            "raylab_over_best_dataloader_augment": (
                None if ratios["raylab_over_best_dataloader"]["augment"] is None else
                ratios["raylab_over_best_dataloader"]["augment"] >= TARGET_RAYLAB_OVER_DATALOADER_AUG),
        },
        "raylab_seconds": {tag: {k: med("raylab", tag, k) for k in
                                 ("train_seconds", "epoch_seconds", "epoch0_eval_seconds", "wall_seconds")}
                           | {"epoch0_eval_images_per_second": round(
                               (len(x) + len(data.test_x)) / med("raylab", tag, "epoch0_eval_seconds"), 1)}
                           for tag in tags} if "raylab" in runs else None,
        "timing": {
            "raylab": "median over epochs of train()'s reported images_per_second (training phase only); "
                      "epoch_seconds adds the per-epoch evaluation of the test split, wall_seconds the whole "
                      "call including the epoch-0 evaluation of train and test",
            "bare": f"{a.epochs} full epoch(s) of {len(x)} images per repeat",
            "dataloader": f"{a.dl_batches} batches of {BATCH} per repeat, after {a.dl_warmup} untimed "
                          "warm-up batches (worker start-up excluded)",
        },
        "per_repeat_images_per_second": {name: {tag: [round(r["images_per_second"], 1) for r in rs]
                                                for tag, rs in per.items()} for name, per in runs.items()},
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
