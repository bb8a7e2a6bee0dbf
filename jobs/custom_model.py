"""Your own network in a job file: @raylab.model registers it for every trial, on any node.
Its own options (here `width`) come from the config's model_options and are checked like any field.
`raylab models --job jobs/custom_model.py widenet` prints its parameter table and MACs."""
import raylab
from raylab import Study, variant


@raylab.model("widenet")
def widenet(num_classes, in_channels, batchnorm=False, width: int = 32):
    """Two 3x3 conv blocks of `width` channels, global average pooling, one linear layer."""
    import torch.nn as nn  # here, not at the top: `raylab list` reads job files without loading torch

    def block(cin, cout):
        norm = nn.BatchNorm2d(cout) if batchnorm else nn.Identity()
        return [nn.Conv2d(cin, cout, 3, padding=1), norm, nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(in_channels, width), *block(width, 2 * width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes))


STUDY = Study(
    "custom_model",
    base=dict(model="widenet", epochs=15, lr=0.05, batchnorm=True, augment=True),
    variants=[variant(f"width={w}", model_options=dict(width=w)) for w in (16, 32, 64)],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
