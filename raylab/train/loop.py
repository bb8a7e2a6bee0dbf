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

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from raylab.data.batches import eval_batches, train_batches
from raylab.data.sources import Dataset, holdout_split, load_dataset
from raylab.data.stats import with_stats
from raylab.declare.config import ConfigError, TrialConfig
from raylab.declare.registry import check_logits
from raylab.results import best_and_final, epoch_row
from raylab.results.contract import NEAR_ZERO, format_epoch
from raylab.train import checkpoints
from raylab.train.faults import InjectedFault, fault_point
from raylab.train.model_summary import model_summary
from raylab.train.models import build_model
from raylab.train.schedule import lr_at

EPOCH0_TRAIN_IMAGES = 10_000
Report = Callable[[dict, Callable[[], dict]], None]


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
    device = _device(cfg)
    _set_threads(cfg, device)
    data = data if data is not None else load_dataset(cfg.data, cfg.data_root, download=cfg.download)
    cfg = with_stats(cfg, data)  # MNIST, SVHN ...: their own normalisation unless the config sets one
    split = _split(cfg, data, device)
    # Every rank must draw the same permutation, so the data generator is seeded
    # from the config alone; each rank then keeps its own slice of it.
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # the seed fixes the initial weights
    model, summary = _model(cfg, data, device)
    optimizer = _optimizer(cfg, model)
    history: list[dict] = []
    start_epoch = 1
    if resume is not None:  # weights, optimiser, history and every RNG state of epoch k
        history, start_epoch = checkpoints.restore(resume, model, optimizer, gen, device)
    net = _wrap(cfg, model, device, world)

    def emit(row: dict) -> None:
        history.append(row)
        fault_point("report", row["epoch"])
        if report is not None:
            epoch = row["epoch"]
            report(row, lambda: checkpoints.build(cfg, epoch, model, optimizer, history, gen, device))

    if start_epoch == 1:
        emit(_epoch0(net, split, cfg, device, world, rank))
    status = "completed"
    show = progress and rank == 0
    for epoch in range(start_epoch, cfg.epochs + 1):
        row = _train_epoch(cfg, epoch, net, model, optimizer, split, gen, device, world, rank, show)
        emit(row)
        if show:
            print(format_epoch(row), flush=True)
        # A non-finite loss ends the trial as `diverged`, keeping its epochs.
        if not (math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])):
            status = "diverged"
            break
        if cfg.fail_at_epoch == epoch and resume is None:
            raise InjectedFault(f"fail_at_epoch={epoch}: injected fault for restart tests")

    return Outcome(status=status, history=history, **best_and_final(history), n_params=summary.n_params,
                   macs=summary.macs, wall_seconds=time.perf_counter() - started,
                   weights=histogram_rows(model, cfg.hist_bins))


def _set_threads(cfg: TrialConfig, device: torch.device) -> None:
    """The caller (Ray) decides how many CPUs we own; a config's `threads` beats it."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif device.type == "cpu" and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def _split(cfg: TrialConfig, data: Dataset, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(train_x, train_y, val_x, val_y) as uint8/int64 tensors moved once to the device."""
    if cfg.val_holdout:
        (train_x, train_y), (val_x, val_y) = holdout_split(data.train_x, data.train_y, cfg.val_holdout, seed=0)
    else:
        train_x, train_y, val_x, val_y = data.train_x, data.train_y, data.test_x, data.test_y
    if cfg.batch_size > len(train_x):
        raise ConfigError(f"batch_size {cfg.batch_size} is larger than the {len(train_x)} training images: "
                          "lower --batch-size or use more data")
    return tuple(t.to(device) for t in (train_x, train_y, val_x, val_y))


def _model(cfg: TrialConfig, data: Dataset, device: torch.device):
    model = build_model(cfg.model, num_classes=len(data.classes), in_channels=int(data.train_x.shape[1]),
                        batchnorm=cfg.batchnorm, activation=cfg.activation, shortcut=cfg.shortcut,
                        options=json.loads(cfg.model_options))
    summary = model_summary(model, tuple(data.train_x.shape[1:]), name=cfg.model)
    check_logits(summary.output, len(data.classes), cfg.model)  # a job file's model may return anything
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model, summary


