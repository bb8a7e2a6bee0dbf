"""Training: the one loop every trial runs, the models, and what a trial keeps between epochs.

    loop.py           train(cfg, data, report) -> Outcome: the one training function
    models.py         SimpleNN (+ depthwise), ResNet-CIFAR (options A/B), build_model
    model_summary.py  parameter table and multiply-accumulates per image (`raylab models`)
    schedule.py       the learning rate as a pure function of the epoch
    checkpoints.py    build, write and restore a trial's checkpoint
    faults.py         test hooks in the loop: fault points, the injected fault
    standalone.py     `raylab train`: one trial in this process, the same files a sweep writes

Loaded lazily (torch): `from raylab.train import train` imports it only then.
"""
__all__ = ["Outcome", "train"]


def __getattr__(name: str):
    if name in ("Outcome", "train"):
        from raylab.train import loop
        return getattr(loop, name)
    raise AttributeError(name)
