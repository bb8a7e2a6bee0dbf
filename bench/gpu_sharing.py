"""gpu_check steps that run whole trials: N SimpleNN trials sharing one GPU, and ResNet-20's schedule.

Sharing: each trial is a separate process running raylab.train.loop.train, as a
fractional-GPU Tune trial is (bench/gpu_check.py says why not Ray itself).
Each gets OMP_NUM_THREADS=1, as Ray gives a 1-CPU trial, and saves its
checkpoint every epoch, as a trial does. All N load their data and open their
CUDA context first, then start together on a go file, so the timed window
holds N trials training at once.

    python bench/gpu_sharing.py CONTEXT.json INDEX RUNDIR    # one sharing worker
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_steps import (BATCH, FULL_EPOCHS, FULL_STEP, LR, MOMENTUM, REPORT_RESNET20_ACC, WEIGHT_DECAY,  # noqa: E402
                       Record, dataset_for, device_for, nvidia_smi, steady, subset)

SHARE_EPOCHS = 3          # epoch 1 is warm-up; epochs 2-3 are the steady window
READY_TIMEOUT_S = 120     # N processes importing torch and opening CUDA contexts at once
WITHIN_BEST = 0.95        # a share is as good as the best when its aggregate is within 5%


# ------------------------------------------------------------------ sharing
def step_sharing(ctx: dict, rec: Record) -> None:
    counts = (1, 2) if ctx["smoke"] else (1, 4, 8)
    rec.update(trial=f"SimpleNN, batch {BATCH}, {SHARE_EPOCHS} epochs, 1 CPU thread, checkpoint every epoch",
               aggregate="images trained in epochs 2..3 by all trials / time from the first trial's end of "
                         "epoch 1 to the last trial's end", runs={})
    for n in counts:
        rec["runs"][str(n)] = run_group(ctx, n)
        rec["recommendation"] = recommend(rec["runs"])
        rec.save()


def run_group(ctx: dict, n: int) -> dict:
    rundir = Path(ctx["scratch"]) / f"share-{n}"
    rundir.mkdir()
    (rundir / "context.json").write_text(json.dumps(ctx))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = [open(rundir / f"log-{i}.txt", "w") for i in range(n)]
    procs = [subprocess.Popen([sys.executable, __file__, str(rundir / "context.json"), str(i), str(rundir)],
                              env=env, stdout=log, stderr=subprocess.STDOUT) for i, log in enumerate(logs)]
    try:
        _wait_ready(rundir, procs)
        go = time.time()
        (rundir / "go").touch()
        smi_peak = _watch(procs, sample=not ctx["smoke"])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for log in logs:
            log.close()
    failed = [i for i, p in enumerate(procs) if p.returncode != 0]
    if failed:
        tail = (rundir / f"log-{failed[0]}.txt").read_text()[-1500:]
        raise RuntimeError(f"{len(failed)} of {n} sharing trials failed; trial {failed[0]}'s log ends: {tail}")
    workers = [json.loads((rundir / f"result-{i}.json").read_text()) for i in range(n)]
    return summarize_group(workers, go, [smi_peak.get(p.pid) for p in procs])


def _wait_ready(rundir: Path, procs: list) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while sum((rundir / f"ready-{i}").exists() for i in range(len(procs))) < len(procs):
        if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
            raise RuntimeError(f"sharing trials did not all start within {READY_TIMEOUT_S} s")
        time.sleep(0.02)


def _watch(procs: list, sample: bool) -> dict[int, float]:
    """Wait for the trials; on a GPU read each process's memory (MiB) from nvidia-smi twice a second."""
    peak: dict[int, float] = {}
    while any(p.poll() is None for p in procs):
        text = nvidia_smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits") if sample else None
        for line in (text or "").splitlines():
            pid, _, mib = line.partition(",")
            if pid.strip().isdigit() and mib.strip().replace(".", "").isdigit():
                peak[int(pid)] = max(peak.get(int(pid), 0.0), float(mib))
        time.sleep(0.5 if sample else 0.05)
    return peak


def summarize_group(workers: list[dict], go: float, smi_mib: list) -> dict:
    steady_images = sum(sum(r["train_images"] for r in w["rows"][2:]) for w in workers)
    window = max(w["report_times"][-1] for w in workers) - min(w["report_times"][1] for w in workers)
    whole_images = sum(sum(r["train_images"] for r in w["rows"][1:]) for w in workers)
    per_trial = [steady(w["rows"][1:], "images_per_second") for w in workers]
    smi = [m for m in smi_mib if m]
    return {"trials": len(workers),
            "aggregate_images_per_second": round(steady_images / window),
            "aggregate_with_startup_and_eval": round(whole_images / (max(w["report_times"][-1] for w in workers) - go)),
            "per_trial_images_per_second": round(statistics.median(per_trial)),
            "gpu_mib_per_trial": {
                "torch_max_allocated": _median(w["max_allocated_mib"] for w in workers),
                "torch_max_reserved": _median(w["max_reserved_mib"] for w in workers),
                "nvidia_smi_peak": _median(smi) if smi else None},  # with the CUDA context; None where not listed
            "final_val_acc": [round(w["rows"][-1]["val_acc"], 4) for w in workers]}


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def recommend(runs: dict) -> dict:
    """Fewest trials per GPU whose aggregate is within 5% of the best: more at once only slows each trial."""
    agg = {int(n): r["aggregate_images_per_second"] for n, r in runs.items()}
    best = max(agg.values())
    n = min(k for k, v in agg.items() if v >= WITHIN_BEST * best)
    return {"trials_per_gpu": n, "gpu_share": round(1 / n, 4),
            "aggregate_over_one_trial": {str(k): round(v / agg[1], 2) for k, v in agg.items()} if 1 in agg else None,
            "rule": f"fewest trials per GPU within {WITHIN_BEST:.0%} of the best aggregate images/s"}


