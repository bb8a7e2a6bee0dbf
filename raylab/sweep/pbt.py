"""Population Based Training (`--scheduler pbt`) on the checkpoint a trial already writes.

Every `PERTURB_EPOCHS` epochs Tune's PBT clones the best quarter of trials into
the worst quarter (weights, optimiser moments, RNG: the raylab checkpoint) and
perturbs the clone's lr, momentum or weight decay (x0.8 / x1.2, or a fresh
draw), kept inside the study's distribution. A trial reports its checkpoint
to Tune each epoch (PBT can only clone what Tune holds); its own checkpoint
file stays the one it resumes from after a crash or a driver kill.

After a clone a trial's rows go on from the donor's epoch with the new
config: the per-epoch config columns (base_lr, momentum, weight_decay) in
metrics.parquet show each change.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from raylab.errors import ConfigError
from raylab.sweep.searcher import to_tune

MUTABLE = ("lr", "momentum", "weight_decay")  # what PBT may change mid-run: the optimiser's knobs
PERTURB_EPOCHS = 2  # epochs between exploit/explore steps; PBT's paper used a few % of training
FILE = "checkpoint.pt"
OWNER = "owner.txt"


def scheduler(space: dict):
    """Tune's PopulationBasedTraining over the study's searched lr/momentum/weight decay."""
    from ray.tune.schedulers import PopulationBasedTraining  # late: Tune's schedulers import much

    mutable = {k: d for k, d in space.items() if k in MUTABLE}
    if not mutable:
        raise ConfigError("--scheduler pbt perturbs lr, momentum or weight_decay: give one of them a "
                          "distribution, e.g. lr=loguniform(1e-3, 0.3)")

    def clip(config: dict) -> dict:
        # PBT's x1.2 can leave the range (momentum 0.95 -> 1.14, which SGD refuses): clamp to the study's.
        for key, dist in mutable.items():
            low, high = dist.corners()[0], dist.corners()[-1]
            config["sampled"][key] = min(max(config["sampled"][key], low), high)
        return config

    return PopulationBasedTraining(
        time_attr="epoch", perturbation_interval=PERTURB_EPOCHS,
        hyperparam_mutations={"sampled": {k: to_tune(d) for k, d in mutable.items()}},
        custom_explore_fn=clip, quantile_fraction=0.25)


def start_state(own: dict | None, trial_id: str) -> tuple[dict | None, bool]:
    """The state a PBT trial starts from, and whether it was cloned from another trial.

    Tune hands a trial the donor's checkpoint after an exploit; otherwise the
    trial's own checkpoint file is as new as anything Tune holds, or newer.
    """
    from ray import tune

    from raylab.train.checkpoints import load_checkpoint

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return own, False
    with ckpt.as_directory() as d:
        if (Path(d) / OWNER).read_text() == trial_id:
            return own, False
        return load_checkpoint(Path(d) / FILE), True


def report(metrics: dict, state: dict, trial_id: str) -> None:
    """tune.report with the epoch's checkpoint attached, for PBT to clone."""
    from ray import tune

    from raylab.train.checkpoints import save_checkpoint

    with tempfile.TemporaryDirectory() as d:
        save_checkpoint(state, Path(d) / FILE)
        (Path(d) / OWNER).write_text(trial_id)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def trained_with(cfg) -> dict:
    """What each report of a PBT trial carries: the lr, momentum and weight decay it trained
    with (PBT may change the trial's config before the driver reads the report: callback.py)."""
    return {"trained_with": {k: getattr(cfg, k) for k in MUTABLE}}
