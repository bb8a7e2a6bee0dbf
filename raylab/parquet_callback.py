"""Driver side of a sweep: reported epochs -> the three Parquet tables, kept fresh."""
from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback

from raylab.results import StudyWriter, epoch_record, trial_record, weight_records

EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds",
              "images_per_second", "train_images")


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
        # Tune calls this when it writes its experiment state (which trials exist
        # and which are done): flushing here keeps the Parquet files at least as
        # far along as what a resume will believe.
        self._flush(force=True)
        return None

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        # PBT may have changed the trial's config since this epoch ran (Tune calls the scheduler
        # first); the trial reports the values it trained with (raylab/trainable.py).
        config = {**_spec(trial)["trial"], **(result.get("trained_with") or {})}
        final = bool(result.get("final"))  # the last epoch's row and the trial's summary, together
        for meta in _metas(trial):
            for old in result.get("history") or []:
                # Replayed epochs fill rows the driver missed; a row already written stays, since
                # under PBT it was written with the config it trained with, which may differ now.
                if (meta["trial_id"], int(old["epoch"])) not in self.writer.metrics:
                    self.writer.add_epoch(epoch_record(meta, config, {k: old.get(k) for k in EPOCH_KEYS}))
            self.writer.add_epoch(epoch_record(meta, config, {k: result[k] for k in EPOCH_KEYS}))
            if final:
                self.writer.set_trial(trial_record(meta, config, **{k: result[k] for k in (
                    "status", "best_val_acc", "best_epoch", "final_val_acc", "n_params", "macs", "restarts")},
                    epochs_run=int(result["epoch"]), wall_seconds=result.get("time_total_s"), error=None))
                self.writer.set_weights(meta["trial_id"], weight_records(meta, config, result["weights"]))
            else:
                self.writer.set_trial(trial_record(meta, config, status="running", epochs_run=int(result["epoch"]),
                                                   restarts=int(result.get("restarts", 0)),
                                                   wall_seconds=result.get("time_total_s")))
        self._flush(force=final)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = "trial failed; see its error.txt in the tune/ folder"
        try:
            error = str(trial.get_pickled_error() or trial.get_error() or error)
        except Exception:  # the error file may live on another node's disk
            pass
        last = error.strip().splitlines()[-1][:500] if error.strip() else error
        for meta in _metas(trial):
            self.writer.set_trial(trial_record(meta, _spec(trial)["trial"], status="failed", error=last))
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


def _spec(trial) -> dict:
    """The trial's spec with a sampled trial's values, id and variant merged in (raylab.search)."""
    from raylab.search import resolve_spec
    return resolve_spec(trial.config, str(trial))


def _metas(trial) -> list[dict]:
    spec = _spec(trial)
    return [spec["meta"], *spec.get("aliases", [])]
