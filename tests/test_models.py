"""Models: exact shapes, the docstring's parameter table, MAC counts, options."""
import math
import pickle

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from raylab.train.models import (ACTIVATIONS, MODELS, PadShortcut, ResNet, build_model,
                           docstring_table, make_activation)
from raylab.train.model_summary import format_summary
from raylab.train.model_summary import model_summary as summarize

RESNETS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}

SIMPLENN_SHAPES = {
    "conv1.weight": (8, 3, 5, 5), "conv1.bias": (8,),
    "conv2.weight": (16, 8, 3, 3), "conv2.bias": (16,),
    "fc1.weight": (120, 576), "fc1.bias": (120,),
    "fc2.weight": (84, 120), "fc2.bias": (84,),
    "fc3.weight": (10, 84), "fc3.bias": (10,),
}


def resnet_macs(n: int, shortcut: str = "A", num_classes: int = 10) -> int:
    """Hand count for a 32x32 input (derivation in the models docstring)."""
    full = 9 * 16 * 16 * 32 * 32  # one full-width 3x3 conv of any stage
    macs = 9 * 3 * 16 * 32 * 32 + full * (6 * n - 1) + 64 * num_classes
    if shortcut == "B":
        macs += 2 * 16 * 32 * 16 * 16  # two 1x1 stride-2 projections
    return macs


# ---------------------------------------------------------------- SimpleNN

def test_simplenn_exact_shapes():
    shapes = {n: tuple(p.shape) for n, p in build_model("simplenn").named_parameters()}
    assert shapes == SIMPLENN_SHAPES


def test_simplenn_batchnorm_adds_bn1_bn2_only():
    model = build_model("simplenn", batchnorm=True)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert isinstance(model.bn1, nn.BatchNorm2d) and model.bn1.num_features == 8
    assert isinstance(model.bn2, nn.BatchNorm2d) and model.bn2.num_features == 16
    assert {n: s for n, s in shapes.items() if not n.startswith("bn")} == SIMPLENN_SHAPES
    assert sum(p.numel() for p in model.parameters()) == 82_030 + 2 * (8 + 16)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_simplenn_output_shape(batchnorm):
    model = build_model("simplenn", batchnorm=batchnorm)
    assert model(torch.randn(4, 3, 32, 32)).shape == (4, 10)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_every_activation_runs(activation):
    model = build_model("simplenn", activation=activation)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_swish_is_x_sigmoid_x():
    x = torch.linspace(-8, 8, 1001)
    torch.testing.assert_close(make_activation("swish")(x), x * torch.sigmoid(x))


def test_simplenn_initial_loss_is_ln10():
    # The product reports "epoch 0 loss ~ 2.30": near-uniform initial logits.
    torch.manual_seed(0)
    model = build_model("simplenn")
    x, y = torch.randn(512, 3, 32, 32), torch.randint(0, 10, (512,))
    with torch.no_grad():
        loss = F.cross_entropy(model(x), y).item()
    assert abs(loss - math.log(10)) < 0.1


# ---------------------------------------------------------------- ResNets

def test_docstring_table_lists_every_model():
    assert set(docstring_table()) == set(MODELS)


@pytest.mark.parametrize("name", list(RESNETS))
def test_resnet_param_counts_match_docstring(name):
    params_a, params_b, _ = docstring_table()[name]
    n_a = sum(p.numel() for p in build_model(name, shortcut="A").parameters())
    n_b = sum(p.numel() for p in build_model(name, shortcut="B").parameters())
    assert n_a == params_a
    assert n_b == params_b > n_a


