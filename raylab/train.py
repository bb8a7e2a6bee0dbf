"""The one training function every trial runs: `raylab train`, a Tune trial and a DDP worker.

    train(cfg, data, report) -> Outcome

It knows nothing about Ray or Parquet. Once per epoch it calls
`report(row, checkpoint)` with the epoch's metrics and a function that builds
the full checkpoint on demand (so a caller that does not persist pays nothing).
Epoch 0 is an evaluation before any training step: the ~ln 10 = 2.30 loss of
an untrained 10-way classifier.

Under torch.distributed (a Ray Train worker) the same code shards each epoch's
permutation across ranks, wraps the model in DDP and all-reduces the metric
sums, so every rank reports the same numbers.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from raylab.checkpoints import CHECKPOINT_VERSION
from raylab.config import ConfigError, TrialConfig
from raylab.data import Dataset, eval_batches, holdout_split, load_dataset, train_batches
from raylab.models import build_model, summarize
from raylab.datasets import with_stats
from raylab.registry import check_logits
from raylab.schedule import lr_at

EPOCH0_TRAIN_IMAGES = 10_000
Report = Callable[[dict, Callable[[], dict]], None]


class InjectedFault(RuntimeError):
    """Raised by `fail_at_epoch` to test restarts; never raised in normal runs."""


@dataclass
class Outcome:
    status: str                      # completed | diverged
    history: list[dict]              # one row per epoch, epoch 0 first
    best_val_acc: float
    best_epoch: int
    final_val_acc: float
    n_params: int
    macs: int
    wall_seconds: float
    weights: list[dict] = field(default_factory=list)  # histogram rows: layer, bin_left, bin_right, count


def train(
    cfg: TrialConfig,
    data: Dataset | None = None,
    report: Report | None = None,
    resume: dict | None = None,
    progress: bool = False,
) -> Outcome:
    started = time.perf_counter()
    rank, world = (dist.get_rank(), dist.get_world_size()) if _distributed() else (0, 1)

    # --- device and threads: the caller (Ray) decides how many CPUs we own
    device = _device(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif device.type == "cpu" and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    # --- data: uint8 tensors moved once to the device; batches are cut there
    data = data if data is not None else load_dataset(cfg.data, cfg.data_root, download=cfg.download)
    if cfg.val_holdout:
        (train_x, train_y), (val_x, val_y) = holdout_split(data.train_x, data.train_y, cfg.val_holdout, seed=0)
    else:
        train_x, train_y, val_x, val_y = data.train_x, data.train_y, data.test_x, data.test_y
    if cfg.batch_size > len(train_x):
        raise ConfigError(f"batch_size {cfg.batch_size} is larger than the {len(train_x)} training images: "
                          "lower --batch-size or use more data")
    train_x, train_y, val_x, val_y = (t.to(device) for t in (train_x, train_y, val_x, val_y))
    # Every rank must draw the same permutation, so the data generator is seeded
    # from the config alone; each rank then keeps its own slice of it.
    gen = torch.Generator().manual_seed(cfg.seed)

    # --- model and optimiser (the seed fixes the initial weights)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, num_classes=len(data.classes), in_channels=int(data.train_x.shape[1]),
                        batchnorm=cfg.batchnorm, activation=cfg.activation, shortcut=cfg.shortcut,
                        options=json.loads(cfg.model_options))
    summary = summarize(model, tuple(data.train_x.shape[1:]), name=cfg.model)
    check_logits(summary.output, len(data.classes), cfg.model)  # a job file's model may return anything
    cfg = with_stats(cfg, data)  # MNIST, SVHN ...: their own normalisation unless the config sets one
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(cfg, model)
    history: list[dict] = []
    start_epoch = 1

    # --- resume: weights, optimiser, history and every RNG state of epoch k
    if resume is not None:
        model.load_state_dict(resume["model"])
        load_optimizer_state(optimizer, resume["optimizer"])
        history = list(resume["history"])
        gen.set_state(resume["rng"]["data"])
        torch.set_rng_state(resume["rng"]["torch"])
        if device.type == "cuda" and "cuda" in resume["rng"]:
            torch.cuda.set_rng_state(resume["rng"]["cuda"], device)
        start_epoch = int(resume["epoch"]) + 1

    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile and device.type == "cuda":
        net = torch.compile(net)
    regularized = _regularized(cfg, model)
    batch = max(cfg.batch_size // world, 1)

    def checkpoint(epoch: int) -> Callable[[], dict]:
        def build() -> dict:
            rng = {"data": gen.get_state(), "torch": torch.get_rng_state()}
            if device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(device)
            return {"version": CHECKPOINT_VERSION, "config": cfg.to_json(), "epoch": epoch,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "history": history, "rng": rng}
        return build

    def emit(row: dict) -> None:
        history.append(row)
        if report is not None:
            report(row, checkpoint(row["epoch"]))

    # --- epoch 0: the untrained model, for the ~2.30 starting loss. Its train
    # metrics come from every k-th image (<= 10,000, all classes), not a full pass.
    if start_epoch == 1:
        t0 = time.perf_counter()
        stride = -(-len(train_x) // EPOCH0_TRAIN_IMAGES)
        train_loss, train_acc = evaluate(net, train_x[::stride], train_y[::stride], cfg, device, world, rank)
        val_loss, val_acc = evaluate(net, val_x, val_y, cfg, device, world, rank)
        emit(_row(0, train_loss, train_acc, val_loss, val_acc, math.nan, time.perf_counter() - t0, math.nan, 0))

    status = "completed"
    epochs = range(start_epoch, cfg.epochs + 1)
    show = progress and rank == 0
    steps = -(-len(train_x) // (batch * world))  # batches per epoch, for the bar
    for epoch in epochs:
        # --- train one epoch
        lr = lr_at(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        net.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen = 0
        batches = train_batches(train_x, train_y, batch, generator=gen, augment=cfg.augment,
                                mean=cfg.mean, std=cfg.std, shard=(rank, world))
        for xb, yb in _progress(batches, steps, f"epoch {epoch}/{cfg.epochs}", show):
            if device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(device):
                logits = net(xb)
                loss = F.cross_entropy(logits, yb)
            objective = loss + l1_penalty(cfg.l1, regularized) if cfg.l1 else loss
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            # Accumulate on the device: a .item() per step would sync a GPU every batch.
            loss_sum += loss.detach().double() * len(yb)
            correct += (logits.argmax(1) == yb).sum()
            seen += len(yb)
        train_seconds = time.perf_counter() - t0
        totals = _all_reduce(torch.stack([loss_sum, correct.double(), torch.tensor(float(seen), device=device, dtype=torch.float64)]), world)
        train_loss, train_acc = (totals[0] / totals[2]).item(), (totals[1] / totals[2]).item()

        # --- evaluate, record, report (with the checkpoint of this epoch)
        val_loss, val_acc = evaluate(net, val_x, val_y, cfg, device, world, rank)
        row = _row(epoch, train_loss, train_acc, val_loss, val_acc, lr,
                   time.perf_counter() - t0, totals[2].item() / max(train_seconds, 1e-9), int(totals[2].item()))
        emit(row)
        if show:
            print(format_epoch(row), flush=True)

        # --- a non-finite loss ends the trial as `diverged`, keeping its epochs
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            status = "diverged"
            break
        if cfg.fail_at_epoch == epoch and resume is None:
            raise InjectedFault(f"fail_at_epoch={epoch}: injected fault for restart tests")

    best = max(history, key=lambda r: (r["val_acc"] if math.isfinite(r["val_acc"]) else -1.0))
    return Outcome(status=status, history=history, best_val_acc=best["val_acc"], best_epoch=best["epoch"],
                   final_val_acc=history[-1]["val_acc"], n_params=summary.n_params, macs=summary.macs,
                   wall_seconds=time.perf_counter() - started, weights=weight_histograms(model, cfg.hist_bins))


def l1_penalty(l1: float, params: list[nn.Parameter]) -> torch.Tensor:
    """l1 * sum|w| over the live parameters. Summing `p.data` instead would add a
    constant to the loss: no gradient, no regularisation."""
    return l1 * sum(p.abs().sum() for p in params)


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrialConfig,
             device: torch.device, world: int = 1, rank: int = 0) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over (x, y); under DDP each rank takes a slice."""
    net.eval()
    x, y = x[rank::world], y[rank::world]
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for xb, yb in eval_batches(x, y, cfg.eval_batch_size, mean=cfg.mean, std=cfg.std):
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            logits = net(xb)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum").double()
        correct += (logits.argmax(1) == yb).sum()
    totals = _all_reduce(torch.stack([loss_sum, correct.double(), torch.tensor(float(len(y)), device=device, dtype=torch.float64)]), world)
    return (totals[0] / totals[2]).item(), (totals[1] / totals[2]).item()


