"""Logs people already watch, next to the Parquet tables: TensorBoard event files per trial.

`tensorboard --logdir results/<study>/` finds one run per trial under
tune/<trial name>/, with train/val loss and accuracy, lr and images/s by
epoch, and a searched trial's sampled values as hparams. This is Ray Tune's
own TensorBoardX logger; the only change is the step, which is the epoch
rather than Tune's iteration count (that starts over when a trial restarts
from its checkpoint, which would fold a resumed curve back onto itself).
"""
from __future__ import annotations

import logging

from ray.tune.logger import TBXLoggerCallback

from raylab.errors import ConfigError
from raylab.results.storage import is_uri
from raylab.sweep.spec import resolve_spec

SKIP = ("history", "weights", "final", "restarts")  # lists of dicts and bookkeeping, not curves
# Tune's logger says at INFO, on every trial's end, that it left tuple-valued config out of
# the hparams (normalisation mean/std, milestones): known and harmless, but it printed
# above a one-line error on stderr. Its warnings still show.
logging.getLogger("ray.tune.logger.tensorboardx").setLevel(logging.WARNING)


class EpochTensorBoard(TBXLoggerCallback):
    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if "epoch" not in result:
            return
        scalars = {k: v for k, v in result.items() if k not in SKIP}
        # Epoch 0 (the untrained net) is step 0: Tune uses training_iteration as the step.
        super().log_trial_result(iteration, trial, {**scalars, "timesteps_total": None,
                                                    "training_iteration": int(result["epoch"])})


def mlflow_callback(root: str, study: str, tracking_uri: str | None = None):
    """`--log mlflow`: one MLflow run per trial in experiment `study`, its config as params and
    its epochs as metrics (step = epoch). Default store: <study folder>/mlflow.db (SQLite:
    MLflow 3 refuses its old file store), which `mlflow ui --backend-store-uri
    sqlite:///<study>/mlflow.db` opens."""
    try:
        from ray.air.integrations.mlflow import MLflowLoggerCallback
        import mlflow  # noqa: F401  (Ray's callback imports it lazily, and fails late)
    except ImportError:
        raise ConfigError("--log mlflow needs mlflow: pip install 'raylab[mlflow]'") from None

    class RaylabMLflow(MLflowLoggerCallback):
        def log_trial_start(self, trial) -> None:
            if trial in self._trial_runs:
                return
            # After `raylab resume` this callback starts empty (Tune keeps no logger state):
            # a trial that had a run before continues it, so each trial stays one run.
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.tracking_uri)
            earlier = client.search_runs([self.mlflow_util.experiment_id], max_results=1,
                                         filter_string=f"tags.trial_name = '{trial}'")
            if earlier:
                self._trial_runs[trial] = earlier[0].info.run_id
                client.update_run(earlier[0].info.run_id, status="RUNNING")
                return
            spec = resolve_spec(trial.config, str(trial))
            run = self.mlflow_util.start_run(run_name=str(trial), tags={
                "trial_name": str(trial), "variant": spec["meta"]["variant"], "study": spec["meta"]["study"]})
            self._trial_runs[trial] = run.info.run_id
            # The trial's own config, not Tune's (which holds the pickled model and paths).
            self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=spec["trial"])

        def log_trial_result(self, iteration: int, trial, result: dict) -> None:
            if "epoch" not in result:
                return
            if trial not in self._trial_runs:
                self.log_trial_start(trial)
            run_id = self._trial_runs[trial]
            history = result.get("history") or []
            if history:  # a restored trial replays its checkpoint's epochs: log those a killed driver never did
                from mlflow.tracking import MlflowClient

                logged = {m.step for m in MlflowClient(tracking_uri=self.tracking_uri).get_metric_history(
                    run_id, "val_acc")}
                for row in history:
                    if int(row["epoch"]) not in logged:
                        self._log_epoch(run_id, row)
            self._log_epoch(run_id, result)

        def _log_epoch(self, run_id: str, row: dict) -> None:
            metrics = {k: v for k, v in row.items() if k not in SKIP and isinstance(v, (int, float))}
            self.mlflow_util.log_metrics(run_id=run_id, metrics_to_log=metrics, step=int(row["epoch"]))

    uri = tracking_uri or ("sqlite:///" + root.rstrip("/") + "/mlflow.db" if not is_uri(root) else None)
    if uri is None:
        raise ConfigError("--log mlflow with a remote --storage needs --mlflow-uri (a tracking server)")
    return RaylabMLflow(tracking_uri=uri, experiment_name=study)
