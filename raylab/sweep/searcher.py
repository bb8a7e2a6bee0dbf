"""The Tune side of a search space (raylab/declare/space.py holds the plain-data side):
distributions as Tune domains, the param_space, the search algorithm, and a
sampled trial's name.
"""
from __future__ import annotations

from ray import tune

from raylab.declare.config import SEARCHES
from raylab.declare.space import Dist
from raylab.errors import ConfigError
from raylab.declare.study import sampled_name


def to_tune(dist: Dist):
    if dist.kind == "choice":
        return tune.choice(list(dist.args))
    return getattr(tune, dist.kind)(*dist.args)


def param_space(specs: list[dict], space: dict[str, Dist]) -> dict:
    """Grid specs under `spec`; a searched study's distributions under `sampled`, apart,
    so a search algorithm (or PBT) sees only what it may change."""
    if not space:
        return {"spec": tune.grid_search(specs)}
    grid = specs[0] if len(specs) == 1 else tune.grid_search(specs)
    return {"spec": grid, "sampled": {k: to_tune(d) for k, d in space.items()}}


def trial_name(trial) -> str:
    """Tune's trial_name_creator for a sampled trial: variant, seed and Tune's sample number.

    The number is the head of Tune's experiment tag ('3_lr=...'), which Tune
    stores with the trial, so a resumed sweep names every trial as before.
    """
    spec = trial.config["spec"]
    number = str(trial.experiment_tag).split("_", 1)[0].split("@", 1)[0]
    return f"{sampled_name(spec['meta']['variant'], trial.config['sampled'])}_s{spec['trial']['seed']}_n{number}"


def search_alg(search: str, space: dict[str, Dist], n_specs: int, seed: int = 0, max_concurrent: int = 0):
    """Tune's variant generator, seeded, for random search (None for a plain grid); Optuna's TPE otherwise."""
    if search not in SEARCHES:
        raise ConfigError(f"--search {search} is not one of: {', '.join(SEARCHES)}")
    if search == "random":
        if not space:
            return None
        from ray.tune.search.basic_variant import BasicVariantGenerator
        # Seeded: a study draws the same samples on every run and machine, so a rerun compares.
        return BasicVariantGenerator(max_concurrent=max_concurrent, random_state=seed)
    if not space:
        raise ConfigError("--search optuna needs a search space: give a config field a distribution, "
                          "e.g. lr=loguniform(1e-4, 0.1)")
    if n_specs > 1:
        raise ConfigError(f"--search optuna samples one variant and one seed; this study has {n_specs} "
                          "variant-seed pairs: keep one with --only and --seeds 1, or use --search random")
    try:
        import optuna
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        raise ConfigError("--search optuna needs optuna: pip install 'raylab[search]'") from None
    # Seeded TPE: the same study proposes the same first points on every machine.
    return OptunaSearch(metric="val_acc", mode="max", sampler=optuna.samplers.TPESampler(seed=seed))
