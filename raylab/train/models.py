"""Models for the CIFAR-10 studies: SimpleNN (the course report's LeNet-style CNN)
and the CIFAR ResNets of He et al. 2016, "Deep Residual Learning for Image
Recognition", sec. 4.2 (arXiv:1512.03385), in the style of akamaster's
pytorch_resnet_cifar10 `resnet.py`.

Parameter counts (exact ones recounted by `python -m raylab.train.models` and by
tests/test_models.py; "paper" is He et al. Table 6) and multiply-accumulates
per 3x32x32 image (counted by `raylab.train.model_summary.model_summary`, 10 classes):

    name       layers  params (A)  params (B)   paper   MACs (A)
    simplenn        5      82,030           -       -     0.72M
    simplenn_dw     5      80,588           -       -    0.186M
    resnet20       20     269,722     272,474   0.27M     40.6M
    resnet32       32     464,154     466,906   0.46M     68.9M
    resnet44       44     658,586     661,338   0.66M     97.2M
    resnet56       56     853,018     855,770   0.85M    125.5M
    resnet110     110   1,727,962   1,730,714    1.7M    252.9M

Option B's 1x1 projections add 16*32 + 32*64 weights and 2*(32+64) BN
scale/shift = 2,752 parameters; SimpleNN's batchnorm adds 2*(8+16) = 48.
SimpleNN params by hand: conv1 8*3*25+8 = 608, conv2 16*8*9+16 = 1,168,
fc1 576*120+120 = 69,240, fc2 120*84+84 = 10,164, fc3 84*10+10 = 850.

simplenn_dw replaces each conv by a depthwise-separable pair (MobileNet, Howard
et al. 2017): a kxk conv per input channel (groups = in) then a 1x1 conv, both
with bias: conv1 3*25+3 + 3*8+8 = 110, conv2 8*9+8 + 8*16+16 = 224 params.
MACs: conv1 (3*25 + 3*8) * 28*28 = 77,616, conv2 (8*9 + 8*16) * 12*12 = 28,800;
the convs cost 106,416 against 636,288 (6.0x fewer; the k*k = 9x and 25x limits
need many output channels: a separable kxk conv costs 1/C_out + 1/k^2 of a full
one), the whole model 186,456 against 716,328 (3.8x: the fc layers are unchanged).

SimpleNN MACs by hand (no padding, stride 1, 2x2 max pools):
    conv1  8*3*5*5   * 28*28 = 470,400
    conv2 16*8*3*3   * 12*12 = 165,888
    fc1   576*120            =  69,120
    fc2   120*84             =  10,080
    fc3    84*10             =     840
    total                    = 716,328
ResNet-(6n+2) MACs by hand: a 3x3 conv with C in and C out channels on an
SxS map costs 9*C*C*S*S; every stage's convs cost 9*16*16*32*32 = 2,359,296
at full width, the stride-2 first conv of stages 2 and 3 half that. So
    stem 9*3*16*32*32 = 442,368, plus 2,359,296 * (6n - 1), plus fc 64*10;
for n = 3 that is 40,551,040. Option B adds two 1x1 projections (131,072
MACs each); option A's shortcut is free. BatchNorm, activations, pooling and
the residual additions count as 0: one operation per activation, against
9*C MACs for each conv output.

Options: `activation` (relu, swish, leaky_relu, gelu, tanh) applies to every
model; `batchnorm` adds BatchNorm2d after each SimpleNN conv and is ignored by
the ResNets, whose BatchNorm is part of the architecture; `shortcut` (A or B)
only matters to ResNets.
"""
from __future__ import annotations

import re
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from raylab.declare.config import ACTIVATIONS, SHORTCUTS
from raylab.declare.registry import BUILTIN, USER
from raylab.train.model_summary import model_summary


def check_shortcut(shortcut: str) -> None:
    """The one check of `shortcut` for every built-in model (each factory calls it), so a typo
    fails before anything is built, even for SimpleNN, which has no residual to use it on."""
    if shortcut not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {shortcut!r}; choose one of {', '.join(SHORTCUTS)}")


# ----------------------------------------------------------------------------
# Activations

