"""Data sources -> uint8 tensors, decoded once and cached; batches made on the trial's device.

    sources.py    load_dataset: a source string -> Dataset, by the module that reads it
    cache.py      the decoded-data cache under <root>/cache/, one decode per node (file lock)
    readers.py    torchvision's files: CIFAR-10 (md5-checked), CIFAR-100, SVHN, (Fashion)MNIST
    archive.py    untrusted image-folder trees and tar/zip archives, read in place, bounded
    arrays.py     arrays built in Python by a job file (register_data)
    synthetic.py  a generated, learnable data set for tests and smoke runs
    stats.py      normalisation statistics: published, or computed from the training split
    batches.py    shuffle, crop (pad zero|mean), flip and normalise whole batches on the device

Loaded lazily: `from raylab.data import load_dataset` imports torch only then.
"""
__all__ = ["Dataset", "load_dataset", "register_data"]


def __getattr__(name: str):
    if name in ("Dataset", "load_dataset"):
        from raylab.data import sources
        return getattr(sources, name)
    if name == "register_data":
        from raylab.data.arrays import register_data
        return register_data
    raise AttributeError(name)
