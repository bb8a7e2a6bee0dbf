"""Results at scale: synthetic reports of N trials through the real ParquetCallback and
StudyWriter (no training, no Ray cluster), to a local folder and to a local
S3-compatible server (moto). One JSON object on stdout, progress on stderr.

    python bench/results_scale.py                       # 100, 1,000, 10,000 trials, local and S3
    python bench/results_scale.py --quick               # 20 and 200 trials, local and S3
    python bench/results_scale.py --trials 100 1000 --epochs 30 --storage local

A sweep is modelled as `--concurrent` trials at a time, each reporting epochs 0..E
(the last report final, with a --layers x --bins weight histogram), and Tune's
periodic flush as one `get_state()` (what Tune calls before saving its state)
every `--flush-every` reports: the rows per flush are the same for every N, so a
flush time that grows with N is the cost of what is already on disk.

Per (N, storage), in a fresh process so that its peak memory is its own:
    flush_ms        median / mean / p99 / max of a flush (merges of parts included)
    driver_cpu_s    process CPU time of the whole feed, final compaction included
    bytes_written   every byte handed to storage (parts, merges, compaction)
    bytes_per_row   bytes_written / rows reported (O(rows): flat in N)
    peak_rss_mb     the process's peak RSS through the feed (the driver's), and its RSS before it;
                    peak_rss_with_loads_mb also counts the two load_study calls
    load_partial_s  analysis.load_study of the study before the final compaction (parts, once
                    the background merges are done: a reader racing one lists and reads again)
    load_s          analysis.load_study after it (the three files)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------ synthetic sweep
class SyntheticTrial:
    """What ParquetCallback reads of a Tune trial: its config and status."""

    def __init__(self, study: str, index: int, config: dict) -> None:
        trial_id = f"{study}_t{index:05d}"
        self.config = {"spec": {"meta": {"study": study, "trial_id": trial_id, "variant": f"lr={config['lr']}"},
                                "trial": config}}
        self.status = "RUNNING"


def trial_configs(n: int) -> list[dict]:
    from raylab.declare.config import TrialConfig
    base = TrialConfig(data="synthetic").to_dict()
    return [{**base, "lr": round(0.001 * (1 + i % 50), 4), "seed": i // 50} for i in range(n)]


def val_acc(index: int, epoch: int, attempt: int) -> float:
    """Deterministic, and different per attempt: a replayed epoch must replace the old value."""
    return round(0.1 + 0.8 * epoch / (epoch + 5) + (index % 97) * 1e-4 + attempt * 1e-6, 9)


def reports(n: int, epochs: int, concurrent: int, layers: int, bins: int, replay_every: int = 0):
    """(trial, result) in the order a sweep of `concurrent` trials at a time reports them.

    Every `replay_every`-th trial crashes after epoch 3 and restarts from its epoch-2
    checkpoint: its first report after the restart carries the checkpoint's history
    and epochs 3.. come again with new values (attempt 1), as raylab/sweep/trainable.py does.
    """
    study = "scale"
    configs = trial_configs(n)
    for wave in range(0, n, concurrent):
        group = [SyntheticTrial(study, i, configs[i]) for i in range(wave, min(n, wave + concurrent))]
        plans = {id(t): _plan(wave + k, epochs, replay_every) for k, t in enumerate(group)}
        for step in range(max(len(p) for p in plans.values())):
            for k, trial in enumerate(group):
                plan = plans[id(trial)]
                if step < len(plan):
                    yield trial, _result(wave + k, *plan[step], epochs, layers, bins)


def _plan(index: int, epochs: int, replay_every: int) -> list[tuple[int, int, bool]]:
    """(epoch, attempt, carries history) per report of one trial."""
    plan = [(e, 0, False) for e in range(epochs + 1)]
    if replay_every and index % replay_every == 0 and epochs >= 4:
        plan = plan[:4] + [(3, 1, True)] + [(e, 1, False) for e in range(4, epochs + 1)]
    return plan


def _result(index: int, epoch: int, attempt: int, history: bool, epochs: int, layers: int, bins: int) -> dict:
    def row(e: int, a: int) -> dict:
        acc = val_acc(index, e, a)
        return {"epoch": e, "train_loss": 2.3 - 2 * acc, "train_acc": acc + 0.02, "val_loss": 2.3 - 2 * acc,
                "val_acc": acc, "lr": 0.01, "epoch_seconds": 2.0, "images_per_second": 25_000.0,
                "train_images": 50_000 * e}

    out = {**row(epoch, attempt), "time_total_s": 2.0 * epoch}
    if history:
        out["history"] = [row(e, 0) for e in range(epoch)]
    if epoch == epochs:
        accs = [val_acc(index, e, 1 if attempt and e >= 3 else 0) for e in range(epochs + 1)]
        best = max(range(epochs + 1), key=lambda e: accs[e])
        out.update(final=True, status="completed", best_val_acc=accs[best], best_epoch=best,
                   final_val_acc=accs[-1], n_params=62_006, macs=650_000,
                   weights=[{"layer": f"layer{k}.weight", "bin_left": -1 + 2 * b / bins,
                             "bin_right": -1 + 2 * (b + 1) / bins, "count": float(b % 7)}
                            for k in range(layers) for b in range(bins)])
    return out


def feed(callback, stream, flush_every: int, start: int = 0, on_flush=None) -> list[float]:
    """Send reports to the callback as Tune would; flush every `flush_every` (Tune's
    get_state). Returns each flush's seconds. `on_flush(i)`: after the flush that
    made reports 0..i durable."""
    times = []
    for i, (trial, result) in enumerate(stream):
        if i < start:
            continue
        if result.get("history"):  # a restart: Tune starts the trial again (it counts restarts; flushes)
            callback.on_trial_start(i, [], trial)
        callback.on_trial_result(i, [], trial, result)
        if result.get("final"):
            trial.status = "TERMINATED"
        if (i + 1) % flush_every == 0:
            t0 = time.perf_counter()
            callback.get_state()
            times.append(time.perf_counter() - t0)
            if on_flush:
                on_flush(i)
    return times


# ------------------------------------------------------------------ one measurement
def measure(root: str, n: int, args) -> dict:
    from raylab.results import storage as S
    from raylab.sweep.callback import ParquetCallback

    written = [0]
    real = S.write_bytes

    def counting(data, path):  # every byte the writer hands to storage
        written[0] += len(data)
        return real(data, path)

    S.write_bytes = counting
    rss_before = _rss_mb()
    cpu0 = time.process_time()
    cb = ParquetCallback(root, flush_seconds=float("inf"))
    cb.setup()
    stream = reports(n, args.epochs, args.concurrent, args.layers, args.bins)
    times = feed(cb, stream, args.flush_every)
    cb.get_state()
    cb.writer.wait_for_merges()  # merges run on their own thread: their CPU and memory count here
    cpu_feed = time.process_time() - cpu0
    peak_driver = _peak_rss_mb()  # before any reader runs in this process

    from analysis import load_study
    t0 = time.perf_counter()
    partial = load_study(root)
    load_partial = time.perf_counter() - t0
    cpu1 = time.process_time()
    cb.on_experiment_end(trials=[])
    cpu = cpu_feed + time.process_time() - cpu1
    t0 = time.perf_counter()
    study = load_study(root)
    load = time.perf_counter() - t0
    rows = n * (args.epochs + 1) + n * args.layers * args.bins
    assert len(study.metrics) == len(partial.metrics) == n * (args.epochs + 1), "rows lost"
    assert not study.metrics.duplicated(["trial_id", "epoch"]).any()
    times.sort()
    return {"trials": n, "metric_rows": n * (args.epochs + 1), "weight_rows": n * args.layers * args.bins,
            "flushes": len(times),
            "flush_ms": {"median": _ms(times[len(times) // 2]), "mean": _ms(sum(times) / len(times)),
                         "p99": _ms(times[int(0.99 * (len(times) - 1))]), "max": _ms(times[-1])},
            "driver_cpu_s": round(cpu, 2), "bytes_written": written[0],
            "bytes_per_row": round(written[0] / rows, 1),
            "rss_before_mb": round(rss_before, 1), "peak_rss_mb": round(peak_driver, 1),
            "peak_rss_with_loads_mb": round(_peak_rss_mb(), 1),
            "load_partial_s": round(load_partial, 2), "load_s": round(load, 2)}


def _ms(seconds: float) -> float:
    return round(1000 * seconds, 2)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ local S3 server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3(bucket: str) -> tuple[subprocess.Popen, dict]:
    """moto's standalone server on a free 127.0.0.1 port, with `bucket` created.
    Returns the process and the environment that points pyarrow at it."""
    import pyarrow.fs as pafs

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_EC2_METADATA_DISABLED": "true"}
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto server did not start")
            time.sleep(0.2)
    try:
        fs = pafs.S3FileSystem(access_key="bench", secret_key="bench", region="us-east-1", scheme="http",
                               endpoint_override=f"127.0.0.1:{port}", allow_bucket_creation=True)
        fs.create_dir(bucket)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, env


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--concurrent", type=int, default=16, help="trials reporting at once")
    p.add_argument("--flush-every", type=int, default=64, help="reports between two flushes")
    p.add_argument("--layers", type=int, default=10)
    p.add_argument("--bins", type=int, default=64)
    p.add_argument("--storage", nargs="+", choices=("local", "s3"), default=["local", "s3"])
    p.add_argument("--no-s3", action="store_true", help="= --storage local")
    p.add_argument("--quick", action="store_true", help="20 and 200 trials x 5 epochs")
    p.add_argument("--root", default=None, help="local folder for the studies (default: a temp folder)")
    p.add_argument("--one", nargs=2, metavar=("ROOT", "N"), help=argparse.SUPPRESS)  # child process
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args)))
        return 0
    if args.quick:
        args.trials, args.epochs = [20, 200], 5
    if args.no_s3:
        args.storage = ["local"]
    import tempfile
    base = Path(args.root or tempfile.mkdtemp(prefix="results_scale_"))
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "epochs": args.epochs,
           "concurrent": args.concurrent, "flush_every": args.flush_every,
           "weights_per_trial": args.layers * args.bins, "local": [], "s3": []}
    server, s3env = start_s3("bench") if "s3" in args.storage else (None, {})
    try:
        for n in args.trials:
            for where in args.storage:
                root = str(base / f"local_{n}") if where == "local" else f"s3://bench/run{os.getpid()}/s3_{n}"
                child = [sys.executable, __file__, "--one", root, str(n), *_passthrough(args)]
                print(f"results_scale: {n} trials, {where}", file=sys.stderr, flush=True)
                proc = subprocess.run(child, capture_output=True, text=True,
                                      env={**os.environ, **(s3env if where == "s3" else {})})
                if proc.returncode:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    return 1
                out[where].append(json.loads(proc.stdout))
                print(f"results_scale: {proc.stdout.strip()}", file=sys.stderr, flush=True)
    finally:
        if server is not None:
            server.kill()
            server.wait()
    for where in ("local", "s3"):
        runs = out[where]
        if len(runs) > 1:
            first, last = runs[0], runs[-1]
            out[f"{where}_ratios"] = {
                f"flush_mean_{last['trials']}_over_{first['trials']}":
                    round(last["flush_ms"]["mean"] / first["flush_ms"]["mean"], 2),
                f"bytes_per_row_{last['trials']}_over_{first['trials']}":
                    round(last["bytes_per_row"] / first["bytes_per_row"], 2)}
    print(json.dumps(out, indent=1))
    return 0


def _passthrough(args) -> list[str]:
    return ["--epochs", str(args.epochs), "--concurrent", str(args.concurrent),
            "--flush-every", str(args.flush_every), "--layers", str(args.layers), "--bins", str(args.bins)]


if __name__ == "__main__":
    raise SystemExit(main())
