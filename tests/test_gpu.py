"""The CUDA path of the training function: bf16 autocast, channels_last, torch.compile.

Marked `gpu` and skipped where no CUDA device is visible; `bench/gpu_check.py`
runs them (`pytest -m gpu`) on a lent GPU machine. RAYLAB_GPU_TEST_DEVICE=cpu
runs the same code with "cuda" replaced by the CPU (the gpu_check smoke run
does this, so a typo here is caught before the one GPU run, not during it).

Tolerances: bf16 keeps 8 mantissa bits (relative step 2**-8 = 0.4%), so a
loss computed from bf16 logits lands within ~1% of the fp32 one; after a few
SGD steps at lr 0.01 the two trajectories drift apart a little more, hence 5%.
A wrong device path (unnormalised input, wrong memory layout read as NCHW,
weights not updated) moves the loss by far more than that.
"""
import dataclasses
import math
import os

import torch

from raylab.train.checkpoints import load_checkpoint, save_checkpoint
from raylab.declare.config import TrialConfig
from raylab.data.sources import load_dataset
from raylab.train.models import build_model
from raylab.train.loop import train

try:
    import pytest
except ImportError:  # bench/gpu_check.py calls these functions directly where pytest is absent
    pytest = None

DEVICE = os.environ.get("RAYLAB_GPU_TEST_DEVICE", "cuda")
BF16_FIRST = 0.03   # relative: epoch 0, the same weights evaluated in bf16 vs fp32
BF16_TRAINED = 0.05  # relative: after one epoch (8 steps) trained in bf16 vs fp32
if pytest is not None:
    pytestmark = [pytest.mark.gpu,
                  pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(),
                                     reason="no CUDA device visible")]

IMAGES = 256  # synthetic training images: 8 steps of 32


def _data():
    return load_dataset(f"synthetic:{IMAGES}", "unused")  # synthetic data is generated, never cached


def _cfg(**kw) -> TrialConfig:
    base = dict(data=f"synthetic:{IMAGES}", epochs=1, lr=0.01, batch_size=32, threads=2, seed=0)
    return TrialConfig.from_dict({**base, **kw})


def _close(a: float, b: float, rel: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rel * abs(b)


def _losses(history: list[dict]) -> list[tuple[float, float]]:
    return [(r["train_loss"], r["val_loss"]) for r in history]


def _check_cuda_epoch_matches_cpu(model: str) -> None:
    data = _data()
    on_cpu = train(_cfg(model=model, device="cpu"), data)
    on_gpu = train(_cfg(model=model, device=DEVICE), data)
    (cpu0, cpu1), (gpu0, gpu1) = _losses(on_cpu.history), _losses(on_gpu.history)
    assert all(_close(g, c, BF16_FIRST) for g, c in zip(gpu0, cpu0)), (gpu0, cpu0)
    assert all(_close(g, c, BF16_TRAINED) for g, c in zip(gpu1, cpu1)), (gpu1, cpu1)
    assert gpu1[0] < gpu0[0]  # it trained: the epoch's loss is below the untrained model's


def test_cuda_epoch_of_simplenn_matches_cpu_loss():
    _check_cuda_epoch_matches_cpu("simplenn")


def test_cuda_epoch_of_resnet20_matches_cpu_loss():
    _check_cuda_epoch_matches_cpu("resnet20")


def test_resume_on_cuda_equals_the_uninterrupted_run():
    """Every RNG state (data order, crops, torch, CUDA) is in the checkpoint: epoch 2
    after a resume is the epoch 2 of a run that never stopped."""
    data, cfg = _data(), _cfg(device=DEVICE, epochs=2, augment=True)
    saved = {}
    before = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True  # the same conv algorithms in both runs
    try:
        whole = train(cfg, data)
        train(dataclasses.replace(cfg, epochs=1), data, report=lambda row, build: saved.update(ckpt=build()))
        resumed = train(cfg, data, resume=saved["ckpt"])
    finally:
        torch.backends.cudnn.deterministic = before
    assert [r["epoch"] for r in resumed.history] == [0, 1, 2]
    for got, want in zip(_losses(resumed.history)[2], _losses(whole.history)[2]):
        assert _close(got, want, 1e-3), (got, want)  # identical up to atomics' summation order


def test_checkpoint_written_on_gpu_resumes_on_cpu(tmp_path):
    data, cfg = _data(), _cfg(device=DEVICE, epochs=1)
    path = tmp_path / "trial.pt"
    train(cfg, data, report=lambda row, build: save_checkpoint(build(), path))
    ckpt = load_checkpoint(path)
    assert all(t.device.type == "cpu" for t in ckpt["model"].values())
    out = train(dataclasses.replace(cfg, device="cpu", epochs=2), data, resume=ckpt)
    assert [r["epoch"] for r in out.history] == [0, 1, 2]
    assert _losses(out.history)[:2] == _losses(ckpt["history"])
    assert math.isfinite(out.history[2]["train_loss"]) and out.history[2]["train_loss"] < out.history[0]["train_loss"]


def _check_channels_last_forward(model: str) -> None:
    """The models give the same logits from an NHWC (channels_last) tensor as from NCHW."""
    torch.manual_seed(0)
    net = build_model(model).to(DEVICE).eval()
    x = torch.randn(64, 3, 32, 32, device=DEVICE)
    with torch.no_grad():
        plain = net(x)
        nhwc = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    # TF32 convolutions (cuDNN's default) round operands to 10 mantissa bits: ~1e-3 relative.
    assert (nhwc - plain).norm() <= 1e-2 * plain.norm()


def test_channels_last_forward_of_simplenn():
    _check_channels_last_forward("simplenn")


def test_channels_last_forward_of_resnet20():
    _check_channels_last_forward("resnet20")


def test_compiled_training_matches_eager():
    data = _data()
    eager = train(_cfg(device=DEVICE), data)
    compiled = train(_cfg(device=DEVICE, compile=True), data)
    for got, want in zip(_losses(compiled.history)[1], _losses(eager.history)[1]):
        assert _close(got, want, BF16_TRAINED), (got, want)