class Swish(nn.Module):
    """x * sigmoid(x) (Ramachandran et al. 2017); same function as nn.SiLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)  # fused kernel, equal to x * torch.sigmoid(x)


# Factories, not instances: every layer gets its own module so that the
# printed model shows where each activation sits.
_ACTIVATION_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "swish": Swish,
    "leaky_relu": nn.LeakyReLU,  # negative slope 0.01, torch's default
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}
# One factory per name config.py allows (what a config may say); a name without one fails at import.
_FACTORY = {name: _ACTIVATION_FACTORIES[name] for name in ACTIVATIONS}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module; ValueError naming the choices for an unknown name."""
    if name not in _FACTORY:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return _FACTORY[name]()


# ----------------------------------------------------------------------------
# SimpleNN: the course report's network

class SimpleNN(nn.Module):
    """conv5x5(8) - pool - conv3x3(16) - pool - fc120 - fc84 - fc10, no padding.

    32x32 -> conv1 28x28 -> pool 14x14 -> conv2 12x12 -> pool 6x6, so fc1
    sees 16*6*6 = 576 features. With `batchnorm`, bn1/bn2 sit between each
    conv and its activation (Ioffe & Szegedy 2015 normalise pre-activations).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 batchnorm: bool = False, activation: str = "relu", depthwise: bool = False):
        super().__init__()
        conv = _separable if depthwise else nn.Conv2d
        self.conv1 = conv(in_channels, 8, 5)
        self.bn1 = nn.BatchNorm2d(8) if batchnorm else nn.Identity()
        self.act1 = make_activation(activation)
        self.conv2 = conv(8, 16, 3)
        self.bn2 = nn.BatchNorm2d(16) if batchnorm else nn.Identity()
        self.act2 = make_activation(activation)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 6 * 6, 120)
        self.act3 = make_activation(activation)
        self.fc2 = nn.Linear(120, 84)
        self.act4 = make_activation(activation)
        self.fc3 = nn.Linear(84, num_classes)
        # torch's default init (kaiming-uniform, a=sqrt(5)) is kept on purpose:
        # near-uniform initial logits, so epoch 0 loss ~ ln(10) = 2.30 (measured
        # 2.30-2.33 on 512 random-normal images, 10 seeds, every activation,
        # with and without BN; CPU, torch 2.14.1).

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act1(self.bn1(self.conv1(x))))
        x = self.pool(self.act2(self.bn2(self.conv2(x))))
        x = torch.flatten(x, 1)
        x = self.act4(self.fc2(self.act3(self.fc1(x))))
        return self.fc3(x)


def _separable(in_channels: int, out_channels: int, k: int) -> nn.Sequential:
    """Depthwise kxk (one filter per input channel) then pointwise 1x1: same output shape as Conv2d(in, out, k)."""
    return nn.Sequential(nn.Conv2d(in_channels, in_channels, k, groups=in_channels),
                         nn.Conv2d(in_channels, out_channels, 1))


# ----------------------------------------------------------------------------
# CIFAR ResNets (He et al. 2016, sec. 4.2)

class PadShortcut(nn.Module):
    """Option A: identity shortcut that subsamples by `stride` and zero-pads
    `extra` channels at the end. Parameter-free, so ResNet-20 has 0.27M
    parameters as in the paper. A named module rather than akamaster's lambda,
    so that models pickle (Ray ships them between processes)."""

    def __init__(self, extra: int, stride: int):
        super().__init__()
        self.extra, self.stride = extra, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))  # (W, H, C) pads: zeros after the channels

    def extra_repr(self) -> str:
        return f"extra={self.extra}, stride={self.stride}"


class BasicBlock(nn.Module):
    """3x3 conv-BN-act, 3x3 conv-BN, add the shortcut, act (the paper's Fig. 2)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 activation: str = "relu", shortcut: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = make_activation(activation)
        if stride == 1 and in_planes == planes:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(planes - in_planes, stride)
        else:  # B (ResNet checked it): a projection only where the shape changes, as in the paper
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: a 3x3 conv to 16 channels, three stages
    of n BasicBlocks at 16/32/64 channels (32x32, 16x16, 8x8 maps), global
    average pooling and one linear layer.

    `batchnorm` is accepted so that every registry entry takes the same
    keywords, and ignored: BatchNorm is part of the architecture here.

    With the paper's init, an eval-mode pass before any training step (BN
    running stats still 0/1) gives large logits: cross-entropy 14 for
    ResNet-20 and ~6e9 for ResNet-110 on random-normal images (seed 0, CPU);
    in train mode 2.9 and 7.3. Zeroing each block's bn2 weight (Goyal et al.
    2017, torchvision's zero_init_residual) would bring both to ~2.3 but
    departs from the paper and akamaster, so it is not done here.
    """

    def __init__(self, n: int, num_classes: int = 10, in_channels: int = 3,
                 activation: str = "relu", shortcut: str = "A", batchnorm: bool = True):
        super().__init__()
        check_shortcut(shortcut)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.act1 = make_activation(activation)
        self.layer1 = self._make_stage(16, 16, n, 1, activation, shortcut)
        self.layer2 = self._make_stage(16, 32, n, 2, activation, shortcut)
        self.layer3 = self._make_stage(32, 64, n, 2, activation, shortcut)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        self.apply(_kaiming_init)

    @staticmethod
    def _make_stage(in_planes: int, planes: int, n: int, stride: int,
                    activation: str, shortcut: str) -> nn.Sequential:
        """n blocks; only the first changes width and (by `stride`) resolution."""
        blocks = [BasicBlock(in_planes, planes, stride, activation, shortcut)]
        blocks += [BasicBlock(planes, planes, 1, activation, shortcut) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _kaiming_init(m: nn.Module) -> None:
    # He et al. 2015 init for conv and linear weights, as akamaster (and the
    # paper, sec. 3.4); biases and BN keep torch's defaults (0, and 1/0).
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight)


def resnet20(**kw) -> ResNet: return ResNet(3, **kw)
def resnet32(**kw) -> ResNet: return ResNet(5, **kw)
def resnet44(**kw) -> ResNet: return ResNet(7, **kw)
def resnet56(**kw) -> ResNet: return ResNet(9, **kw)
def resnet110(**kw) -> ResNet: return ResNet(18, **kw)


def simplenn(*, shortcut: str = "A", **kw) -> SimpleNN:
    """SimpleNN with the registry's keywords; `shortcut` is meaningless without residuals."""
    check_shortcut(shortcut)
    return SimpleNN(**kw)