def worker(ctx_path: str, index: int, rundir: Path) -> None:
    ctx = json.loads(Path(ctx_path).read_text())
    import torch
    from raylab.train.checkpoints import save_checkpoint
    from raylab.declare.config import TrialConfig
    from raylab.train.loop import train
    device = device_for(ctx)
    data = dataset_for(ctx)
    if device.type == "cuda":
        torch.zeros(1, device=device)  # the CUDA context opens before the start line, not inside the window
    (rundir / f"ready-{index}").touch()
    while not (rundir / "go").exists():
        time.sleep(0.005)
    times: list[float] = []

    def report(row: dict, build) -> None:
        save_checkpoint(build(), rundir / f"ckpt-{index}.pt")
        times.append(time.time())

    cfg = TrialConfig.from_dict(model="simplenn", data=data.source, epochs=SHARE_EPOCHS, device=device.type,
                                batch_size=BATCH, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                                seed=index, threads=1)
    out = train(cfg, data=data, report=report)
    cuda = device.type == "cuda"
    result = {"rows": out.history, "report_times": times,
              "max_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
              "max_reserved_mib": torch.cuda.max_memory_reserved(device) / 2**20 if cuda else None}
    (rundir / f"result-{index}.json").write_text(json.dumps(result))


# ------------------------------------------------------------------ resnet20
class _OutOfTime(Exception):
    pass


def step_resnet20(ctx: dict, rec: Record) -> None:
    """ResNet-20's step schedule (lr 0.1, x0.1 at each quarter), compressed into the epochs that fit."""
    from raylab.declare.config import TrialConfig
    from raylab.train.loop import train
    deadline = time.monotonic() + ctx["cap_s"] - 5
    device = device_for(ctx)
    data = dataset_for(ctx)
    batch = 32 if ctx["smoke"] else BATCH
    if ctx["smoke"]:
        data = subset(data, 64, 32)
    left = deadline - time.monotonic()
    compiled, epoch_s, basis = epoch_estimate(ctx["done"].get("throughput", {}), len(data.train_x), left)
    epochs = max(1, min(FULL_EPOCHS, int(0.9 * left / epoch_s))) if epoch_s else 10
    if ctx["smoke"]:
        epochs = min(epochs, 2)
    step = max(1, round(epochs * FULL_STEP / FULL_EPOCHS))
    cfg = TrialConfig.from_dict(model="resnet20", shortcut="A", data=data.source, epochs=epochs, lr=0.1,
                                momentum=0.9, weight_decay=1e-4, schedule="step", step_size=step, gamma=0.1,
                                augment=True, device=device.type, compile=compiled, batch_size=batch, seed=0)
    rec.update(schedule=(f"lr 0.1 x0.1 every {step} epochs over {epochs} epochs: the {FULL_EPOCHS}-epoch schedule "
                         f"(x0.1 every {FULL_STEP}) compressed {FULL_EPOCHS / epochs:.1f}x" if epochs < FULL_EPOCHS
                         else "the full 200-epoch schedule"),
               planned_epochs=epochs, compiled=compiled, estimated_epoch_seconds=epoch_s, estimate_basis=basis,
               report_val_acc_after_200=REPORT_RESNET20_ACC, history=[])

    def report(row: dict, build) -> None:
        rec["history"].append({k: round(row[k], 4) for k in ("epoch", "train_loss", "val_acc", "lr", "epoch_seconds")
                               if row[k] == row[k]})
        rec.update(epochs_run=row["epoch"], best_val_acc=max(r["val_acc"] for r in rec["history"]))
        rec.update(projection(rec["history"]))
        rec.save()
        if row["epoch"] >= 1 and time.monotonic() + row["epoch_seconds"] > deadline:
            raise _OutOfTime

    try:
        train(cfg, data=data, report=report)
        rec["stopped_early"] = False
    except _OutOfTime:
        rec["stopped_early"] = True  # the next epoch would not have fitted the cap


def epoch_estimate(throughput: dict, n_train: int, left: float) -> tuple[bool, float | None, str]:
    """(compile?, seconds per epoch of n_train augmented images, where that came from) from the throughput step."""
    cases, n = throughput.get("cases", {}), throughput.get("train_images")
    options = {}
    for compiled in (False, True):
        case = cases.get(f"resnet20/trainer/bf16/{'compiled' if compiled else 'eager'}", {})
        if "steady_epoch_seconds" in case:
            steady = case["steady_epoch_seconds"] * n_train / n * 1.1  # +10%: augmentation, measured without
            options[compiled] = (steady, case["first_epoch_seconds"] - case["steady_epoch_seconds"])
    if not options:
        return False, None, "no throughput figure for ResNet-20: 10 epochs planned, stopped when time runs out"
    # compile pays its start-up again in this process: take it only when more epochs fit the time left
    compiled = max(options, key=lambda c: (left - options[c][1]) / options[c][0])
    return compiled, round(options[compiled][0], 2), f"throughput step, trainer {'compiled' if compiled else 'eager'}"


def projection(history: list[dict]) -> dict:
    trained = [r for r in history if r["epoch"] >= 1]
    if not trained:
        return {}
    steady = statistics.median(r["epoch_seconds"] for r in (trained[1:] or trained))
    startup = history[0]["epoch_seconds"] + trained[0]["epoch_seconds"] - steady
    return {"steady_epoch_seconds": round(steady, 2),
            "projected_200_epoch_minutes": round((startup + FULL_EPOCHS * steady) / 60, 1)}


if __name__ == "__main__":
    worker(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
