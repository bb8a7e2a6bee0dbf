"""The training function on real torch and small synthetic data."""
import math

import pytest
import torch

from raylab.declare.config import ConfigError, TrialConfig
from raylab.data.sources import load_dataset
from raylab.train.schedule import lr_at
from raylab.train.faults import InjectedFault
from raylab.train.loop import l1_penalty, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_dataset("synthetic:2000", tmp_path_factory.mktemp("data"))


def cfg(**kw):
    base = dict(data="synthetic:2000", epochs=2, lr=0.02, batch_size=64, threads=1)
    return TrialConfig.from_dict({**base, **kw})


def test_epoch_zero_is_the_untrained_model(data):
    out = train(cfg(epochs=1), data)
    first = out.history[0]
    assert first["epoch"] == 0
    assert abs(first["train_loss"] - math.log(10)) < 0.1
    assert abs(first["val_loss"] - math.log(10)) < 0.1
    assert [r["epoch"] for r in out.history] == [0, 1]


def test_learning_beats_chance(data):
    out = train(cfg(epochs=2), data)
    assert out.status == "completed"
    assert out.best_val_acc > 0.4  # chance is 0.1
    assert out.history[-1]["train_loss"] < out.history[0]["train_loss"]
    assert out.n_params == sum(p.numel() for p in __import__("raylab.train.models", fromlist=["x"]).build_model("simplenn").parameters())


def test_l1_gradient_reaches_the_weights():
    w = torch.nn.Parameter(torch.tensor([-2.0, 0.5, 3.0]))
    l1_penalty(0.1, [w]).backward()
    assert torch.allclose(w.grad, 0.1 * torch.sign(w.detach()))


def test_l1_shrinks_weights_in_training(data):
    plain = train(cfg(epochs=2, weight_decay=0.0), data)
    sparse = train(cfg(epochs=2, weight_decay=0.0, l1=2e-3), data)

    def near_zero(outcome):
        rows = [r for r in outcome.weights if r["layer"] == "fc1.weight"]
        small = sum(r["count"] for r in rows if abs(r["bin_left"] + r["bin_right"]) / 2 < 0.01)
        return small / sum(r["count"] for r in rows)

    assert near_zero(sparse) > near_zero(plain) + 0.05


def test_regularize_weights_only_leaves_biases_alone(data):
    from raylab.train.models import build_model
    from raylab.train.loop import _optimizer
    model = build_model("simplenn")
    groups = _optimizer(cfg(regularize="weights", weight_decay=0.01), model).param_groups
    decayed = [p for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    assert decayed and all(p.ndim > 1 for p in decayed)


@pytest.fixture(scope="module")
def few(tmp_path_factory):
    return load_dataset("synthetic:300", tmp_path_factory.mktemp("few"))


@pytest.mark.parametrize("kw", [
    pytest.param(dict(augment=True), id="simplenn"),
    # BatchNorm's running statistics and an lr that changes after the resume point
    pytest.param(dict(augment=True, batchnorm=True, schedule="step", step_size=2, gamma=0.5), id="simplenn-bn-step"),
    # a ResNet (BN throughout) with warm-up then a multistep decay, on fewer images
    pytest.param(dict(model="resnet20", data="synthetic:300", batch_size=50, lr=0.05, schedule="multistep",
                      milestones=(2,), warmup_epochs=1), id="resnet20-multistep", marks=pytest.mark.slow),
])
def test_resume_from_checkpoint_matches_uninterrupted_run(data, few, kw):
    data = few if kw.get("data") == "synthetic:300" else data
    full = train(cfg(epochs=3, **kw), data)
    saved = {}

    def keep(row, checkpoint):
        if row["epoch"] == 1:
            saved["state"] = checkpoint()

    train(cfg(epochs=1, **kw), data, keep)
    # Through torch.save/load(weights_only) like a real restart.
    buf = __import__("io").BytesIO()
    torch.save(saved["state"], buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    resumed = train(cfg(epochs=3, **kw), data, resume=state)
    assert len({r["lr"] for r in full.history[1:]}) > 1 or not kw.get("schedule")  # the schedule acted
    assert [r["epoch"] for r in resumed.history] == [0, 1, 2, 3]
    for a, b in zip(full.history[2:], resumed.history[2:]):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key


def test_divergence_is_a_status_not_a_crash(data):
    out = train(cfg(epochs=5, lr=50.0), data)
    assert out.status == "diverged"
    assert len(out.history) < 6
    assert not math.isfinite(out.history[-1]["train_loss"])
    assert math.isfinite(out.best_val_acc)


def test_fault_injection_raises_once(data):
    with pytest.raises(InjectedFault):
        train(cfg(epochs=2, fail_at_epoch=1), data)


def test_batch_larger_than_data_is_a_config_error(data):
    with pytest.raises(ConfigError, match="batch_size"):
        train(cfg(batch_size=5000), data)


@pytest.mark.parametrize("schedule, expected", [
    (dict(schedule="none"), [0.1] * 30),
    (dict(schedule="step", step_size=10, gamma=0.9), [0.1] * 10 + [0.09] * 10 + [0.081] * 10),
    (dict(schedule="multistep", milestones=[5, 20], gamma=0.1), [0.1] * 5 + [0.01] * 15 + [0.001] * 10),
])
def test_schedules(schedule, expected):
    c = TrialConfig.from_dict(lr=0.1, epochs=30, **schedule)
    assert [lr_at(c, e) for e in range(1, 31)] == pytest.approx(expected)


def test_cosine_and_warmup():
    c = TrialConfig.from_dict(lr=0.1, epochs=10, schedule="cosine", warmup_epochs=2)
    lrs = [lr_at(c, e) for e in range(1, 11)]
    assert lrs[0] == pytest.approx(0.01) and lrs[1] == pytest.approx(0.055)
    assert lrs[2] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:]))


def test_report_step_decay_matches_torch_steplr():
    c = TrialConfig.from_dict(lr=0.01, epochs=30, schedule="step", step_size=10, gamma=0.9)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.9)
    for epoch in range(1, 31):
        assert lr_at(c, epoch) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()


@pytest.mark.slow
def test_simplenn_learns_real_cifar10(shared_cifar, real_cifar):
    """Two epochs of the course report's SimpleNN on the real images: well past 0.45."""
    source, real = f"folder:{shared_cifar}", real_cifar
    out = train(TrialConfig.from_dict(data=source, epochs=2, threads=2), real)
    assert abs(out.history[0]["val_loss"] - math.log(10)) < 0.1
    assert out.best_val_acc >= 0.45
    assert [r["train_images"] for r in out.history] == [0, 50000, 50000]
