"""Fractional GPU packing on a simulated two-node cluster, and the launcher config."""
import json
import os

import pytest
import yaml

from conftest import ROOT, ray_cluster
from raylab.train.checkpoints import checkpoint_path
from raylab.declare.config import SweepOptions
from raylab.errors import ClusterError
from raylab.results import TRIALS, read_table
from raylab.declare.study import Study, grid
from raylab.sweep.driver import run_study

pytestmark = pytest.mark.timeout(900)  # a simulated cluster of real Ray processes


@pytest.fixture(scope="module")
def two_gpu_nodes():
    # GPUs here are logical: Ray schedules by them, the trials train on the CPU.
    with ray_cluster({"num_cpus": 2, "num_gpus": 1}, {"num_cpus": 2, "num_gpus": 1}) as cluster:
        yield cluster


@pytest.mark.slow
@pytest.mark.ray
def test_half_gpu_trials_run_four_at_a_time(two_gpu_nodes, tmp_path):
    """How many ran at once, from the trials themselves: each one's training interval ends
    when its last checkpoint was written and lasted its wall_seconds (Tune's time_total_s).
    Those intervals lie inside the time each trial held its half GPU, so overlaps among them
    are real; 2 GPUs / 0.5 per trial allow at most 4."""
    study = Study("pack", grid(lr=[0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005]),
                  dict(data="synthetic:300", data_root=str(tmp_path / "data"), epochs=3, threads=1,
                       batch_size=50, device="cpu"))
    run_study(study, SweepOptions(storage=str(tmp_path), gpus_per_trial=0.5, cpus_per_trial=0.5, verbose=0))
    root = str(tmp_path / "pack")
    trials = read_table(root, TRIALS)
    assert (trials["status"] == "completed").all() and len(trials) == 8
    options = json.loads((tmp_path / "pack" / "study.json").read_text())["options"]
    assert options["gpus_per_trial"] == 0.5  # what each trial was given
    events = []
    for tid, wall in zip(trials["trial_id"], trials["wall_seconds"]):
        end = os.stat(checkpoint_path(root, tid)).st_mtime
        events += [(end - float(wall), 1), (end, -1)]
    running, most = 0, 0
    for _, step in sorted(events):  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    assert most == 4, sorted(events)  # four 0.5-GPU trials at once, and never more


@pytest.mark.ray
def test_trial_larger_than_any_node_is_refused(two_gpu_nodes, tmp_path):
    study = Study("big", grid(lr=[0.1]), dict(data="synthetic:300", data_root=str(tmp_path / "data")))
    with pytest.raises(ClusterError, match="needs 2 GPU but the largest node has 1"):
        run_study(study, SweepOptions(storage=str(tmp_path), gpus_per_trial=2, verbose=0))
    assert not (tmp_path / "big").exists()  # refused before anything was written


def test_cluster_yaml_passes_rays_launcher_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    assert config["head_node_type"] in config["available_node_types"]
    assert any("pip install" in c and "raylab" in c for c in config["setup_commands"])


def test_default_resources_per_model_and_machine():
    from raylab.declare.config import TrialConfig
    from raylab.sweep.resources import default_resources

    gpu_box, cpu_box = {"CPU": 16, "GPU": 4}, {"CPU": 16}
    small, big = TrialConfig.from_dict(model="simplenn"), TrialConfig.from_dict(model="resnet20")
    assert default_resources(small, SweepOptions(), gpu_box) == {"CPU": 1.0, "GPU": 0.25}
    assert default_resources(big, SweepOptions(), gpu_box) == {"CPU": 2.0, "GPU": 1.0}
    assert default_resources(small, SweepOptions(workers=2), gpu_box)["GPU"] == 1.0
    assert default_resources(big, SweepOptions(), cpu_box) == {"CPU": 1.0, "GPU": 0.0}
    assert default_resources(small, SweepOptions(gpus_per_trial=0.125), gpu_box)["GPU"] == 0.125
    # The share is the model table's (raylab/declare/registry.py), not a test of the name "simplenn".
    depthwise = TrialConfig.from_dict(model="simplenn_dw")
    assert default_resources(depthwise, SweepOptions(), gpu_box) == {"CPU": 1.0, "GPU": 0.25}
