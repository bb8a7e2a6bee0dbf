"""Driver side of a sweep: reported epochs -> the three Parquet tables, kept fresh.

Each flush appends only what is new (raylab/results/parts.py); the sweep's end compacts.
"""
from __future__ import annotations

import os
import time
from typing import Any

from ray.tune import Callback

from raylab.results import (EPOCH_COLUMNS, PLACEMENT_COLUMNS, SUMMARY_COLUMNS, StorageError, StudyWriter,
                            epoch_record, running_best, trial_record, weight_records)
from raylab.results.rows import count
from raylab.sweep.spec import resolve_spec


class ParquetCallback(Callback):
    """Driver side: reported epochs -> metrics/trials/weights.parquet, refreshed while running.

    The writer is created in `setup`, which also runs after `Tuner.restore`, so
    a resumed sweep starts from the tables already on disk and upserts into them.
    `restarts` is counted here, where a trial starts: any start of a trial that
    had started before (Tune's retry after a crash or a lost node, even one
    before the first checkpoint, or `raylab resume` after a killed driver).
    """

    def __init__(self, study_dir: str, flush_seconds: float = 2.0) -> None:
        self.study_dir = study_dir
        self.flush_seconds = flush_seconds
        self.writer: StudyWriter | None = None
        self.failed: StorageError | None = None  # the write that met a full or read-only folder
        self._last_flush = 0.0

    def __getstate__(self) -> dict:
        return {"study_dir": self.study_dir, "flush_seconds": self.flush_seconds}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def setup(self, **info: Any) -> None:
        self.writer = StudyWriter(self.study_dir)

    def get_state(self) -> None:
        # Tune calls this when it writes its experiment state (which trials exist
        # and which are done): flushing here keeps the Parquet files at least as
        # far along as what a resume will believe; raising keeps Tune from saving it.
        self._flush(force=True)
        self._raise_if_failed()
        return None

    def on_step_begin(self, iteration, trials, **info) -> None:
        self._raise_if_failed()  # a write failed last step: end the sweep here (see _flush)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        config = _spec(trial)["trial"]
        for meta in _metas(trial):
            row = self.writer.trials.get(meta["trial_id"])
            restarts = 0 if row is None else count(row.get("restarts")) + 1
            self.writer.set_trial(trial_record(meta, config, status="running", restarts=restarts))
        self._flush(force=True)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        # PBT may have changed the trial's config since this epoch ran (Tune calls the scheduler
        # first); the trial reports the values it trained with (sweep/trainable.py).
        config = {**_spec(trial)["trial"], **(result.get("trained_with") or {})}
        final = bool(result.get("final"))  # the last epoch's row and the trial's summary, together
        where = {k: result[k] for k in PLACEMENT_COLUMNS if k in result}  # the node it runs on (placement.py)
        for meta in _metas(trial):
            history = result.get("history") or []
            for old in history:
                self.writer.add_epoch(epoch_record(meta, config, {k: old.get(k) for k in EPOCH_COLUMNS}))
            self.writer.add_epoch(epoch_record(meta, config, {k: result[k] for k in EPOCH_COLUMNS}))
            if final:
                self.writer.set_trial(trial_record(meta, config, **{k: result[k] for k in (
                    "status", *SUMMARY_COLUMNS, "n_params", "macs")},
                    epochs_run=int(result["epoch"]), wall_seconds=result.get("time_total_s"), error=None, **where))
                self.writer.set_weights(meta["trial_id"], weight_records(meta, config, result["weights"]))
            else:
                so_far = _summary_after(self.writer.trials.get(meta["trial_id"]), [*history, result])
                self.writer.set_trial(trial_record(meta, config, status="running", epochs_run=int(result["epoch"]),
                                                   wall_seconds=result.get("time_total_s"), **so_far, **where))
        # No forced flush at a trial's end: Tune saves its experiment state only after
        # get_state (above) has flushed, so a resume never believes more than is on disk.
        self._flush()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = "trial failed; see its error.txt in the tune/ folder"
        try:
            # Tune writes error.txt to the trial's local folder just before this call and copies
            # it to storage later: read the local one, or the column holds no error at all.
            local = trial.error_file
            text = open(local).read() if local and os.path.exists(local) else None
            error = str(text or trial.get_pickled_error() or trial.get_error() or error)
        except Exception:  # the error file may live on another node's disk
            pass
        last = error.strip().splitlines()[-1][:500] if error.strip() else error
        for meta in _metas(trial):
            self.writer.set_trial(trial_record(meta, _spec(trial)["trial"], status="failed", error=last))
        self._flush(force=True)

    def on_experiment_end(self, trials, **info) -> None:
        self._raise_if_failed()  # a full or read-only folder: no compaction to try
        for trial in trials:  # stopped early by a scheduler (ASHA): no final report came
            for meta in _metas(trial):
                row = self.writer.trials.get(meta["trial_id"])
                if row and row.get("status") == "running" and trial.status == "TERMINATED":
                    # its best / final so far are in the row already (_summary_after)
                    self.writer.set_trial({"trial_id": meta["trial_id"], "status": "stopped"})
        self.writer.close()  # the sweep's parts merged into the three files

    def _flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.failed is None and (force or now - self._last_flush >= self.flush_seconds):
            try:
                self.writer.flush()
            except StorageError as exc:
                # Raised inside a trial event, Tune would wrap it in a TuneError with a traceback;
                # kept, it ends the sweep at the next step as raylab's one line (exit 2).
                self.failed = exc
            self._last_flush = now

    def _raise_if_failed(self) -> None:
        if self.failed is not None:
            raise self.failed


def _summary_after(previous: dict | None, rows: list[dict]) -> dict:
    """best / final val acc of a running trial after `rows` (a restored trial's first
    report replays its checkpoint's history from epoch 0, then the new epoch)."""
    row = dict(previous or {})
    for r in rows:
        row.update(running_best(row, r), epochs_run=int(r["epoch"]))
    return {k: row[k] for k in SUMMARY_COLUMNS}


def _spec(trial) -> dict:
    """The trial's spec with a sampled trial's values, id and variant merged in (raylab.declare.space)."""
    return resolve_spec(trial.config, str(trial))


def _metas(trial) -> list[dict]:
    spec = _spec(trial)
    return [spec["meta"], *spec.get("shared_with", [])]
