"""The steps of bench/gpu_check.py, each run in its own process (see that file's docstring).

Every step fills a `Record` and saves it at each progress point, so a step
killed at its time cap still leaves what it had measured. Timings synchronise
the device before reading the clock; the first epoch of every case is warm-up
(CUDA context, cuDNN algorithm choice, compilation) and is reported apart.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH, LR, MOMENTUM, WEIGHT_DECAY = 128, 0.01, 0.9, 1e-4  # the report's SimpleNN settings
REPORT_RESNET20_ACC = 0.924   # the course report, 200 epochs (jobs/lab3_resnet20.py)
FULL_EPOCHS, FULL_STEP = 200, 50  # ResNet-20's schedule: lr 0.1, x0.1 every 50 epochs


class Record(dict):
    """A step's results, rewritten to its file at each `save()` (atomic rename)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self, indent=1, default=str))
        os.replace(tmp, self.path)


# ------------------------------------------------------------------ helpers
def device_for(ctx: dict):
    import torch
    return torch.device("cpu" if ctx["smoke"] else "cuda")


def sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dataset_for(ctx: dict):
    from raylab.data.sources import load_dataset
    return load_dataset(ctx["data"], ctx["cache"], download=False)


def subset(data, n_train: int, n_test: int):
    return dataclasses.replace(data, train_x=data.train_x[:n_train], train_y=data.train_y[:n_train],
                               test_x=data.test_x[:n_test], test_y=data.test_y[:n_test])


def steady(rows: list[dict], key: str) -> float:
    """Median over the epochs after the first (the first carries the warm-up)."""
    return statistics.median(r[key] for r in (rows[1:] or rows))


def _ratio(a, b):
    return round(a / b, 3) if a and b else None


# -------------------------------------------------------------------- steps
def step_env(ctx: dict, rec: Record) -> None:
    rec.update(env_info(ctx["smoke"]))


