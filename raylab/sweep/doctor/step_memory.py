"""How much memory one training step of a trial needs, on a GPU (measured) or a CPU (counted).

    gpu_step(trial, shape, classes, data_bytes)  in a task holding the trial's GPU share:
                                                 peak bytes of one real step, data set included
    cpu_step(cfg, shape, classes)                weights, gradients, optimiser state and the
                                                 activations autograd keeps, at the batch size

On a GPU the step is `train()` itself for one epoch of exactly one batch (plus
its evaluation at eval_batch_size), and the peak is what the caching allocator
reserved; the trial's real data set then replaces the one-batch one, since a
trial keeps its whole split on the device (raylab/train/loop.py). A step too
big for the GPU fails with CUDA's out-of-memory error, which is an answer too.

On a CPU the same step at a batch that does not fit would not fail cleanly:
the kernel's OOM killer ends the process. So there the step runs on a small
batch, autograd's saved tensors are counted (the activations a step holds
until its backward pass) and scaled to the batch size, which they grow with
linearly; weights, gradients and optimiser state are counted from the model.
"""
from __future__ import annotations

import json
import math

from raylab.declare.config import TrialConfig

PROBE_BATCH = 8  # images of the counted CPU step: activations are scaled from it to the batch size


def step_config(trial: dict, workers: int = 1) -> TrialConfig:
    """The trial's config for one step: one epoch, the per-worker batch of a DDP trial."""
    return TrialConfig.from_dict({**trial, "epochs": 1, "val_holdout": 0, "fail_at_epoch": 0,
                                  "batch_size": max(int(trial["batch_size"]) // max(workers, 1), 1)})


def cpu_step(cfg: TrialConfig, shape: tuple[int, ...], classes: int) -> int:
    """Bytes one training step of `cfg` holds at its batch size on a CPU (see module docstring)."""
    import torch
    import torch.nn.functional as F

    from raylab.train.models import build_model

    torch.manual_seed(0)
    model = build_model(cfg.model, num_classes=classes, in_channels=shape[0], batchnorm=cfg.batchnorm,
                        activation=cfg.activation, shortcut=cfg.shortcut, options=json.loads(cfg.model_options))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    own = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:  # a weight saved for backward is counted once, above
            saved[storage.data_ptr()] = storage.nbytes()
        return t  # kept alive until backward, so no two saved tensors share an address

    batch = min(cfg.batch_size, PROBE_BATCH)
    x, y = torch.randn(batch, *shape), torch.randint(classes, (batch,))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    moments = {"adam": 2}.get(cfg.optimizer, 1 if cfg.momentum else 0)  # SGD keeps one buffer with momentum
    return int(weights * (2 + moments) + sum(saved.values()) * cfg.batch_size / batch)


def gpu_step(trial: dict, code: bytes | None, shape: tuple[int, ...], classes: int, data_bytes: int,
             workers: int = 1) -> dict:
    """In a Ray task holding the trial's GPU share: {"peak", "total", "free", "oom", "name"} in bytes."""
    import torch

    from raylab.sweep.user_models import install
    from raylab.train.loop import train

    install(code)  # a job file's model, shipped by value as for a trial
    cfg = step_config({**trial, "device": "cuda"}, workers)
    data = one_batch(cfg, shape, classes)
    device = torch.cuda.current_device()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    oom = False
    try:
        train(cfg, data)
    except torch.cuda.OutOfMemoryError:
        oom = True
    peak = torch.cuda.max_memory_reserved(device)
    tiny = sum(t.numel() * t.element_size() for t in (data.train_x, data.train_y, data.test_x, data.test_y))
    free, total = torch.cuda.mem_get_info(device)
    return {"peak": int(peak - tiny + data_bytes), "total": int(total), "free": int(free), "oom": oom,
            "name": torch.cuda.get_device_name(device)}


def one_batch(cfg: TrialConfig, shape: tuple[int, ...], classes: int):
    """A data set of exactly one training batch and one evaluation batch of random images."""
    import torch

    from raylab.data.sources import Dataset

    gen = torch.Generator().manual_seed(0)
    n_train, n_test = cfg.batch_size, cfg.eval_batch_size

    def images(n: int):
        return torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen)

    def labels(n: int):
        return torch.arange(n, dtype=torch.int64) % classes

    # The trial's source name: a data set's own normalisation is looked up by it (raylab/data/datasets.py).
    return Dataset(source=cfg.data, classes=[str(i) for i in range(classes)], train_x=images(n_train),
                   train_y=labels(n_train), test_x=images(n_test), test_y=labels(n_test))


def gib(n: float | None) -> str:
    """Bytes as people read them: 0.7 GiB, or 310 MiB below one GiB."""
    if n is None or not math.isfinite(n):
        return "?"
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
