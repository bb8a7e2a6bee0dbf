"""Study -> Ray Tune sweep: the driver. One trial per variant-seed pair.

    run_study(study, SweepOptions(storage="results"))   # fresh sweep
    resume_study("results/lab2_lr_sweep")               # after a crash or a kill

The data set is decoded once here and put in the object store as numpy
arrays, so every trial on a node maps the same copy instead of decoding its
own. The trial itself is sweep/trainable.py, its share of a machine
sweep/resources.py, and sweep/callback.py turns what trials report into the
three contract tables.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import asdict

from raylab.train.checkpoints import checkpoint_path
from raylab.declare.config import ConfigError, SweepOptions
from raylab.errors import ClusterError, LockError
from raylab.results.contract import PROGRESS_COLUMNS
from raylab.results.storage import absolute, exists, join, read_json, resolve_fs, write_json
from raylab.declare.study import Study
from raylab.results.contract import STUDY_JSON
from raylab.results.lock import lock_folder
from raylab.results.provenance import record
from raylab.sweep import searcher, user_models
from raylab.sweep.callback import ParquetCallback
from raylab.sweep.node_wait import sized_cluster
from raylab.sweep.resources import DDP_DRIVER_CPU, default_resources
from raylab.sweep.shared_data import data_key, data_sources, put_shared_data
from raylab.sweep.storage_noise import hush_storage_faults
from raylab.sweep.trainable import raylab_trial

TUNE_DIR = "tune"  # Tune's own experiment folder inside the study folder


def study_dir(storage: str, name: str) -> str:
    return join(absolute(storage), name)


def run_study(study: Study, opts: SweepOptions):
    """Run every trial of `study` on Ray Tune; returns the Tune ResultGrid."""
    trials = study.trials()
    root = study_dir(opts.storage, study.name)
    _refuse_existing_sweep(root)
    connect(opts)
    from ray import tune

    cluster = sized_cluster([t.config for t in trials], opts)
    specs = [_spec(t, opts, cluster, root) for t in trials]
    space = study.space()
    algo = searcher.search_alg(opts.search, space, len(specs), seed=trials[0].config.seed,
                               max_concurrent=opts.max_concurrent or 0)
    # Made before anything is written: a search or scheduler that cannot run is refused first.
    tune_config = _tune_config(opts, max(t.config.epochs for t in trials), search_alg=algo,
                               num_samples=study.num_samples if space else 1, space=space)
    run_config = _run_config(root, opts, space, study.name)
    with contextlib.closing(lock_folder(root)):  # before anything is written: a second driver must not touch it
        _refuse_existing_sweep(root)  # again: a driver that started with us may have finished first
        sources = data_sources([t.config for t in trials])
        refs = put_shared_data(sources)
        user_models.check_user_models(trials, refs)  # a job file's model that returns no logits: refused first
        write_json(join(root, STUDY_JSON), {**study.describe(), "options": asdict(opts), "data_sources": sources,
                                            "provenance": _provenance(sources, refs)})
        tuner = tune.Tuner(
            _trainable(sources, refs),
            param_space=searcher.param_space(specs, space),
            tune_config=tune_config,
            run_config=run_config,
        )
        return tuner.fit()


def _provenance(sources: list[dict], refs: dict) -> dict:
    """The driver's code, packages and host, and each data source's content hash (read from the
    object store, where the driver just put the decoded arrays)."""
    import ray

    return record((src["data"], ray.get(refs[data_key(src)])) for src in sources)


def _refuse_existing_sweep(root: str) -> None:
    if exists(join(root, TUNE_DIR, "tuner.pkl")):
        raise LockError(f"{root} already holds a sweep: `raylab resume {root}` continues it, "
                          "or choose another --storage")


def resume_study(path: str, opts: SweepOptions | None = None):
    """Finish an interrupted sweep: unfinished and errored trials resume from checkpoints."""
    root = absolute(path)
    if not exists(join(root, TUNE_DIR, "tuner.pkl")) or not exists(join(root, STUDY_JSON)):
        raise ConfigError(f"{path} holds no sweep to resume (no {TUNE_DIR}/tuner.pkl): "
                          "give the study folder, e.g. results/lab2_lr_sweep")
    _refuse_older_layout(root)
    meta = read_json(join(root, STUDY_JSON))
    saved = SweepOptions(**{k: v for k, v in meta["options"].items() if k in SweepOptions.__dataclass_fields__})
    if opts is not None:  # where to connect can change between runs; what to train cannot
        saved.address, saved.num_cpus, saved.verbose = opts.address, opts.num_cpus, opts.verbose
    with contextlib.closing(lock_folder(root)):
        connect(saved)
        from ray import tune
        tuner = tune.Tuner.restore(join(root, TUNE_DIR), trainable=_trainable(meta["data_sources"]),
                                   resume_unfinished=True, resume_errored=True)
        return tuner.fit()


def _refuse_older_layout(root: str) -> None:
    """Tune's tuner.pkl names the functions it calls by module path. A folder written before
    raylab's modules moved into subpackages names modules that no longer exist, and Tune's
    restore would fail with a traceback deep in unpickling: say so in one line, before Ray starts."""
    import pickle

    fs, path = resolve_fs(join(root, TUNE_DIR, "tuner.pkl"))
    with fs.open_input_file(path) as fh:
        data = fh.read()
    try:
        pickle.loads(data)  # what Tuner.restore does first; the study's own folder, as resume always trusted
    except (ImportError, AttributeError) as exc:
        missing = getattr(exc, "name", None) or str(exc)
        if "raylab" not in str(missing) and "raylab" not in str(exc):
            raise
        raise ConfigError(f"{root} was written by an older raylab whose module {missing} no longer exists, "
                          "so its sweep cannot resume: its Parquet results still read (`raylab report`); "
                          "rerun the study into another --storage to finish it") from None


def _spec(trial, opts: SweepOptions, cluster: dict, root: str) -> dict:
    """Everything a trial needs, as plain data: it is what Tune stores and restores."""
    res = default_resources(trial.config, opts, cluster)
    metas = trial.metas()
    return {"meta": metas[0], "shared_with": metas[1:], "trial": trial.config.to_dict(), "workers": opts.workers,
            "root": root,  # a sampled trial's checkpoint path is made from its name there (sweep/spec.py)
            "pbt": opts.scheduler == "pbt",  # report checkpoints to Tune for PBT to clone (sweep/pbt.py)
            "code": user_models.pack({trial.config.model}),  # a job file's model, by value (sweep/user_models.py)
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

    refs = put_shared_data(sources) if refs is None else refs
    return tune.with_resources(tune.with_parameters(raylab_trial, data_refs=refs), resources)


def _tune_config(opts: SweepOptions, max_epochs: int, search_alg=None, num_samples: int = 1,
                 space: dict | None = None):
    from ray import tune
    # reuse_actors: the next trial runs in the finished one's worker process, which
    # has torch imported already (a fresh worker spends ~8 s starting up on this CPU).
    # A seeded random search holds the concurrency limit itself: Tune ignores this one for it, noisily.
    limit = None if opts.search == "random" and search_alg is not None else opts.max_concurrent or None
    common = dict(max_concurrent_trials=limit, reuse_actors=True,
                  trial_name_creator=trial_name, trial_dirname_creator=trial_name,
                  search_alg=search_alg, num_samples=num_samples)
    if opts.search != "random":  # the searcher learns from val_acc; a scheduler below says the same
        common.update(metric="val_acc", mode="max")
    if opts.scheduler == "pbt":
        from raylab.sweep import pbt
        if opts.search != "random" or opts.workers > 1:
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


def trial_name(trial) -> str:
    """A trial's name and folder: its trial_id (Tune pickles this function by name)."""
    if trial.config.get("sampled"):
        return searcher.trial_name(trial)
    return trial.config["spec"]["meta"]["trial_id"]


