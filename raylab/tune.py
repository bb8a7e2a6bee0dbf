"""Study -> Ray Tune sweep: one trial per variant-seed pair, results as Parquet.

    run_study(study, SweepOptions(storage="results"))   # fresh sweep
    resume_study("results/lab2_lr_sweep")               # after a crash or a kill

The trainable is thin: config dict -> TrialConfig -> `train()`, one
`tune.report` (metrics + checkpoint) per epoch. The data set is decoded once
by the driver and put in the object store as numpy arrays, so every trial on
a node maps the same copy instead of decoding its own. The driver-side
`ParquetCallback` turns reported results into the three contract tables.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune import Callback

from raylab.config import ConfigError, TrialConfig
from raylab.results import (StorageError, StudyWriter, check_writable, checkpoint_path, epoch_record, join,
                            trial_record, weight_records)
from raylab.study import Study

STUDY_JSON = "study.json"
EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds",
              "images_per_second", "train_images")
CHECKPOINT_FILE = "checkpoint.pt"
TUNE_DIR = "tune"  # Tune's own experiment folder inside the study folder
DDP_DRIVER_CPU = 0.001  # a DDP trial only waits on its Train workers; Ray needs some resource


@dataclass
class SweepOptions:
    storage: str = "results"          # root folder or URI; the study goes to <storage>/<study>
    address: str | None = None        # None: local Ray; "auto" or HOST:PORT: an existing cluster
    gpus_per_trial: float | None = None   # None: chosen per model and machine
    cpus_per_trial: float | None = None
    workers: int = 1                  # >1: each trial is a DDP job of this many workers
    max_concurrent: int = 0           # 0: as many as resources allow
    scheduler: str = "fifo"           # fifo | asha
    max_failures: int = 2             # restarts of a crashed trial from its checkpoint
    num_cpus: int | None = None       # local Ray only: CPUs it may use
    verbose: int = 1                  # Tune's progress output: 0 silent, 1 table


# ----------------------------------------------------------------- resources
def default_resources(cfg: TrialConfig, opts: SweepOptions, cluster: dict[str, float]) -> dict[str, float]:
    """A slice of a machine per trial: small models share a GPU, big ones get one each.

    SimpleNN runs ~4 to a GPU (it is input-bound, not FLOP-bound); a ResNet
    or a DDP worker wants a whole GPU. On a CPU-only cluster each trial (or
    worker) takes one CPU so that trials, not threads, fill the cores: on this
    project's 2-core machine two 1-thread trials beat one 2-thread run 1.3-1.9x
    (bench/sweep.py).
    """
    has_gpu = cluster.get("GPU", 0) > 0 and cfg.device != "cpu"
    gpu = opts.gpus_per_trial
    if gpu is None:
        small = cfg.model == "simplenn" and opts.workers == 1  # DDP workers need whole GPUs
        gpu = (0.25 if small else 1.0) if has_gpu else 0.0
    cpu = opts.cpus_per_trial if opts.cpus_per_trial is not None else (2.0 if gpu >= 1 else 1.0)
    return {"CPU": cpu, "GPU": gpu}


def check_resources(cfgs: list[TrialConfig], opts: SweepOptions, cluster: dict[str, float],
                    nodes: list[dict[str, float]]) -> None:
    """Refuse at once what no node could ever run, instead of a sweep that waits forever.

    A single-process trial must fit on one node; DDP workers may spread over nodes.
    """
    largest = {k: max((n.get(k, 0) for n in nodes), default=0) for k in ("CPU", "GPU")}
    for cfg in cfgs:
        res = default_resources(cfg, opts, cluster)
        if res["GPU"] > 1 and res["GPU"] != int(res["GPU"]):
            raise ConfigError(f"--gpus-per-trial {res['GPU']:g} must be a fraction up to 1 or a whole number")
        if opts.workers > 1:
            if 0 < res["GPU"] < 1:
                raise ConfigError("DDP workers need whole GPUs: use --gpus-per-trial 1 with --workers > 1")
            need = {"GPU": res["GPU"] * opts.workers, "CPU": res["CPU"] * opts.workers + DDP_DRIVER_CPU}
            have, where = cluster, "the cluster has"
        else:
            need, have, where = res, largest, "the largest node has"
        for kind, flag in (("GPU", "--gpus-per-trial"), ("CPU", "--cpus-per-trial")):
            if need[kind] > have.get(kind, 0) + 1e-9:
                raise ConfigError(f"a trial needs {need[kind]:g} {kind} but {where} {have.get(kind, 0):g}: "
                                  f"lower {flag}{' or --workers' if opts.workers > 1 else ''}, or add nodes")


# ------------------------------------------------------------------ trainable
def run_trial(config: dict, data_refs: dict | None = None) -> None:
    """The Tune trainable: one variant-seed pair, resumable from its last checkpoint.

    The trial keeps its own checkpoint file (raylab/checkpoints.py) and resumes
    from it whenever it starts, whether Tune restarts it after a crash or
    `raylab resume` after a killed driver.
    """
    from ray import tune

    from raylab.checkpoints import find_checkpoint, save_checkpoint
    from raylab.train import train

    cfg = TrialConfig.from_dict(config["trial"])
    data_ref = (data_refs or {}).get(data_key(cfg))
    if config["workers"] > 1:
        return _run_ddp_trial(config, data_ref)
    path = config["checkpoint"]
    state = find_checkpoint(path)
    restarts = int(state.get("restarts", 0)) + 1 if state is not None else 0
    replay = _replay(state)

    def report(row: dict, checkpoint) -> None:
        # Checkpoint first: a kill between the two leaves an epoch the driver has not
        # seen, and the next start replays it from the checkpoint's history.
        save_checkpoint({**checkpoint(), "restarts": restarts}, path)
        tune.report({**row, "restarts": restarts, **replay})
        replay.clear()

    outcome = train(cfg, _dataset(cfg, data_ref), report, resume=state)
    tune.report(_final_result(outcome, restarts))


def _replay(state: dict | None) -> dict:
    """After a restore, the first report carries the checkpoint's history: the
    driver may have died before it wrote those epochs, and no one reports them again."""
    return {"history": list(state["history"])} if state is not None else {}


def _save(state: dict, restarts: int, folder: Path) -> None:
    import torch
    torch.save({**state, "restarts": restarts}, folder / CHECKPOINT_FILE)


def _final_result(outcome, restarts: int) -> dict:
    """The last report of a trial: its summary and weight histograms for trials.parquet."""
    last = outcome.history[-1]
    return {**last, "final": True, "status": outcome.status, "restarts": restarts,
            "best_val_acc": outcome.best_val_acc, "best_epoch": outcome.best_epoch,
            "final_val_acc": outcome.final_val_acc, "n_params": outcome.n_params,
            "macs": outcome.macs, "weights": outcome.weights}


def _dataset(cfg: TrialConfig, data_ref):
    """The node's shared copy from the object store; decoded from disk only without one."""
    from raylab.data import Dataset, load_dataset

    if data_ref is None:
        return load_dataset(cfg.data, cfg.data_root, download=cfg.download)
    import ray
    import torch
    arrays = ray.get(data_ref)
    with warnings.catch_warnings():
        # Object-store arrays are read-only; training never writes to its inputs.
        warnings.simplefilter("ignore", UserWarning)
        tensors = {k: torch.from_numpy(v) for k, v in arrays.items() if k != "classes"}
    return Dataset(source=cfg.data, classes=[str(c) for c in arrays["classes"]], **tensors)


