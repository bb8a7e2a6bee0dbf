"""`raylab train`: one trial in this process, with the same files a sweep writes.

The checkpoint of the last finished epoch sits in OUT/checkpoints/ so that
`--resume` continues where a killed run stopped; it is written to a temporary
name and renamed, so a kill mid-write leaves the previous one intact
(raylab/checkpoints.py); a sweep keeps its trials' checkpoints the same way.
"""
from __future__ import annotations

import time
from pathlib import Path

from raylab.checkpoints import load_checkpoint, save_checkpoint
from raylab.config import ConfigError, TrialConfig
from raylab.results import (StudyWriter, check_writable, checkpoint_path, epoch_record, running_best, trial_record,
                            weight_records)
from raylab.study import Trial, variant_name
from raylab.train import InjectedFault, check_resumable, format_epoch, train


def run_single(cfg: TrialConfig, overrides: dict, out: Path, *, resume: bool = False,
               progress: bool = True) -> int:
    variant = variant_name(overrides)
    trial_id = Trial(out.resolve().name, variant, cfg.seed, cfg).trial_id  # the id a sweep would give it
    meta = {"study": out.resolve().name, "trial_id": trial_id, "variant": variant}
    config = cfg.to_dict()
    ckpt_path = Path(checkpoint_path(str(out), trial_id))

    check_writable(str(out))
    writer = StudyWriter(str(out))
    state, restarts = None, 0
    if trial_id in writer.trials and not resume:
        raise ConfigError(f"{out} already holds trial {trial_id}: pass --resume to continue it, or choose another --out")
    if resume:
        if not ckpt_path.exists():
            raise ConfigError(f"nothing to resume: {ckpt_path} does not exist (run without --resume first)")
        state = load_checkpoint(ckpt_path)
        check_resumable(state, cfg)
        writer.drop_epochs_after(trial_id, int(state["epoch"]))
        restarts = int(writer.trials.get(trial_id, {}).get("restarts") or 0) + 1

    started = time.time()

    def report(row: dict, checkpoint) -> None:
        writer.add_epoch(epoch_record(meta, config, row))
        writer.set_trial(trial_record(meta, config, status="running", epochs_run=row["epoch"], restarts=restarts,
                                      **running_best(writer.trials.get(trial_id), row)))
        save_checkpoint(checkpoint(), ckpt_path)
        writer.flush()
        if not progress and row["epoch"] > 0:  # with a progress bar, train() prints the line
            print(format_epoch(row), flush=True)

    try:
        outcome = train(cfg, report=report, resume=state, progress=progress)
    except InjectedFault:
        writer.set_trial(trial_record(meta, config, status="failed", error="injected fault"))
        writer.flush()
        raise
    writer.set_trial(trial_record(
        meta, config, status=outcome.status, epochs_run=outcome.history[-1]["epoch"],
        best_val_acc=outcome.best_val_acc, best_epoch=outcome.best_epoch,
        final_val_acc=outcome.final_val_acc, n_params=outcome.n_params, macs=outcome.macs,
        wall_seconds=time.time() - started, restarts=restarts, error=None))
    writer.set_weights(trial_id, weight_records(meta, config, outcome.weights))
    writer.flush()
    print(f"{trial_id}: {outcome.status}, best val acc {outcome.best_val_acc:.4f} at epoch "
          f"{outcome.best_epoch}; results in {out}/")
    return 0
