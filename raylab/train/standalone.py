"""`raylab train`'s work: one trial in this process, with the same files a sweep writes.

The checkpoint of the last finished epoch sits in OUT/checkpoints/ (the scheme
of raylab/train/checkpoints.py, as in a sweep) so that `--resume` continues where a
killed run stopped; a kill mid-write leaves the previous one intact.
"""
from __future__ import annotations

import time
from pathlib import Path

from raylab.train.checkpoints import TrialFile, checkpoint_path
from raylab.declare.config import TrialConfig
from raylab.errors import CheckpointError, UsageError
from raylab.train.faults import InjectedFault
from raylab.data.sources import load_dataset
from raylab.results import (STUDY_JSON, StudyWriter, epoch_record, exists, format_epoch, join, running_best,
                            trial_record, weight_records)
from raylab.results.provenance import record
from raylab.results.storage import check_writable, write_json
from raylab.declare.study import Trial, variant_name
from raylab.train.loop import train
from raylab.train.placement import placement


def run_single(cfg: TrialConfig, overrides: dict, out: Path, *, resume: bool = False,
               progress: bool = True) -> int:
    variant = variant_name(overrides)
    trial_id = Trial(out.resolve().name, variant, cfg.seed, cfg).trial_id  # the id a sweep would give it
    meta = {"study": out.resolve().name, "trial_id": trial_id, "variant": variant}
    config = cfg.to_dict()

    check_writable(str(out))
    writer = StudyWriter(str(out))
    if trial_id in writer.trials and not resume:
        raise UsageError(f"{out} already holds trial {trial_id}: pass --resume to continue it, or choose another --out")
    ckpt = TrialFile(checkpoint_path(str(out), trial_id), cfg, read=resume)
    restarts = 0
    if resume:
        if ckpt.state is None:
            raise CheckpointError(f"nothing to resume: {ckpt.path} does not exist (run without --resume first)")
        writer.drop_epochs_after(trial_id, int(ckpt.state["epoch"]))
        restarts = int(writer.trials.get(trial_id, {}).get("restarts") or 0) + 1  # this start is a restart

    data = load_dataset(cfg.data, cfg.data_root, download=cfg.download)
    study_json = join(str(out), STUDY_JSON)  # its name and provenance; a resumed run keeps the first's
    about = None if exists(study_json) else {"name": meta["study"], "provenance": record([(cfg.data, vars(data))])}
    where = placement(cfg.device)
    started = time.time()

    def report(row: dict, checkpoint) -> None:
        nonlocal about
        if about is not None:  # with the first rows: a run refused before training writes nothing
            write_json(study_json, about)
            about = None
        writer.add_epoch(epoch_record(meta, config, row))
        writer.set_trial(trial_record(meta, config, status="running", epochs_run=row["epoch"], restarts=restarts,
                                      **running_best(writer.trials.get(trial_id), row), **where))
        ckpt.save(checkpoint)
        writer.flush()
        if not progress and row["epoch"] > 0:  # with a progress bar, train() prints the line
            print(format_epoch(row), flush=True)

    try:
        outcome = train(cfg, data, report=report, resume=ckpt.state, progress=progress)
    except InjectedFault:
        writer.set_trial(trial_record(meta, config, status="failed", error="injected fault"))
        writer.flush()
        raise
    writer.set_trial(trial_record(
        meta, config, status=outcome.status, epochs_run=outcome.history[-1]["epoch"],
        best_val_acc=outcome.best_val_acc, best_epoch=outcome.best_epoch,
        final_val_acc=outcome.final_val_acc, n_params=outcome.n_params, macs=outcome.macs,
        wall_seconds=time.time() - started, restarts=restarts, error=None, **where))
    writer.set_weights(trial_id, weight_records(meta, config, outcome.weights))
    writer.flush()
    print(f"{trial_id}: {outcome.status}, best val acc {outcome.best_val_acc:.4f} at epoch "
          f"{outcome.best_epoch}; results in {out}/")
    return 0