def data_key(cfg: TrialConfig | dict) -> str:
    d = cfg if isinstance(cfg, dict) else cfg.to_dict()
    return f"{d['data']}|{d['data_root']}"


def data_sources(cfgs: list[TrialConfig]) -> list[dict]:
    """The distinct data sets a sweep needs (usually one)."""
    out = {data_key(c): {"data": c.data, "data_root": c.data_root, "download": c.download} for c in cfgs}
    return list(out.values())


def _put_shared_data(sources: list[dict]) -> dict:
    """Decode each data set once and put it in the object store as numpy arrays,
    which trials on a node then map zero-copy. Returns {data_key: ObjectRef}."""
    import ray

    from raylab.data import load_dataset

    out = {}
    for src in sources:
        ds = load_dataset(src["data"], src["data_root"], download=src["download"])
        out[data_key(src)] = ray.put({"train_x": ds.train_x.numpy(), "train_y": ds.train_y.numpy(),
                                      "test_x": ds.test_x.numpy(), "test_y": ds.test_y.numpy(),
                                      "classes": np.array(ds.classes)})
    return out


# ----------------------------------------------------------------------- DDP
def _run_ddp_trial(config: dict, data_ref) -> None:
    """A Tune trial that drives a Ray Train TorchTrainer (Train V2); the workers'
    reports reach Tune through TuneReportCallback, rank 0's numbers (all ranks
    hold the same all-reduced metrics)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    use_gpu = config["gpu"] >= 1
    trainer = TorchTrainer(
        _ddp_worker,
        train_loop_config={"trial": config["trial"], "data_ref": data_ref},
        scaling_config=ray.train.ScalingConfig(
            num_workers=int(config["workers"]), use_gpu=use_gpu,
            resources_per_worker={"CPU": config["cpu"], **({"GPU": 1} if use_gpu else {})}),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=ray.train.RunConfig(
            # A stable name lets Train V2 pick up this run's own checkpoints after a restart.
            name=f"ddp-{config['meta']['trial_id']}", storage_path=config["ddp_storage"],
            callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


def _ddp_worker(loop_config: dict) -> None:
    import ray.train

    from raylab.checkpoints import load_checkpoint
    from raylab.train import train

    cfg = TrialConfig.from_dict(loop_config["trial"])
    state, restarts = None, 0
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = load_checkpoint(Path(d) / CHECKPOINT_FILE)
        restarts = int(state.get("restarts", 0)) + 1
    rank = ray.train.get_context().get_world_rank()

    replay = _replay(state)

    def report(row: dict, checkpoint) -> None:
        # Every rank must call report (it is collective); rank 0 alone uploads the state.
        with tempfile.TemporaryDirectory() as d:
            if rank == 0:
                _save(checkpoint(), restarts, Path(d))
            ray.train.report({**row, "restarts": restarts, **replay},
                             checkpoint=ray.train.Checkpoint.from_directory(d) if rank == 0 else None)
        replay.clear()

    outcome = train(cfg, _dataset(cfg, loop_config["data_ref"]), report, resume=state)
    ray.train.report(_final_result(outcome, restarts))


# ---------------------------------------------------------- results callback
class ParquetCallback(Callback):
    """Driver side: reported epochs -> metrics/trials/weights.parquet, refreshed while running.

    The writer is created in `setup`, which also runs after `Tuner.restore`, so
    a resumed sweep starts from the tables already on disk and upserts into them.
    """

    def __init__(self, study_dir: str, flush_seconds: float = 2.0) -> None:
        self.study_dir = study_dir
        self.flush_seconds = flush_seconds
        self.writer: StudyWriter | None = None
        self._last_flush = 0.0

    def __getstate__(self) -> dict:
        return {"study_dir": self.study_dir, "flush_seconds": self.flush_seconds}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def setup(self, **info: Any) -> None:
        self.writer = StudyWriter(self.study_dir)

    def get_state(self) -> None:
        # Tune calls this right after writing its experiment state (which trials
        # exist, which checkpoint each resumes from): flushing here keeps the
        # Parquet files at least as far along as what a resume will restart from.
        self._flush(force=True)
        return None

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        config = trial.config["spec"]["trial"]
        for meta in _metas(trial):
            for old in result.get("history") or []:
                self.writer.add_epoch(epoch_record(meta, config, {k: old.get(k) for k in EPOCH_KEYS}))
            if result.get("final"):
                self.writer.set_trial(trial_record(meta, config, **{k: result[k] for k in (
                    "status", "best_val_acc", "best_epoch", "final_val_acc", "n_params", "macs", "restarts")},
                    epochs_run=int(result["epoch"]), wall_seconds=result.get("time_total_s"), error=None))
                self.writer.set_weights(meta["trial_id"], weight_records(meta, config, result["weights"]))
                continue
            row = {k: result[k] for k in EPOCH_KEYS}
            self.writer.add_epoch(epoch_record(meta, config, row))
            self.writer.set_trial(trial_record(meta, config, status="running", epochs_run=int(row["epoch"]),
                                               restarts=int(result.get("restarts", 0)),
                                               wall_seconds=result.get("time_total_s")))
        self._flush(force=bool(result.get("final")))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = "trial failed; see its error.txt in the tune/ folder"
        try:
            error = str(trial.get_pickled_error() or trial.get_error() or error)
        except Exception:  # the error file may live on another node's disk
            pass
        last = error.strip().splitlines()[-1][:500] if error.strip() else error
        for meta in _metas(trial):
            self.writer.set_trial(trial_record(meta, trial.config["spec"]["trial"], status="failed", error=last))
        self._flush(force=True)

    def on_experiment_end(self, trials, **info) -> None:
        for trial in trials:  # stopped early by a scheduler (ASHA): no final report came
            for meta in _metas(trial):
                tid = meta["trial_id"]
                row = self.writer.trials.get(tid)
                if row and row.get("status") == "running" and trial.status == "TERMINATED":
                    epochs = sorted((r for (t, _), r in self.writer.metrics.items() if t == tid),
                                    key=lambda r: r["epoch"])
                    best = max(epochs, key=lambda r: r["val_acc"])
                    self.writer.set_trial({"trial_id": tid, "status": "stopped", "best_val_acc": best["val_acc"],
                                           "best_epoch": best["epoch"], "final_val_acc": epochs[-1]["val_acc"]})
        self._flush(force=True)

    def _flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_flush >= self.flush_seconds:
            self.writer.flush()
            self._last_flush = now


def _metas(trial) -> list[dict]:
    spec = trial.config["spec"]
    return [spec["meta"], *spec.get("aliases", [])]


# ------------------------------------------------------------------- driver
def study_dir(storage: str, name: str) -> str:
    return join(storage if "://" in storage else os.path.abspath(storage), name)


def run_study(study: Study, opts: SweepOptions):
    """Run every trial of `study` on Ray Tune; returns the Tune ResultGrid."""
    trials = study.trials()
    root = study_dir(opts.storage, study.name)
    _refuse_existing_sweep(root)
    _connect(opts)
    import ray
    from ray import tune

    cluster = ray.cluster_resources()
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    check_resources([t.config for t in trials], opts, cluster, nodes)
    specs = [_spec(t, opts, cluster, root) for t in trials]
    lock = _lock(root)  # before anything is written: a second driver must not touch the folder
    try:
        _refuse_existing_sweep(root)  # again: a driver that started with us may have finished first
        sources = data_sources([t.config for t in trials])
        _write_json(join(root, STUDY_JSON), {**study.describe(), "options": asdict(opts), "data_sources": sources})
        tuner = tune.Tuner(
            _trainable(sources),
            param_space={"spec": tune.grid_search(specs)},
            tune_config=_tune_config(opts, max(t.config.epochs for t in trials)),
            run_config=_run_config(root, opts),
        )
        return tuner.fit()
    finally:
        lock.close()


def _refuse_existing_sweep(root: str) -> None:
    from raylab.results import exists
    if exists(join(root, TUNE_DIR, "tuner.pkl")):
        raise ConfigError(f"{root} already holds a sweep: `raylab resume {root}` continues it, "
                          "or choose another --storage")


def resume_study(path: str, opts: SweepOptions | None = None):
    """Finish an interrupted sweep: unfinished and errored trials resume from checkpoints."""
    from raylab.results import exists

    root = path if "://" in path else os.path.abspath(path)
    if not exists(join(root, TUNE_DIR, "tuner.pkl")) or not exists(join(root, STUDY_JSON)):
        raise ConfigError(f"{path} holds no sweep to resume (no {TUNE_DIR}/tuner.pkl): "
                          "give the study folder, e.g. results/lab2_lr_sweep")
    meta = _read_json(join(root, STUDY_JSON))
    saved = SweepOptions(**{k: v for k, v in meta["options"].items() if k in SweepOptions.__dataclass_fields__})
    if opts is not None:  # where to connect can change between runs; what to train cannot
        saved.address, saved.num_cpus, saved.verbose = opts.address, opts.num_cpus, opts.verbose
    lock = _lock(root)
    try:
        _connect(saved)
        from ray import tune
        tuner = tune.Tuner.restore(join(root, TUNE_DIR), trainable=_trainable(meta["data_sources"]),
                                   resume_unfinished=True, resume_errored=True)
        return tuner.fit()
    finally:
        lock.close()


def _spec(trial, opts: SweepOptions, cluster: dict, root: str) -> dict:
    """Everything a trial needs, as plain data: it is what Tune stores and restores."""
    res = default_resources(trial.config, opts, cluster)
    metas = trial.metas()
    return {"meta": metas[0], "aliases": metas[1:], "trial": trial.config.to_dict(), "workers": opts.workers,
            "cpu": res["CPU"], "gpu": res["GPU"], "ddp_storage": join(root, "ddp"),
            "checkpoint": checkpoint_path(root, metas[0]["trial_id"])}


def _trainable(sources: list[dict]):
    """run_trial with the shared data bound (put in the object store once) and per-trial resources."""
    from ray import tune

    def resources(config: dict):
        spec = config["spec"]
        if spec["workers"] > 1:  # the trial only drives the Train workers, which hold the resources
            return tune.PlacementGroupFactory([{"CPU": DDP_DRIVER_CPU}])
        return {"cpu": spec["cpu"], "gpu": spec["gpu"]}

    return tune.with_resources(tune.with_parameters(raylab_trial, data_refs=_put_shared_data(sources)), resources)


def raylab_trial(config: dict, data_refs: dict | None = None) -> None:
    run_trial(config["spec"], data_refs)


def _tune_config(opts: SweepOptions, max_epochs: int):
    from ray import tune
    # reuse_actors: the next trial runs in the finished one's worker process, which
    # has torch imported already (a fresh worker spends ~8 s starting up on this CPU).
    common = dict(max_concurrent_trials=opts.max_concurrent or None, reuse_actors=True,
                  trial_name_creator=_trial_name, trial_dirname_creator=_trial_name)
    if opts.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler
        # Rungs by epoch, not by Tune's iteration count, which starts over when a trial
        # restarts from its checkpoint: after epochs 2, 6, 18, ... keep the best third by
        # val acc; max_t past the last epoch so no trial is cut for length alone.
        asha = ASHAScheduler(time_attr="epoch", grace_period=2, reduction_factor=3, max_t=max_epochs + 1)
        return tune.TuneConfig(metric="val_acc", mode="max", scheduler=asha, **common)
    return tune.TuneConfig(**common)


def _trial_name(trial) -> str:
    return trial.config["spec"]["meta"]["trial_id"]


def _run_config(root: str, opts: SweepOptions):
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback  # result.json per trial, for Tune's own analysis
    # A table of variant and epoch metrics; the config of every trial is in the Parquet files.
    reporter = tune.CLIReporter(
        parameter_columns={"spec/meta/variant": "variant", "spec/trial/seed": "seed"},
        metric_columns={"epoch": "epoch", "train_loss": "train loss", "val_loss": "val loss",
                        "val_acc": "val acc", "images_per_second": "img/s"},
        max_report_frequency=15, sort_by_metric=False)
    return tune.RunConfig(
        name=TUNE_DIR, storage_path=root, verbose=opts.verbose, progress_reporter=reporter,
        failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        callbacks=[ParquetCallback(root), JsonLoggerCallback()],
    )


# ------------------------------------------------------------------ helpers
class _AlreadyPrunedCheckpoint(logging.Filter):
    """One line, not an ERROR and a traceback, for a harmless case after a killed driver.

    Tune's restored bookkeeping may still list a checkpoint it pruned after its
    last state save; pruning it again raises FileNotFoundError, logged as an
    ERROR although Tune updated its state first (ray/train/_internal/
    checkpoint_manager.py) and the trial goes on from its newest checkpoint.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, FileNotFoundError) and str(record.msg).startswith("Trial %s: Error handling checkpoint"):
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "Trial %s: an old checkpoint was already pruned before the restart", record.args[:1]
        return True


