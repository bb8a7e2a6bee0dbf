"""The sweep layer: Study -> Ray Tune.

    driver.py       run_study / resume_study: Tuner, study.json, lock, Ray connection
    trainable.py    the Tune trial (and its DDP form): train() + checkpoint file + reports
    spec.py         a trial's spec as Tune stores it; a sampled trial's values merged in
    resources.py    a trial's share of a node (the model's GPU share); refusing what no node can hold
    node_wait.py    waiting for an autoscaler to add a node a trial fits
    shared_data.py  data sets decoded once, shared through the object store
    callback.py     reported epochs -> the three Parquet tables; counts restarts
    searcher.py     search spaces as Tune domains, the search algorithm, sampled trials' names
    pbt.py          Population Based Training on the trial's own checkpoint
    user_models.py  a job file's own models, shipped to trials by value and checked first
    logs.py         TensorBoard per trial (step = epoch) and `--log mlflow`

Only the CLI and tests import this layer; nothing below it does. Loaded lazily:
`import raylab.sweep` loads nothing heavy, `raylab.sweep.run_study` loads Ray.
"""
__all__ = ["resume_study", "run_study"]


def __getattr__(name: str):
    if name in __all__:
        from raylab.sweep import driver
        return getattr(driver, name)
    raise AttributeError(name)