def env_info(smoke: bool) -> dict:
    import torch
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "cuda_available": torch.cuda.is_available()}
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except ImportError:
        info["torchvision"] = None
    try:
        import ray  # noqa: F401  (absent on the GPU machine; noted so a reader knows)
        info["ray"] = ray.__version__
    except ImportError:
        info["ray"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(card=p.name, capability=f"{p.major}.{p.minor}", multiprocessors=p.multi_processor_count,
                    memory_gib=round(p.total_memory / 2**30, 1),
                    tf32_conv=torch.backends.cudnn.allow_tf32, tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
        smi = nvidia_smi("--query-gpu=name,driver_version,memory.total", "--format=csv,noheader")
        info["nvidia_smi"] = smi.strip() if smi else None
    elif not smoke:
        raise RuntimeError("no CUDA device visible to torch: this script measures a GPU (use --smoke on a CPU)")
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                            text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None  # the GPU machine gets the tree without .git
    return info


def nvidia_smi(*args: str) -> str | None:
    try:
        return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def step_data(ctx: dict, rec: Record) -> None:
    t0 = time.perf_counter()
    data = dataset_for(ctx)
    rec.update(source=ctx["data"], seconds_to_load=round(time.perf_counter() - t0, 1),
               train_images=len(data.train_x), test_images=len(data.test_x), classes=len(data.classes))


def step_gpu_tests(ctx: dict, rec: Record) -> None:
    """`pytest -m gpu tests/test_gpu.py`; in --smoke the same tests on the CPU."""
    if ctx["smoke"]:
        os.environ["RAYLAB_GPU_TEST_DEVICE"] = "cpu"
    try:
        import pytest
    except ImportError:
        pytest = None
    if pytest is None:
        rec["runner"] = "direct (pytest is not installed here)"
        rec["tests"] = _run_tests_directly(ROOT / "tests" / "test_gpu.py")
    else:
        rec["runner"] = f"pytest {pytest.__version__}"
        xml = Path(ctx["scratch"]) / "gpu_tests.xml"
        # --smoke leaves out ResNet-20 (half the step's CPU time): its tests share their code with SimpleNN's.
        select = ["-k", "not resnet20"] if ctx["smoke"] else []
        rec["pytest_args"] = ["-m", "gpu", *select]
        rec["pytest_exit"] = int(pytest.main(["-m", "gpu", *select, "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                                              "--rootdir", str(ROOT), str(ROOT / "tests" / "test_gpu.py")]))
        rec["tests"] = _junit_outcomes(xml)
    counts = {k: sum(t["outcome"] == k for t in rec["tests"]) for k in ("passed", "failed", "skipped")}
    rec.update(counts)
    bad = [t["name"] for t in rec["tests"] if t["outcome"] == "failed"]
    if bad or not rec["tests"]:
        raise AssertionError(f"{len(bad)} of {len(rec['tests'])} GPU tests failed: {bad}" if bad else "no GPU tests ran")


def _junit_outcomes(xml: Path) -> list[dict]:
    out = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        outcome = "failed" if bad is not None else "skipped" if case.find("skipped") is not None else "passed"
        out.append({"name": case.get("name"), "outcome": outcome, "seconds": float(case.get("time", 0)),
                    "message": (bad.get("message") or "")[:500] if bad is not None else None})
    return out


def _run_tests_directly(path: Path) -> list[dict]:
    import importlib.util
    spec = importlib.util.spec_from_file_location("test_gpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = []
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if not name.startswith("test_"):
            continue
        t0 = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                fn(**({"tmp_path": Path(tmp)} if "tmp_path" in inspect.signature(fn).parameters else {}))
            outcome, message = "passed", None
        except Exception as exc:
            outcome, message = "failed", f"{type(exc).__name__}: {exc}"[:500]
        out.append({"name": name, "outcome": outcome, "seconds": round(time.perf_counter() - t0, 2), "message": message})
    return out


def step_throughput(ctx: dict, rec: Record) -> None:
    """Images/s of the training phase, same model, data, batch and optimiser in every case."""
    import torch
    device = device_for(ctx)
    smoke = ctx["smoke"]
    # Whole batches (no odd last one); --smoke: bf16 convolutions on a CPU run at ~10 images/s.
    n_train, n_test, epochs, batch = (32, 16, 2, 16) if smoke else (160 * BATCH, 2048, 3, BATCH)
    data = subset(dataset_for(ctx), n_train, n_test)
    x, y = data.train_x.to(device), data.train_y.to(device)
    rec.update(train_images=n_train, epochs=epochs, batch=batch, device=str(device),
               trainer_precision="bf16 autocast (fixed on CUDA: TrialConfig has no precision field)",
               cudnn_benchmark=torch.backends.cudnn.benchmark, cases={})
    compile_ok = not smoke  # inductor on this 2-core CPU takes minutes; the trainer ignores compile on CPU
    for model in ("simplenn", "resnet20"):
        # fp32 vs bf16 is measured eager and eager vs compiled in bf16: a fourth compile
        # per model (~30-60 s each, a guess) would not buy a number the others lack.
        for kind, precision, compiled in (("bare", "bf16", False), ("trainer", "bf16", False),
                                          ("bare", "fp32", False), ("bare", "bf16", True),
                                          ("trainer", "bf16", True)):
            key = f"{model}/{kind}/{precision}/{'compiled' if compiled else 'eager'}"
            if compiled and not compile_ok:
                rec["cases"][key] = {"skipped": "torch.compile is not timed in --smoke"}
                continue
            try:
                if kind == "bare":
                    case = bare_loop(model, x, y, device, precision, compiled, epochs, batch)
                else:
                    case = trainer_case(model, data, device, compiled, epochs, batch)
            except Exception as exc:  # one case failing (a compile error, say) leaves the others
                case = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
            rec["cases"][key] = case
            rec["ratios"] = throughput_ratios(rec["cases"])
            rec.save()


def bare_loop(model_name: str, x, y, device, precision: str, compiled: bool, epochs: int, batch: int) -> dict:
    """The speed of light: permutation, normalise, forward/backward/step, nothing else."""
    import torch
    import torch.nn.functional as F
    from raylab.declare.config import CIFAR_MEAN, CIFAR_STD
    from raylab.train.models import build_model
    torch.manual_seed(0)
    model = build_model(model_name).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    net = torch.compile(model) if compiled else model
    mean = torch.tensor(CIFAR_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=device).view(1, 3, 1, 1)
    seconds = []
    for _ in range(epochs):
        sync(device)
        t0 = time.perf_counter()
        perm = torch.randperm(len(x), device=device)
        for start in range(0, len(x), batch):
            idx = perm[start:start + batch]
            xb = ((x[idx].float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(net(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        seconds.append(time.perf_counter() - t0)
    steady = statistics.median(seconds[1:] or seconds)
    return {"images_per_second": round(len(x) / steady), "first_epoch_seconds": round(seconds[0], 2),
            "steady_epoch_seconds": round(steady, 3), "final_loss": round(loss.item(), 4)}


def trainer_case(model: str, data, device, compiled: bool, epochs: int, batch: int) -> dict:
    """raylab.train.loop.train as a trial calls it; images/s is its own per-epoch training-phase figure."""
    from raylab.declare.config import TrialConfig
    from raylab.train.loop import train
    cfg = TrialConfig.from_dict(model=model, data=data.source, epochs=epochs, device=device.type,
                                compile=compiled, batch_size=batch, lr=LR, momentum=MOMENTUM,
                                weight_decay=WEIGHT_DECAY, seed=0)
    rows = train(cfg, data=data).history[1:]
    return {"images_per_second": round(steady(rows, "images_per_second")),
            "first_epoch_seconds": round(rows[0]["epoch_seconds"], 2),
            "steady_epoch_seconds": round(steady(rows, "epoch_seconds"), 3),
            "final_loss": round(rows[-1]["train_loss"], 4)}


def throughput_ratios(cases: dict) -> dict:
    def ips(key):
        return cases.get(key, {}).get("images_per_second")

    out = {}
    for m in ("simplenn", "resnet20"):
        for mode in ("eager", "compiled"):
            out[f"{m}/trainer_over_bare/bf16/{mode}"] = _ratio(ips(f"{m}/trainer/bf16/{mode}"), ips(f"{m}/bare/bf16/{mode}"))
            out[f"{m}/bf16_over_fp32/bare/{mode}"] = _ratio(ips(f"{m}/bare/bf16/{mode}"), ips(f"{m}/bare/fp32/{mode}"))
        for kind in ("bare", "trainer"):
            out[f"{m}/compiled_over_eager/{kind}/bf16"] = _ratio(ips(f"{m}/{kind}/bf16/compiled"), ips(f"{m}/{kind}/bf16/eager"))
    return {k: v for k, v in out.items() if v is not None}
