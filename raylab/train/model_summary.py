"""A model's parameter table and multiply-accumulates per image, for `raylab models`,
the trial's `n_params` / `macs` columns and the models.py docstring check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class ModelSummary:
    name: str
    params: list[tuple[str, tuple[int, ...]]]  # (parameter name, shape), in registration order
    n_params: int                              # trainable and frozen parameters (not BN buffers)
    macs: int                                  # multiply-accumulates per image, conv + linear only
    output: object = None                      # what the model returned for one zero image (checked for logits)


def model_summary(model: nn.Module, input_shape: tuple[int, ...] = (3, 32, 32),
              name: str = "") -> ModelSummary:
    """Parameter shapes and MACs per image, from one forward pass on a zero
    image in eval mode (so BN running stats are untouched); each module's
    training flag is restored afterwards."""
    macs = 0

    def count(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(m, nn.Conv2d):  # each output element: in/groups * kh * kw MACs
            kh, kw = m.kernel_size
            macs += out.numel() * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            macs += out.numel() * m.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    modes = {m: m.training for m in model.modules()}
    first = next(model.parameters(), None)
    x = torch.zeros(1, *input_shape,  # batch of one, so the counts are per image
                    device=first.device if first is not None else None,
                    dtype=first.dtype if first is not None else None)
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    params = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    return ModelSummary(name=name or type(model).__name__, params=params,
                        n_params=sum(p.numel() for p in model.parameters()), macs=macs, output=out)


def format_summary(s: ModelSummary) -> str:
    """A table for `raylab models`: name, shape, count per parameter; then totals."""
    rows = [(n, "x".join(map(str, shape)), f"{math.prod(shape):,}") for n, shape in s.params]
    w0 = max([len("parameter")] + [len(r[0]) for r in rows])
    w1 = max([len("shape")] + [len(r[1]) for r in rows])
    w2 = max([len("count"), len(f"{s.n_params:,}")] + [len(r[2]) for r in rows])
    lines = [s.name, f"{'parameter':<{w0}}  {'shape':<{w1}}  {'count':>{w2}}",
             "-" * (w0 + w1 + w2 + 4)]
    lines += [f"{n:<{w0}}  {shape:<{w1}}  {c:>{w2}}" for n, shape, c in rows]
    lines.append("-" * (w0 + w1 + w2 + 4))
    macs = f"{s.macs / 1e6:.{2 if s.macs < 1e6 else 1}f}M"  # SimpleNN's 0.72M, not 0.7M
    lines.append(f"params {s.n_params:,} ({s.n_params / 1e6:.2f}M)   MACs/image {s.macs:,} ({macs})")
    return "\n".join(lines)
