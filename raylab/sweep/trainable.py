"""The Tune trainable: one variant-seed pair, from config dict to `train()`.

One `tune.report` per epoch. The trial keeps its own checkpoint file
(raylab/train/checkpoints.py) and reads it whenever it starts. With `workers > 1`
the trial drives a Ray Train TorchTrainer (DDP) instead: its rank 0 writes
the same file, every rank reads it on a restart, and the workers' reports
reach Tune through TuneReportCallback. How often a trial was restarted is
counted by the driver, where Tune retries it (sweep/callback.py).
"""
from __future__ import annotations

from raylab.declare.config import TrialConfig
from raylab.sweep.shared_data import trial_dataset


def raylab_trial(config: dict, data_refs: dict | None = None) -> None:
    """What Tune calls: the spec is under one key so Tune's grid search sees one axis;
    a sampled trial's values come under `sampled` and are merged in by resolve_spec."""
    from ray import tune

    from raylab.sweep.spec import resolve_spec
    from raylab.sweep.user_models import install

    install(config["spec"].get("code"))  # a job file's model, shipped by value: the worker cannot import it
    run_trial(resolve_spec(config, tune.get_context().get_trial_name()), data_refs)


def run_trial(spec: dict, data_refs: dict | None = None) -> None:
    """Train one variant-seed pair, resuming from its checkpoint file whenever it
    starts: after Tune restarts it (crash, lost node) or `raylab resume` does."""
    from ray import tune

    from raylab.sweep.shared_data import data_key

    cfg = TrialConfig.from_dict(spec["trial"])
    data_ref = (data_refs or {}).get(data_key(cfg))
    if spec["workers"] > 1:
        return _run_ddp_trial(spec, data_ref)
    pbt_id = spec["meta"]["trial_id"] if spec.get("pbt") else None
    _train_and_report(cfg, spec["checkpoint"], data_ref, tune.report, rank=0, pbt_id=pbt_id)


def _train_and_report(cfg: TrialConfig, path: str, data_ref, send, rank: int, pbt_id: str | None = None) -> None:
    """The one trial body, for a plain trial (send = tune.report, rank 0) and for each
    DDP worker (send = ray.train.report): resume from `path`, write it every epoch.
    Under PBT (`pbt_id`: this trial's id) each report also hands Tune the checkpoint,
    and the trial may start from another trial's (sweep/pbt.py)."""
    from raylab.train.checkpoints import TrialFile, check_resumable
    from raylab.train.loop import train
    from raylab.train.placement import placement

    ckpt = TrialFile(path, cfg)
    state, cloned, extra = ckpt.state, False, {}
    if pbt_id:
        from raylab.sweep import pbt
        state, cloned = pbt.start_state(state, pbt_id)
        if cloned:
            check_resumable(state, cfg)
        extra = pbt.trained_with(cfg)  # the config may change mid-run: each report says what it trained with
    # No replay under PBT: a clone's history is the donor's, and PBT may have changed this
    # trial's config since its own epochs ran, so a replay would rewrite their rows with
    # today's config (the Parquet callback keeps the last row of an epoch). Their rows were
    # written when they ran; only a driver killed in between loses one.
    replay = {} if pbt_id else ckpt.replay()
    where = placement(cfg.device)  # node, device, code: every report carries them to the trial's row

    def report(row: dict, checkpoint) -> None:
        # Checkpoint first: a kill between the two leaves an epoch the driver has not
        # seen, and the next start replays it from the checkpoint's history.
        written = ckpt.save(checkpoint) if rank == 0 else None
        if row["epoch"] == cfg.epochs:
            return  # goes out with the summary: a scheduler stopping the trial here must not lose it
        if pbt_id:
            pbt.report({**row, **replay, **extra, **where}, written, pbt_id)
        else:
            send({**row, **replay, **where})  # under DDP every rank calls it: Train's report is collective
        replay.clear()

    outcome = train(cfg, trial_dataset(cfg, data_ref), report, resume=state)
    send({**_final_result(outcome), **replay, **extra, **where})


def _final_result(outcome) -> dict:
    """The last report of a trial: its summary and weight histograms for trials.parquet."""
    return {**outcome.history[-1], "final": True, "status": outcome.status,
            "best_val_acc": outcome.best_val_acc, "best_epoch": outcome.best_epoch,
            "final_val_acc": outcome.final_val_acc, "n_params": outcome.n_params,
            "macs": outcome.macs, "weights": outcome.weights}


# ----------------------------------------------------------------------- DDP
def _run_ddp_trial(spec: dict, data_ref) -> None:
    """A Tune trial that drives a Ray Train TorchTrainer (Train V2); the workers'
    reports reach Tune through TuneReportCallback, rank 0's numbers (all ranks
    hold the same all-reduced metrics)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    use_gpu = spec["gpu"] >= 1
    trainer = TorchTrainer(
        _ddp_worker,
        train_loop_config={"trial": spec["trial"], "data_ref": data_ref, "checkpoint": spec["checkpoint"],
                           "code": spec.get("code")},
        scaling_config=ray.train.ScalingConfig(
            num_workers=int(spec["workers"]), use_gpu=use_gpu,
            resources_per_worker={"CPU": spec["cpu"], **({"GPU": 1} if use_gpu else {})}),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=ray.train.RunConfig(
            name=f"ddp-{spec['meta']['trial_id']}", storage_path=spec["ddp_storage"],
            callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


def _ddp_worker(loop_config: dict) -> None:
    import ray.train

    from raylab.sweep.user_models import install

    install(loop_config.get("code"))  # a job file's model: registered before the config is read
    cfg = TrialConfig.from_dict(loop_config["trial"])
    rank = ray.train.get_context().get_world_rank()
    _train_and_report(cfg, loop_config["checkpoint"], loop_config["data_ref"], ray.train.report, rank)