def _connect(opts: SweepOptions) -> None:
    import ray
    _tune_env()
    controller = logging.getLogger("ray.tune.execution.tune_controller")
    if not any(isinstance(f, _AlreadyPrunedCheckpoint) for f in controller.filters):
        controller.addFilter(_AlreadyPrunedCheckpoint())
    if ray.is_initialized():
        return
    if opts.address and opts.address != "auto":
        _check_reachable(opts.address)
    # Ray's start-up chatter would bury a one-line error; its warnings stay visible at -v.
    ray_logger = logging.getLogger("ray")
    level = ray_logger.level
    ray_logger.setLevel(logging.ERROR if opts.verbose <= 1 else level)
    try:
        if opts.address:
            ray.init(address=opts.address, log_to_driver=opts.verbose > 1, logging_level=ray_logger.level)
        else:
            ray.init(num_cpus=opts.num_cpus, include_dashboard=False, log_to_driver=opts.verbose > 1,
                     logging_level=ray_logger.level)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = f"a Ray cluster at --address {opts.address}" if opts.address else "a local Ray instance"
        raise ConfigError(f"cannot start or reach {where}: {first}") from None
    finally:
        ray_logger.setLevel(level)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minutes of GCS retries, when nothing listens there."""
    import socket
    host, _, port = address.replace("ray://", "").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address} is not auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach a Ray cluster at --address {address} ({exc.strerror or exc}): "
                          "is `ray start --head` running there, and the port open?") from None


def _tune_env() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # The classic reporter takes our column choice; the new one would print every
    # config field of every trial. Parquet is the log: of Tune's own loggers only
    # the JSON one stays (added in _run_config), for Tune's ExperimentAnalysis.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _lock(root: str):
    """Hold an exclusive lock on the study folder while a driver runs it.

    flock dies with its process, so a SIGKILLed driver never leaves a stale lock.
    """
    if "://" in root:
        return open(os.devnull)
    import fcntl
    check_writable(root)
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        fh = open(Path(root) / ".lock", "a+")
    except OSError as exc:
        raise StorageError(root, exc) from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise ConfigError(f"another raylab process (pid {holder}) is running a sweep in {root}: "
                          f"wait for it to end, or watch it with `raylab status {root}`") from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def _write_json(path: str, obj: Any) -> None:
    import pyarrow.fs as pafs
    from raylab.results import resolve_fs
    fs, p = resolve_fs(path)
    fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
    local = isinstance(fs, pafs.LocalFileSystem)
    target = p + f".tmp-{os.getpid()}" if local else p  # object stores publish a PUT whole
    try:
        with fs.open_output_stream(target) as fh:
            fh.write(json.dumps(obj, indent=1, default=str).encode())
        if local:
            os.replace(target, p)
    except OSError as exc:
        raise StorageError(path, exc) from None


def _read_json(path: str) -> Any:
    from raylab.results import resolve_fs
    fs, p = resolve_fs(path)
    with fs.open_input_stream(p) as fh:
        return json.loads(fh.read().decode())
