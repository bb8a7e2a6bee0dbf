"""GPU acceptance in one prepared script: run once on a lent GPU machine, read the JSON.

    make gpu-data                              # here: copy CIFAR-10 into .gpu-data/ (ignored)
    run(command="make gpu-check", carry=[".gpu-data"], timeout_s=540)   # on the GPU machine
    python bench/gpu_check.py --smoke          # CPU, tiny sizes (tests/test_gpu_check.py)
    python bench/gpu_check.py --steps throughput,resnet20   # a subset

The GPU machine has Python 3.12, torch 2.11 and torchvision 0.26 but no Ray, no
pip and no network; only the working tree travels (64 MiB a call). So this
script installs nothing and imports raylab from the checkout it sits in.
raylab entry points it calls: raylab.train.loop.train, raylab.declare.config.TrialConfig,
raylab.data.sources.load_dataset, raylab.train.models.build_model, and (in the sharing
workers, as a Tune trial does every epoch) raylab.train.checkpoints.save_checkpoint.

Steps, each in its own process under its own time cap (a step that fails or
runs out of time records its error and what it had measured; the rest go on).
The JSON file is rewritten after every step (each step saves its own partial
record at every progress point, which is what a step killed at its cap leaves):
    env         card, driver, torch / CUDA / cuDNN versions, CPU count
    data        decode the CIFAR copy once into the cache the others read
    gpu_tests   pytest -m gpu tests/test_gpu.py (run directly where pytest is absent)
    throughput  the trainer vs a bare PyTorch loop, SimpleNN and ResNet-20,
                eager vs compiled, fp32 vs bf16 (bare loop), ratios
    sharing     1, 4 and 8 SimpleNN trial processes on one GPU at once:
                aggregate images/s and GPU memory per trial, and the share to use
    resnet20    ResNet-20 on the 200-epoch step schedule compressed into the
                epochs that fit the time left, with the projected full-run time

Why GPU sharing is measured with plain processes, not Ray: a fractional-GPU
Tune trial (`num_gpus=0.25`) is, on the GPU, nothing but a worker process that
Ray started with CUDA_VISIBLE_DEVICES naming the shared card; Ray does no
partitioning (no MPS, no MIG), so the card time-slices between N independent
CUDA contexts. N processes each running raylab's trial function on the same
card are that, minus Ray's bookkeeping, which costs no GPU time. Ray's wheel
(79 MB) is over the 64 MiB that travels per call and would need two calls of a
15-minute device budget; the resource logic that Ray applies (1/N GPU per trial,
refusals) stays tested on CPU with logical GPUs (tests/test_cluster.py).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # raylab from this checkout: nothing is installed on the GPU machine
sys.path.insert(0, str(ROOT / "bench"))

GPU_DATA = ROOT / ".gpu-data" / "cifar10-jpg.tar.gz"   # `make gpu-data` puts the copy here
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
BUDGET_S = 450      # the whole run: under 8 minutes on the card, leaving a rerun in 15 minutes of device time
RESERVE_S = 10      # kept back for the final write
# Each step's cap in seconds (resnet20 takes whatever is left). Guesses for an H100,
# to be corrected from the first run: decode 60k JPEGs on 16 cores ~5 s; seven
# small tests with one SimpleNN compile ~60 s; two compiles per model in throughput,
# ~30-60 s each for ResNet-20.
CAPS = {"env": 30, "data": 60, "gpu_tests": 120, "throughput": 150, "sharing": 100, "resnet20": None}
# --smoke: ~85 CPU-seconds in all (measured 2026-11-28 on the 2-core dev VM; each
# step's cpu_seconds is in the JSON). The caps only stop a hang, so the same VM
# shared 20-30 ways (seen: 750 s wall for those 85 CPU-seconds) still finishes.
SMOKE_CAPS = {"env": 120, "data": 120, "gpu_tests": 600, "throughput": 300, "sharing": 300, "resnet20": 200}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.step:  # a child: one step, its progress into args.step_out
        return run_step(args.step, json.loads(Path(args.context).read_text()), Path(args.step_out))
    problem = check_args(args)
    if problem:
        print(f"gpu_check: {problem}", file=sys.stderr)
        return 2
    return drive(args)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU, synthetic data, tiny sizes (a test, not a measurement)")
    p.add_argument("--data", help=f"CIFAR-10 source (default folder:{GPU_DATA}, else the shared copy)")
    p.add_argument("--out", help="JSON file written step by step (default $OUT/gpu_check.json, else bench/results/)")
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "raylab-gpu-check"),
                   help="data root for the decoded cache")
    p.add_argument("--budget", type=float, default=None, help=f"seconds for the whole run (default {BUDGET_S})")
    p.add_argument("--steps", default=",".join(CAPS), help="comma-separated subset of: " + ", ".join(CAPS))
    p.add_argument("--inject-failure", default="", help="testing: this step raises at its start")
    p.add_argument("--step", help=argparse.SUPPRESS)
    p.add_argument("--context", help=argparse.SUPPRESS)
    p.add_argument("--step-out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def check_args(args) -> str | None:
    steps = args.steps.split(",")
    unknown = [s for s in steps if s not in CAPS]
    if unknown:
        return f"unknown step(s) {unknown}: choose from {', '.join(CAPS)}"
    if args.budget is not None and args.budget <= 0:
        return f"--budget must be > 0 seconds, got {args.budget:g}"
    if args.data is None:
        args.data = ("synthetic:512" if args.smoke else
                     f"folder:{GPU_DATA if GPU_DATA.exists() else SHARED_CIFAR}")
    if args.data.startswith("folder:") and not Path(args.data[7:]).exists():
        return (f"no CIFAR-10 copy at {args.data[7:]}: run `make gpu-data` in the checkout first "
                "(it copies the shared copy into .gpu-data/), or pass --data")
    return None


def drive(args) -> int:
    budget = args.budget or (sum(SMOKE_CAPS.values()) if args.smoke else BUDGET_S)
    deadline = time.monotonic() + budget
    out = Path(args.out) if args.out else Path(os.environ.get("OUT") or ROOT / "bench" / "results") / "gpu_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    caps = SMOKE_CAPS if args.smoke else CAPS
    result = {"mode": "smoke (CPU, tiny sizes: not a measurement)" if args.smoke else "gpu",
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "budget_s": budget,
              "data": args.data, "steps": {}}
    _write(out, result)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        for name in args.steps.split(","):
            left = deadline - time.monotonic() - RESERVE_S
            cap = left if caps[name] is None else min(caps[name], left)
            if cap < 5:
                result["steps"][name] = {"status": "skipped", "error": f"no time left ({left:.0f} s) in the {budget:g} s budget"}
                _write(out, result)
                continue
            context = {"smoke": args.smoke, "data": args.data, "cache": args.cache, "cap_s": cap,
                       "inject_failure": args.inject_failure, "scratch": scratch, "done": result["steps"]}
            result["steps"][name] = run_child(name, context, cap, Path(scratch))
            _write(out, result)
    result["seconds"] = round(budget - (deadline - time.monotonic()), 1)
    _write(out, result)
    print(json.dumps(result, indent=1))
    print(f"gpu_check: wrote {out}", file=sys.stderr)
    return 0


def run_child(name: str, context: dict, cap: float, scratch: Path) -> dict:
    """One step in a fresh process (its own CUDA context and compile caches), killed at `cap`."""
    ctx_file, step_out = scratch / f"{name}.context.json", scratch / f"{name}.json"
    ctx_file.write_text(json.dumps(context))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--step", name,
           "--context", str(ctx_file), "--step-out", str(step_out)]
    print(f"gpu_check: step {name} (cap {cap:.0f} s)", file=sys.stderr, flush=True)
    t0, cpu0 = time.monotonic(), _children_cpu()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own group: a timeout ends its workers too
    try:
        log, _ = proc.communicate(timeout=cap)
        status = "ok" if proc.returncode == 0 else "error"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        log, _ = proc.communicate()
        status = "timeout"
    record = _read(step_out)
    record.setdefault("error", None)
    if status == "timeout":
        record["error"] = f"killed at its cap of {cap:.0f} s; fields above are what it had measured"
    elif status == "error" and not record["error"]:
        record["error"] = f"exit status {proc.returncode}: {log.strip().splitlines()[-1] if log.strip() else ''}"
    record.update(status=status, seconds=round(time.monotonic() - t0, 1), cpu_seconds=round(_children_cpu() - cpu0, 1))
    if status != "ok":
        record["log_tail"] = log[-3000:]
    return record


def _children_cpu() -> float:
    """User + system CPU seconds of finished child processes (a step and the workers it waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)  # a reader (or a kill) never sees half a file


def run_step(name: str, context: dict, out: Path) -> int:
    from gpu_sharing import step_resnet20, step_sharing
    from gpu_steps import Record, step_data, step_env, step_gpu_tests, step_throughput
    steps = {"env": step_env, "data": step_data, "gpu_tests": step_gpu_tests, "throughput": step_throughput,
             "sharing": step_sharing, "resnet20": step_resnet20}
    rec = Record(out)
    rec.save()
    try:
        if context["inject_failure"] == name:
            raise RuntimeError("injected failure (--inject-failure): the steps after this one must still run")
        steps[name](context, rec)
        rec.save()
        return 0
    except Exception as exc:  # recorded, not raised: the driver goes on with the next step
        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["traceback"] = traceback.format_exc()[-3000:]
        rec.save()
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