def test_resnet_depth_is_6n_plus_2():
    for name, n in RESNETS.items():
        model = build_model(name)
        # weight layers on the main path: stem conv, 2 per block, fc (shortcut convs excluded)
        layers = 2 + sum(2 for stage in (model.layer1, model.layer2, model.layer3) for _ in stage)
        assert len(model.layer1) == len(model.layer2) == len(model.layer3) == n
        assert layers == 6 * n + 2 == int(name[len("resnet"):])


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_resnet_output_shape(shortcut):
    model = build_model("resnet20", shortcut=shortcut, num_classes=7, activation="swish")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_resnet_ignores_batchnorm_flag():
    with_flag = build_model("resnet20", batchnorm=True)
    without = build_model("resnet20", batchnorm=False)
    assert [tuple(p.shape) for p in with_flag.parameters()] == [tuple(p.shape) for p in without.parameters()]


def test_option_a_model_pickles():
    model = build_model("resnet20", shortcut="A")
    clone = pickle.loads(pickle.dumps(model))
    x = torch.randn(2, 3, 32, 32)
    model.eval(), clone.eval()
    torch.testing.assert_close(clone(x), model(x))


def test_option_a_subsamples_and_zero_pads():
    x = torch.randn(2, 16, 32, 32)
    out = PadShortcut(extra=16, stride=2)(x)
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 16:]) == 0
    # and that is what the stage transitions use
    block = build_model("resnet20").layer2[0]
    assert isinstance(block.shortcut, PadShortcut)


# ---------------------------------------------------------------- summarize

@pytest.mark.parametrize("name", list(MODELS))
def test_summary_n_params_and_shapes(name):
    model = build_model(name)
    s = summarize(model, name=name)
    assert s.n_params == sum(p.numel() for p in model.parameters())
    assert s.params == [(n, tuple(p.shape)) for n, p in model.named_parameters()]


def test_simplenn_macs_hand_count():
    hand = (8 * 3 * 5 * 5 * 28 * 28 + 16 * 8 * 3 * 3 * 12 * 12
            + 576 * 120 + 120 * 84 + 84 * 10)
    assert hand == 716_328
    assert summarize(build_model("simplenn")).macs == hand
    assert summarize(build_model("simplenn", batchnorm=True)).macs == hand  # BN counts 0


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_resnet20_macs_hand_formula(shortcut):
    macs = summarize(build_model("resnet20", shortcut=shortcut)).macs
    assert macs == pytest.approx(resnet_macs(3, shortcut), rel=0.02)
    assert macs == pytest.approx(40.6e6, rel=0.02)  # the docstring's rounded figure


def test_docstring_macs_match_summaries():
    for name, (_, _, macs) in docstring_table().items():
        assert summarize(build_model(name)).macs == pytest.approx(macs, rel=0.01)


def test_summarize_restores_modes_and_leaves_bn_stats():
    model = build_model("simplenn", batchnorm=True)
    model.train()
    model.bn1.eval()  # a mixed state must come back as it was
    stats = model.bn2.running_mean.clone()
    summarize(model)
    assert model.training and not model.bn1.training and model.bn2.training
    assert torch.equal(model.bn2.running_mean, stats)


def test_format_summary_has_rows_and_totals():
    text = format_summary(summarize(build_model("resnet20"), name="resnet20"))
    assert "conv1.weight" in text and "16x3x3x3" in text
    assert "0.27M" in text and "40.6M" in text


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs, choices", [
    ({"name": "resnet18"}, ["simplenn", "resnet20", "resnet110"]),
    ({"name": "simplenn", "activation": "softplus"}, ["relu", "swish", "tanh"]),
    ({"name": "resnet20", "shortcut": "C"}, ["A", "B"]),
    ({"name": "simplenn", "shortcut": "C"}, ["A", "B"]),
])
def test_unknown_options_name_the_choices(kwargs, choices):
    with pytest.raises(ValueError) as err:
        build_model(**kwargs)
    assert all(c in str(err.value) for c in choices)


def test_make_activation_unknown():
    with pytest.raises(ValueError, match="leaky_relu"):
        make_activation("Relu")


def test_resnet_constructor_rejects_bad_shortcut():
    with pytest.raises(ValueError, match="A, B"):
        ResNet(3, shortcut="a")
