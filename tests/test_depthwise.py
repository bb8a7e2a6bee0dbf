"""The depthwise-separable SimpleNN (simplenn_dw) and the exact near-zero weight bins."""
import numpy as np
import torch

from raylab.train.models import MODELS, build_model
from raylab.train.model_summary import model_summary
from raylab.results.contract import NEAR_ZERO
from raylab.train.loop import histogram_rows

from conftest import raylab


def test_depthwise_simplenn_matches_the_hand_counts():
    plain, dw = model_summary(build_model("simplenn")), model_summary(build_model("simplenn_dw"))
    assert (plain.n_params, plain.macs) == (82_030, 716_328)
    assert (dw.n_params, dw.macs) == (80_588, 186_456)           # the models.py docstring's counts
    conv = plain.macs - (69_120 + 10_080 + 840)                   # the fc layers are the same in both
    conv_dw = dw.macs - (69_120 + 10_080 + 840)
    assert round(conv / conv_dw, 1) == 6.0 and round(plain.macs / dw.macs, 1) == 3.8
    model = build_model("simplenn_dw", batchnorm=True, activation="swish")
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert model.conv2[0].groups == 8 and model.conv2[1].kernel_size == (1, 1)


def test_raylab_models_lists_both():
    assert {"simplenn", "simplenn_dw"} <= set(MODELS)
    proc = raylab("models")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "simplenn_dw" in out and "186,456" in out and "716,328" in out


def test_histograms_have_edges_at_plus_minus_near_zero():
    model = torch.nn.Linear(100, 100)
    with torch.no_grad():
        model.weight[:10] = 0.0                                   # 1,000 exact zeros
        model.weight[10:20] = 5e-4                                # 1,000 more below 1e-3
    rows = [r for r in histogram_rows(model, 64) if r["layer"] == "weight"]
    inside = sum(r["count"] for r in rows if r["bin_left"] >= -NEAR_ZERO and r["bin_right"] <= NEAR_ZERO)
    w = model.weight.detach().numpy()
    assert inside == int((np.abs(w) < NEAR_ZERO).sum()) >= 2000
    assert sum(r["count"] for r in rows) == w.size and len(rows) in (65, 66)  # 64 bins, split at +-1e-3