def _wrap(cfg: TrialConfig, model: nn.Module, device: torch.device, world: int) -> nn.Module:
    """The module the steps run through: DDP across ranks, compiled on CUDA if asked."""
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile and device.type == "cuda":
        net = torch.compile(net)
    return net


def _epoch0(net, split, cfg: TrialConfig, device, world: int, rank: int) -> dict:
    """The untrained model, for the ~2.30 starting loss. Its train metrics come
    from every k-th image (<= 10,000, all classes), not a full pass."""
    train_x, train_y, val_x, val_y = split
    t0 = time.perf_counter()
    stride = -(-len(train_x) // EPOCH0_TRAIN_IMAGES)
    train_loss, train_acc = evaluate(net, train_x[::stride], train_y[::stride], cfg, device, world, rank)
    val_loss, val_acc = evaluate(net, val_x, val_y, cfg, device, world, rank)
    return epoch_row(0, train_loss, train_acc, val_loss, val_acc, math.nan, time.perf_counter() - t0, math.nan, 0)


def _train_epoch(cfg: TrialConfig, epoch: int, net, model, optimizer, split, gen, device,
                 world: int, rank: int, show: bool) -> dict:
    """One pass over this rank's shard, then an evaluation: the epoch's metrics row."""
    train_x, train_y, val_x, val_y = split
    batch = max(cfg.batch_size // world, 1)
    lr = lr_at(cfg, epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    net.train()
    regularized = _regularized(cfg, model)
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    batches = train_batches(train_x, train_y, batch, generator=gen, augment=cfg.augment,
                            mean=cfg.mean, std=cfg.std, shard=(rank, world), pad=cfg.pad, vflip=cfg.vflip)
    steps = -(-len(train_x) // (batch * world))  # batches per epoch, for the bar
    for step, (xb, yb) in enumerate(_progress(batches, steps, f"epoch {epoch}/{cfg.epochs}", show)):
        if step == steps // 2:
            fault_point("train", epoch)
        with _autocast(device):
            logits = _forward(net, xb, device)
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
    fault_point("eval", epoch)
    val_loss, val_acc = evaluate(net, val_x, val_y, cfg, device, world, rank)
    return epoch_row(epoch, train_loss, train_acc, val_loss, val_acc, lr, time.perf_counter() - t0,
                     totals[2].item() / max(train_seconds, 1e-9), int(totals[2].item()))


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
        with _autocast(device):
            logits = _forward(net, xb, device)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum").double()
        correct += (logits.argmax(1) == yb).sum()
    totals = _all_reduce(torch.stack([loss_sum, correct.double(), torch.tensor(float(len(y)), device=device, dtype=torch.float64)]), world)
    return (totals[0] / totals[2]).item(), (totals[1] / totals[2]).item()


def histogram_rows(model: nn.Module, bins: int) -> list[dict]:
    """Per-parameter histogram over a symmetric range, so L1 (many exact zeros)
    and L2 (small but non-zero) models can be compared bin by bin. A diverged
    model's NaN/inf weights are left out; a layer with none finite has no rows.

    Besides the `bins` equal bins, edges at +-NEAR_ZERO (when inside the range)
    make the fraction of |w| < NEAR_ZERO exact from the rows: an equal bin is
    2*max|w|/64, ~0.005 for SimpleNN's fc1, too coarse to resolve 1e-3."""
    rows = []
    for name, p in model.named_parameters():
        w = p.detach().float().cpu().numpy().ravel()
        w = w[np.isfinite(w)]
        if w.size == 0:
            continue
        edge = float(np.abs(w).max()) or 1.0
        grid = np.linspace(-edge, edge, bins + 1)
        if NEAR_ZERO < edge:
            grid = np.union1d(grid, [-NEAR_ZERO, NEAR_ZERO])
        counts, edges = np.histogram(w, bins=grid)
        rows += [{"layer": name, "bin_left": float(lo), "bin_right": float(hi), "count": int(c)}
                 for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
    return rows


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
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def _forward(net: nn.Module, xb: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The logits of a batch; on CUDA in channels-last layout, as the model was moved (_model)."""
    if device.type == "cuda":
        xb = xb.contiguous(memory_format=torch.channels_last)
    return net(xb)


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


def _progress(batches, total: int, desc: str, show: bool):
    """A tqdm bar over one epoch's batches (cleared when the epoch ends), or the batches as they are."""
    if not show:
        return batches
    from tqdm import tqdm
    return tqdm(batches, total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
