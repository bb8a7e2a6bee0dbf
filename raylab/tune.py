"""Study -> Ray Tune sweep: the driver. One trial per variant-seed pair.

    run_study(study, SweepOptions(storage="results"))   # fresh sweep
    resume_study("results/lab2_lr_sweep")               # after a crash or a kill

The data set is decoded once here and put in the object store as numpy
arrays, so every trial on a node maps the same copy instead of decoding its
own. The trial itself is raylab/trainable.py, its share of a machine
raylab/resources.py, and raylab/parquet_callback.py turns what trials report
into the three contract tables. Sweeps saved before the split refer to
`raylab.tune.raylab_trial`, which is why that name is imported here.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raylab.config import ConfigError
from raylab.parquet_callback import ParquetCallback
from raylab.resources import DDP_DRIVER_CPU, check_resources, default_resources
from raylab.results import StorageError, check_writable, checkpoint_path, join, write_bytes
from raylab import registry, search
from raylab.study import Study
from raylab.trainable import data_key, data_sources, raylab_trial

STUDY_JSON = "study.json"
TUNE_DIR = "tune"  # Tune's own experiment folder inside the study folder


@dataclass
class SweepOptions:
    storage: str = "results"          # root folder or URI; the study goes to <storage>/<study>
    address: str | None = None        # None: local Ray; "auto" or HOST:PORT: an existing cluster
    gpus_per_trial: float | None = None   # None: chosen per model and machine
    cpus_per_trial: float | None = None
    workers: int = 1                  # >1: each trial is a DDP job of this many workers
    max_concurrent: int = 0           # 0: as many as resources allow
    scheduler: str = "fifo"           # fifo | asha | pbt (raylab/pbt.py)
    search: str = "random"            # random | optuna: how a study's distributions are sampled (raylab.search)
    max_failures: int = 2             # restarts of a crashed trial from its checkpoint
    num_cpus: int | None = None       # local Ray only: CPUs it may use
    verbose: int = 1                  # Tune's progress output: 0 silent, 1 table
    log: str = ""                     # "mlflow": also log to MLflow (raylab/logs.py); TensorBoard is always on
    mlflow_uri: str | None = None     # MLflow tracking URI (default: <study folder>/mlruns)


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
    space = study.space()
    algo = search.search_alg(opts.search, space, len(specs), seed=trials[0].config.seed)
    # Made before anything is written: a search or scheduler that cannot run is refused first.
    tune_config = _tune_config(opts, max(t.config.epochs for t in trials), search_alg=algo,
                               num_samples=study.num_samples if space else 1, space=space)
    run_config = _run_config(root, opts, space, study.name)
    lock = _lock(root)  # before anything is written: a second driver must not touch the folder
    try:
        _refuse_existing_sweep(root)  # again: a driver that started with us may have finished first
        sources = data_sources([t.config for t in trials])
        refs = _put_shared_data(sources)
        _check_user_models(trials, refs)  # a job file's model that returns no logits: refused before a trial runs
        _write_json(join(root, STUDY_JSON), {**study.describe(), "options": asdict(opts), "data_sources": sources})
        tuner = tune.Tuner(
            _trainable(sources, refs),
            param_space=search.param_space(specs, space),
            tune_config=tune_config,
            run_config=run_config,
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


def _check_user_models(trials, refs: dict) -> None:
    """Build each distinct job-file model once on the data's image shape and check its logits."""
    import ray

    from raylab.models import build_model, summarize
    from raylab.registry import USER, check_logits

    seen = set()
    for t in trials:
        c = t.config
        key = (c.model, c.model_options, c.batchnorm, c.activation, c.shortcut, data_key(c))
        if c.model not in USER or key in seen:
            continue
        seen.add(key)
        arrays = ray.get(refs[data_key(c)])
        shape, n = tuple(arrays["train_x"].shape[1:]), len(arrays["classes"])
        try:
            model = build_model(c.model, num_classes=n, in_channels=shape[0], batchnorm=c.batchnorm,
                                activation=c.activation, shortcut=c.shortcut, options=json.loads(c.model_options))
            out = summarize(model, shape, name=c.model).output
        except Exception as exc:  # the user's own code: one line naming the model
            raise ConfigError(f"model '{c.model}' failed on a {'x'.join(map(str, shape))} image: "
                              f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
        check_logits(out, n, c.model)


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


def _spec(trial, opts: SweepOptions, cluster: dict, root: str) -> dict:
    """Everything a trial needs, as plain data: it is what Tune stores and restores."""
    res = default_resources(trial.config, opts, cluster)
    metas = trial.metas()
    return {"meta": metas[0], "aliases": metas[1:], "trial": trial.config.to_dict(), "workers": opts.workers,
            "root": root,  # a sampled trial's checkpoint path is made from its name there (search.resolve_spec)
            "pbt": opts.scheduler == "pbt",  # report checkpoints to Tune for PBT to clone (raylab/pbt.py)
            "code": registry.pack({trial.config.model}),  # a job file's model, by value (raylab.registry)
            "cpu": res["CPU"], "gpu": res["GPU"], "ddp_storage": join(root, "ddp"),
            "checkpoint": checkpoint_path(root, metas[0]["trial_id"])}


def _trainable(sources: list[dict], refs: dict | None = None):
    """run_trial with the shared data bound (put in the object store once) and per-trial resources."""
    from ray import tune

    def resources(config: dict):
        spec = config["spec"]
        if spec["workers"] > 1:  # the trial only drives the Train workers, which hold the resources
            return tune.PlacementGroupFactory([{"CPU": DDP_DRIVER_CPU}])
        return {"cpu": spec["cpu"], "gpu": spec["gpu"]}

    refs = _put_shared_data(sources) if refs is None else refs
    return tune.with_resources(tune.with_parameters(raylab_trial, data_refs=refs), resources)


def _tune_config(opts: SweepOptions, max_epochs: int, search_alg=None, num_samples: int = 1,
                 space: dict | None = None):
    from ray import tune
    # reuse_actors: the next trial runs in the finished one's worker process, which
    # has torch imported already (a fresh worker spends ~8 s starting up on this CPU).
    common = dict(max_concurrent_trials=opts.max_concurrent or None, reuse_actors=True,
                  trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
                  search_alg=search_alg, num_samples=num_samples)
    if search_alg is not None:  # the searcher learns from val_acc; a scheduler below says the same
        common.update(metric="val_acc", mode="max")
    if opts.scheduler == "pbt":
        from raylab import pbt
        if search_alg is not None or opts.workers > 1:
            raise ConfigError("--scheduler pbt runs with --search random and --workers 1: PBT picks its own "
                              "configs, and clones single-process checkpoints")
        return tune.TuneConfig(**{**common, "metric": "val_acc", "mode": "max"}, scheduler=pbt.scheduler(space or {}))
    if opts.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler
        # Rungs by epoch, not by Tune's iteration count, which starts over when a trial
        # restarts from its checkpoint: after epochs 2, 6, 18, ... keep the best third by
        # val acc; max_t past the last epoch so no trial is cut for length alone.
        asha = ASHAScheduler(time_attr="epoch", grace_period=2, reduction_factor=3, max_t=max_epochs + 1)
        return tune.TuneConfig(**{**common, "metric": "val_acc", "mode": "max"}, scheduler=asha)
    return tune.TuneConfig(**common)


def _trial_name(trial) -> str:
    if trial.config.get("sampled"):
        return search.trial_name(trial)
    return trial.config["spec"]["meta"]["trial_id"]


def _run_config(root: str, opts: SweepOptions, space: dict | None = None, study: str = ""):
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback  # result.json per trial, for Tune's own analysis

    from raylab.logs import EpochTensorBoard, mlflow_callback  # tensorboard --logdir <study>/
    # A table of variant and epoch metrics; the config of every trial is in the Parquet files.
    reporter = tune.CLIReporter(
        parameter_columns={"spec/meta/variant": "variant", "spec/trial/seed": "seed",
                           **{f"sampled/{k}": k for k in space or {}}},
        metric_columns={"epoch": "epoch", "train_loss": "train loss", "val_loss": "val loss",
                        "val_acc": "val acc", "images_per_second": "img/s"},
        max_report_frequency=15, sort_by_metric=False)
    return tune.RunConfig(
        name=TUNE_DIR, storage_path=root, verbose=opts.verbose, progress_reporter=reporter,
        failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        # PBT clones the checkpoints trials report to Tune; a few recent ones are all it reads.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=4) if opts.scheduler == "pbt" else None,
        callbacks=[ParquetCallback(root), JsonLoggerCallback(), EpochTensorBoard(),
                   *([mlflow_callback(root, study, opts.mlflow_uri)] if opts.log == "mlflow" else [])],
    )


# ------------------------------------------------------------------ helpers
def _connect(opts: SweepOptions) -> None:
    import ray
    _tune_env()
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
            # address="local": always a new instance. Without it ray.init joins any cluster this
            # machine's /tmp/ray/ray_current_cluster names (another user's `ray start` or test
            # Cluster), and then refuses num_cpus.
            ray.init(address="local", num_cpus=opts.num_cpus, include_dashboard=False, log_to_driver=opts.verbose > 1,
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
    write_bytes(json.dumps(obj, indent=1, default=str).encode(), path)


def _read_json(path: str) -> Any:
    from raylab.results import resolve_fs
    fs, p = resolve_fs(path)
    with fs.open_input_stream(p) as fh:
        return json.loads(fh.read().decode())
