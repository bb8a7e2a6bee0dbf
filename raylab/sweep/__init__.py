"""The sweep layer: Study -> Ray Tune.

    driver.py      run_study / resume_study: Tuner, study.json, lock, Ray connection
    trainable.py   the Tune trial (and its DDP form): train() + checkpoint file + reports
    resources.py   a trial's share of a node; refusing what no node can hold
    shared_data.py data sets decoded once, shared through the object store
    callback.py    reported epochs -> the three Parquet tables; counts restarts
    storage_noise.py  Tune's log lines about a full or read-only folder, kept off stderr

Only the CLI and tests import this package; the core (config .. study) never does.
Importing it imports nothing heavy: `from raylab.sweep.driver import run_study`.
"""