def simplenn_dw(*, shortcut: str = "A", **kw) -> SimpleNN:
    """SimpleNN with depthwise-separable convolutions (the course report's MACs question)."""
    check_shortcut(shortcut)
    return SimpleNN(depthwise=True, **kw)


# ----------------------------------------------------------------------------
# Registry: built-in names (raylab.declare.registry.BUILTIN) and a job file's own (registry.USER)

MODELS: dict[str, Callable[..., nn.Module]] = {name: globals()[name] for name in BUILTIN}


def build_model(name: str, *, num_classes: int = 10, in_channels: int = 3, batchnorm: bool = False,
                activation: str = "relu", shortcut: str = "A", options: dict | None = None) -> nn.Module:
    """The model registered as `name` (a job file's own gets `options`: raylab.declare.registry);
    ValueError naming the choices for any unknown option (the factories and make_activation check them)."""
    if name in USER:
        return USER[name].build(options or {}, num_classes=num_classes, in_channels=in_channels,
                                batchnorm=batchnorm, activation=activation, shortcut=shortcut)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](num_classes=num_classes, in_channels=in_channels,
                        batchnorm=batchnorm, activation=activation, shortcut=shortcut)


def docstring_table() -> dict[str, tuple[int, int | None, int]]:
    """{name: (params with option A, params with option B or None, MACs with
    option A rounded as printed)} as the module docstring's table claims;
    tests and __main__ check the models against it, so the two cannot drift."""
    row = re.compile(r"^ +(\w+) +\d+ +([\d,]+) +([\d,]+|-) +\S+ +([\d.]+)M$", re.M)
    table = {}
    for m in row.finditer(__doc__):
        params_b = None if m[3] == "-" else int(m[3].replace(",", ""))
        table[m[1]] = (int(m[2].replace(",", "")), params_b, round(float(m[4]) * 1e6))
    return table


if __name__ == "__main__":
    # Recount against the docstring table, as akamaster's resnet.py does.
    for name, (params_a, params_b, macs) in docstring_table().items():
        a = model_summary(build_model(name, shortcut="A"), name=name)
        b = model_summary(build_model(name, shortcut="B"), name=name)
        ok = (a.n_params == params_a and params_b in (None, b.n_params)
              and abs(a.macs - macs) <= 0.01 * macs)
        print(f"{name:<10} params A {a.n_params:>9,}  B {b.n_params:>9,}  "
              f"MACs A {a.macs / 1e6:7.2f}M  {'ok' if ok else 'MISMATCH with the docstring'}")
