"""The Tune trainable: one variant-seed pair, from config dict to `train()`.

One `tune.report` per epoch; the trial keeps its own checkpoint file
(raylab/checkpoints.py). With `workers > 1` the trial drives a Ray Train
TorchTrainer (DDP) instead and relays its workers' reports to Tune.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from raylab.config import TrialConfig

CHECKPOINT_FILE = "checkpoint.pt"  # inside a DDP run's Train checkpoint folder


def raylab_trial(config: dict, data_refs: dict | None = None) -> None:
    """What Tune calls: the spec is under one key so Tune's grid search sees one axis;
    a sampled trial's values come under `sampled` and are merged in by resolve_spec."""
    from ray import tune

    from raylab.registry import install
    from raylab.search import resolve_spec
    install(config["spec"].get("code"))  # a job file's model, shipped by value: the worker cannot import it
    run_trial(resolve_spec(config, tune.get_context().get_trial_name()), data_refs)


def run_trial(config: dict, data_refs: dict | None = None) -> None:
    """Train one variant-seed pair, resuming from its checkpoint file whenever it
    starts: after Tune restarts it (crash, lost node) or `raylab resume` does."""
    from ray import tune

    from raylab.checkpoints import find_checkpoint, save_checkpoint
    from raylab.train import check_resumable, train

    cfg = TrialConfig.from_dict(config["trial"])
    data_ref = (data_refs or {}).get(data_key(cfg))
    if config["workers"] > 1:
        return _run_ddp_trial(config, data_ref)
    path = config["checkpoint"]
    state = find_checkpoint(path)
    restarts = int(state.get("restarts", 0)) + 1 if state is not None else 0
    cloned = False
    if config.get("pbt"):  # PBT may hand this trial another trial's checkpoint (raylab/pbt.py)
        from raylab import pbt
        state, cloned = pbt.start_state(state, config["meta"]["trial_id"])
    if state is not None:
        check_resumable(state, cfg)  # e.g. left in the folder by a `raylab train` of another model
    # A clone's history is the donor's: this trial's own rows for those epochs stay as written.
    replay = {} if cloned else _replay(state)
    # Under PBT the config changes mid-run: each report says which values it trained with.
    trained_with = {"trained_with": {k: getattr(cfg, k) for k in pbt.MUTABLE}} if config.get("pbt") else {}

    def report(row: dict, checkpoint) -> None:
        # Checkpoint first: a kill between the two leaves an epoch the driver has not
        # seen, and the next start replays it from the checkpoint's history.
        state = {**checkpoint(), "restarts": restarts}
        save_checkpoint(state, path)
        if row["epoch"] == cfg.epochs:
            return  # goes out with the summary: a scheduler stopping the trial here must not lose it
        if config.get("pbt"):
            pbt.report({**row, "restarts": restarts, **replay, **trained_with}, state, config["meta"]["trial_id"])
        else:
            tune.report({**row, "restarts": restarts, **replay})
        replay.clear()

    outcome = train(cfg, _dataset(cfg, data_ref), report, resume=state)
    tune.report({**_final_result(outcome, restarts), **replay, **trained_with})


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
        train_loop_config={"trial": config["trial"], "data_ref": data_ref, "code": config.get("code")},
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
    from raylab.registry import install
    from raylab.train import train

    install(loop_config.get("code"))
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
