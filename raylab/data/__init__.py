"""Data sources -> uint8 tensors, decoded once and cached; batches made on the trial's device.

    sources.py   load_dataset: cifar10, folder:PATH (tree or archive), synthetic, and the dispatch
    archive.py   untrusted tar/zip/image-folder reading, bounded
    datasets.py  CIFAR-100, SVHN, (Fashion)MNIST files, arrays built in Python (register_data)
    batches.py   shuffle, crop (pad zero|mean), flip and normalise whole batches on the device

Loaded lazily: `from raylab.data import load_dataset` imports torch only then.
"""
__all__ = ["Dataset", "load_dataset", "register_data"]


def __getattr__(name: str):
    if name in ("Dataset", "load_dataset"):
        from raylab.data import sources
        return getattr(sources, name)
    if name == "register_data":
        from raylab.data.datasets import register_data
        return register_data
    raise AttributeError(name)