def weight_histograms(model: nn.Module, bins: int) -> list[dict]:
    """Per-parameter histogram over a symmetric range, so L1 (many exact zeros)
    and L2 (small but non-zero) models can be compared bin by bin. A diverged
    model's NaN/inf weights are left out; a layer with none finite has no rows."""
    rows = []
    for name, p in model.named_parameters():
        w = p.detach().float().cpu().numpy().ravel()
        w = w[np.isfinite(w)]
        if w.size == 0:
            continue
        edge = float(np.abs(w).max()) or 1.0
        counts, edges = np.histogram(w, bins=bins, range=(-edge, edge))
        rows += [{"layer": name, "bin_left": float(lo), "bin_right": float(hi), "count": int(c)}
                 for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
    return rows


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Restore moments and step counts, but keep this config's hyperparameters: under PBT
    the checkpoint is another trial's, and its momentum and weight decay are not ours
    (lr is set every epoch from the config anyway)."""
    keep = [{k: g[k] for k in ("weight_decay", "momentum", "betas") if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, values in zip(optimizer.param_groups, keep):
        group.update(values)


def check_resumable(ckpt: dict, cfg: TrialConfig) -> None:
    """Refuse a checkpoint of another model or run: its weights would load into the wrong net."""
    saved = json.loads(ckpt["config"])
    for name in ("model", "batchnorm", "activation", "shortcut", "seed"):
        if saved.get(name) != getattr(cfg, name):
            raise ConfigError(f"checkpoint was made with {name}={saved.get(name)!r}, "
                             f"this run has {name}={getattr(cfg, name)!r}: use another --out")


# ------------------------------------------------------------------ helpers
def _device(cfg: TrialConfig) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' asked for but no CUDA device is visible: use --device cpu")
        # Ray Train sets each worker's current device; a plain process gets cuda:0.
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _autocast(device: torch.device):
    # bf16 on GPUs: no loss scaling needed; on the CPU autocast slows small convs down.
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else _Null()


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _regularized(cfg: TrialConfig, model: nn.Module) -> list[nn.Parameter]:
    if cfg.regularize == "weights":  # conv and linear weights only: no biases, no BN scales
        return [p for p in model.parameters() if p.ndim > 1]
    return list(model.parameters())


def _optimizer(cfg: TrialConfig, model: nn.Module) -> torch.optim.Optimizer:
    decay = {id(p) for p in _regularized(cfg, model)}
    groups = [
        {"params": [p for p in model.parameters() if id(p) in decay], "weight_decay": cfg.weight_decay},
        {"params": [p for p in model.parameters() if id(p) not in decay], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def _all_reduce(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t)
    return t


def _row(epoch: int, train_loss: float, train_acc: float, val_loss: float, val_acc: float,
         lr: float, seconds: float, ips: float, images: int) -> dict:
    # train_images: images trained on this epoch, summed over DDP ranks (the whole split once).
    return {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
            "val_acc": val_acc, "lr": lr, "epoch_seconds": seconds, "images_per_second": ips,
            "train_images": images}


def format_epoch(row: dict) -> str:
    """The one-line summary `raylab train` prints per epoch."""
    return (f"epoch {row['epoch']:>3}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  lr {row['lr']:.4g}  "
            f"{row['images_per_second']:,.0f} img/s")


def _progress(batches, total: int, desc: str, show: bool):
    """A tqdm bar over one epoch's batches (cleared when the epoch ends), or the batches as they are."""
    if not show:
        return batches
    from tqdm import tqdm
    return tqdm(batches, total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
