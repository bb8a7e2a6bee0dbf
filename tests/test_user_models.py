"""A job file's own model (@raylab.model): its options checked like config fields, listed by
`raylab models`, refused in one line when it returns no logits, and trained in a sweep on the
second node of a real `ray.cluster_utils.Cluster` after the job file is gone from disk."""
from pathlib import Path

import pytest

from conftest import assert_one_line_error, job_file, raylab, raylab_in_process, ray_cluster
from raylab.declare.config import ConfigError, TrialConfig
from raylab.declare.registry import USER

TINY = """
    import torch.nn as nn
    import raylab
    from raylab import Study

    @raylab.model("tinynet")
    class TinyNet(nn.Module):
        def __init__(self, num_classes, in_channels, width: int = 8):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, {classes}))

        def forward(self, x):
            return self.body(x)

    STUDY = Study("tiny", base=dict(model="tinynet", model_options=dict(width={width}), data="synthetic:300",
                                    data_root={data!r}, epochs=2, threads=1, batch_size=50))
"""


def write(tmp_path, classes="num_classes", width=6, folder="job") -> Path:
    return job_file(tmp_path / folder, TINY.format(classes=classes, width=width, data=str(tmp_path / "data")),
                    "tiny.py")


def test_options_are_checked_like_config_fields(tmp_path):
    from raylab.declare.study import load_job

    study = load_job(str(write(tmp_path)))
    assert "tinynet" in USER and study.trials()[0].config.model_options == '{"width": 6}'
    with pytest.raises(ConfigError, match="no option 'widht' \\(did you mean 'width'\\?\\)"):
        TrialConfig.from_dict(model="tinynet", model_options={"widht": 4})
    with pytest.raises(ConfigError, match="option 'width' must be int, got 'wide'"):
        TrialConfig.from_dict(model="tinynet", model_options={"width": "wide"})
    with pytest.raises(ConfigError, match="built in and takes no model_options"):
        TrialConfig.from_dict(model="simplenn", model_options={"width": 4})


def test_a_job_files_model_declares_its_gpu_share():
    from raylab.declare.config import SweepOptions
    from raylab.declare.registry import model
    from raylab.sweep.resources import default_resources

    def net(num_classes, in_channels):
        return None

    gpu_box = {"CPU": 16, "GPU": 4}
    model("halfnet", gpu=0.5)(net)
    model("wholenet")(net)
    try:
        assert default_resources(TrialConfig.from_dict(model="halfnet"), SweepOptions(), gpu_box)["GPU"] == 0.5
        assert default_resources(TrialConfig.from_dict(model="wholenet"), SweepOptions(), gpu_box)["GPU"] == 1.0
    finally:
        del USER["halfnet"], USER["wholenet"]
    for bad in (0, 1.5, -1, "half", True):
        with pytest.raises(ConfigError, match="GPU share must be a fraction"):
            model("badnet", gpu=bad)
    assert "badnet" not in USER


def test_raylab_models_lists_a_job_files_model(tmp_path):
    proc = raylab("models", "tinynet", "--job", write(tmp_path))
    assert proc.returncode == 0, proc.stderr
    # conv 3->8 (3x3) + bias, linear 8->10 + bias: 216 + 8 + 80 + 10 params; MACs 32*32*8*27 + 80
    assert "body.0.weight  8x3x3x3" in proc.stdout and "params 314" in proc.stdout
    assert "MACs/image 221,264" in proc.stdout and "width: int = 8" in proc.stdout
    proc = raylab("models", "tinynet")
    assert proc.returncode == 2 and "add --job FILE" in proc.stderr


@pytest.fixture(scope="module")
def worker_only_cluster():
    """A head that runs nothing (0 CPUs) and one worker node: every trial runs on the second node."""
    with ray_cluster({"num_cpus": 0, "object_store_memory": 100 * 2**20},
                     {"num_cpus": 2, "object_store_memory": 100 * 2**20}) as cluster:
        yield cluster


@pytest.mark.ray
def test_model_without_logits_of_the_right_shape_is_one_line_exit_2(worker_only_cluster, tmp_path):
    path = write(tmp_path, classes="7")  # 7 outputs for a 10-class data set
    proc = raylab_in_process("run", path, "--storage", tmp_path / "res")
    assert_one_line_error(proc, "model 'tinynet' returned Tensor of shape (1, 7)", "(batch, 10)")
    assert not (tmp_path / "res" / "tiny" / "study.json").exists()


@pytest.mark.ray
def test_job_file_model_trains_on_a_second_node_without_the_file(worker_only_cluster, tmp_path):
    import shutil

    import ray

    from raylab.results import METRICS, TRIALS, read_table
    from raylab.declare.study import load_job
    from raylab.declare.config import SweepOptions
    from raylab.sweep.driver import run_study

    path = write(tmp_path, width=5, folder="gone")
    study = load_job(str(path))
    shutil.rmtree(path.parent)  # no worker can import the job file by path now
    head = ray.get_runtime_context().get_node_id()
    run_study(study, SweepOptions(storage=str(tmp_path / "res"), verbose=0))
    root = str(tmp_path / "res" / "tiny")
    trials, metrics = read_table(root, TRIALS), read_table(root, METRICS)
    assert list(trials["status"]) == ["completed"] and len(metrics) == 3
    assert trials["n_params"].iloc[0] == 3 * 5 * 9 + 5 + 5 * 10 + 10  # width 5 from model_options
    assert trials["model"].iloc[0] == "tinynet" and trials["model_options"].iloc[0] == '{"width": 5}'
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2 and head in nodes  # the driver sits on the head, which has no CPU for trials