def _run_config(root: str, opts: SweepOptions, space: dict | None = None, study: str = ""):
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback  # result.json per trial, for Tune's own analysis

    from raylab.sweep.logs import EpochTensorBoard, mlflow_callback  # tensorboard --logdir <study>/
    # A table of variant and epoch metrics; the config of every trial is in the Parquet files.
    reporter = tune.CLIReporter(
        parameter_columns={"spec/meta/variant": "variant", "spec/trial/seed": "seed",
                           **{f"sampled/{k}": k for k in space or {}}},
        metric_columns=PROGRESS_COLUMNS,
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
def connect(opts: SweepOptions) -> None:
    """Join the cluster that --address or RAY_ADDRESS names, else start a local Ray of our own."""
    import ray
    _tune_env()
    hush_storage_faults()  # a full or read-only folder mid-sweep: raylab's one line, not Tune's too
    if ray.is_initialized():
        return
    if opts.address and opts.address != "auto":
        _check_reachable(opts.address)
    # Ray's start-up chatter would bury a one-line error; its warnings stay visible at -v.
    ray_logger = logging.getLogger("ray")
    level = ray_logger.level
    ray_logger.setLevel(logging.ERROR if opts.verbose <= 1 else level)
    # --address, else RAY_ADDRESS: `ray job submit` sets it for its jobs, and
    # cluster.yaml exports it on the head for `ray submit`. Neither: a local Ray of
    # our own ("local"), never whichever cluster /tmp/ray/ray_current_cluster names
    # (another user's `ray start` on this machine).
    address = opts.address or os.environ.get("RAY_ADDRESS") or "local"
    try:
        if address != "local":
            ray.init(address=address, log_to_driver=opts.verbose > 1, logging_level=ray_logger.level)
        else:
            ray.init(address="local", num_cpus=_local_cpus(opts), include_dashboard=False,
                     log_to_driver=opts.verbose > 1, logging_level=ray_logger.level)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = f"a Ray cluster at {address}" if address != "local" else "a local Ray instance"
        raise ClusterError(f"cannot start or reach {where}: {first}") from None
    finally:
        ray_logger.setLevel(level)
    if address != "local":  # say which cluster: a private Ray on a head node would look the same otherwise
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        print(f"raylab: joined the Ray cluster at {address} ({len(nodes)} node(s) up)", flush=True)


def _local_cpus(opts: SweepOptions) -> int | None:
    """One CPU more than the machine has when trials are DDP jobs: each trial's
    driver holds DDP_DRIVER_CPU while it only waits on its workers, and without
    room for it `--workers 2` on 2 cores never starts."""
    if opts.num_cpus is not None or opts.workers < 2:
        return opts.num_cpus
    return (os.cpu_count() or 1) + 1


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minutes of GCS retries, when nothing listens there."""
    import socket
    host, _, port = address.replace("ray://", "").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address} is not auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach a Ray cluster at --address {address} ({exc.strerror or exc}): "
                          "is `ray start --head` running there, and the port open?") from None


def _tune_env() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # The classic reporter takes our column choice; the new one would print every
    # config field of every trial. Parquet is the log: of Tune's own loggers only
    # the JSON one stays (added in _run_config), for Tune's ExperimentAnalysis.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
