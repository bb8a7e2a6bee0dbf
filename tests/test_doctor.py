"""`raylab doctor` (raylab/sweep/doctor/) and the check `raylab run` makes before a cluster sweep.

Fast: the checks as pure functions of node facts, the counted CPU step. Ray: the one-node
form on a local Ray (a healthy node, a job whose batch does not fit its memory, storage the
driver cannot write), and a two-node ray.cluster_utils.Cluster whose second node really
imports another raylab tree (its raylet's PYTHONPATH names an edited copy): doctor names that
node, and `raylab run` is refused before anything is written. The launcher cluster
(tests/test_launcher.py) runs the same faults on a worker reached over ssh.
"""
import re
import shutil

import pytest

from conftest import ROOT, assert_one_line_error, child_env, job_file, ray_cluster, raylab
from raylab.sweep.doctor import checks
from raylab.sweep.doctor.step_memory import cpu_step, step_config

ENV = {"raylab": "0.1.0", "code_hash": "aaaaaaaaaaaa", "python": "3.11.7",
       "packages": {"torch": "2.14.1+cu124", "torchvision": "0.29.1", "ray": "2.60.0", "pyarrow": "26.0.1",
                    "numpy": "2.4.6"}}


# ------------------------------------------------------------------ checks
def test_a_node_with_other_code_or_packages_is_named_with_the_fix():
    same = {**ENV, "python": "3.11.2", "packages": {**ENV["packages"], "torch": "2.14.1+cpu"}}
    assert checks.version_problems("10.0.0.7", same, ENV) == []  # a patch release, a CPU build of one torch
    other = {**ENV, "code_hash": "bbbbbbbbbbbb", "python": "3.10.12",
             "packages": {**ENV["packages"], "numpy": "1.26.4"}}
    lines = [p.line() for p in checks.version_problems("10.0.0.7", other, ENV)]
    assert lines[0] == ("node 10.0.0.7 runs raylab 0.1.0 (code bbbbbbbbbbbb) but the driver runs 0.1.0 "
                        f"(code aaaaaaaaaaaa): {checks.CODE_FIX}")
    assert "runs Python 3.10.12 but the driver runs 3.11.7" in lines[1]
    assert "has numpy 1.26.4 but the driver has 2.4.6" in lines[2] and len(lines) == 3


def test_storage_problems_say_what_failed():
    assert checks.storage_problems("n", "s3://b/r", {"sees_driver": True, "error": None}) == []
    [denied] = checks.storage_problems("n", "s3://b/r", {"sees_driver": True, "error": "Access Denied"})
    assert "cannot write, read back and delete an object under s3://b/r (Access Denied)" in denied.line()
    [apart] = checks.storage_problems("n", "/data/results", {"sees_driver": False, "error": None})
    assert "does not see what the driver writes under /data/results" in apart.line()


def test_memory_checks_compare_a_step_with_a_share():
    assert checks.trials_at_once({"CPU": 8, "GPU": 1}, {"CPU": 1, "GPU": 0.25}) == 4
    assert checks.trials_at_once({"CPU": 2}, {"CPU": 1, "GPU": 0.25}) == 0  # no GPU: holds none
    gib = 2**30
    assert checks.cpu_memory_problem("n", "m", need=3 * gib, available=16 * gib, at_once=4) is None
    short = checks.cpu_memory_problem("n", "m", need=5 * gib, available=16 * gib, at_once=4)
    assert "4 trial(s) at once (4.0 GiB each), but one step of m needs about 5.0 GiB" in short.line()
    step = {"peak": 7 * gib, "total": 24 * gib, "free": 20 * gib, "oom": False, "name": "NVIDIA A10G"}
    assert checks.gpu_memory_problem("n", "m", 0.5, step) is None
    tight = checks.gpu_memory_problem("n", "m", 0.25, step)
    assert "0.25 share of its 24.0 GiB NVIDIA A10G (6.0 GiB)" in tight.line() and "to 0.5" in tight.line()
    too_big = checks.gpu_memory_problem("n", "m", 1, {**step, "peak": 30 * gib})
    assert "--workers" in too_big.fix
    assert "ran out of GPU memory" in checks.gpu_memory_problem("n", "m", 1, {**step, "oom": True}).line()


def test_the_counted_cpu_step_grows_with_the_batch_and_the_model():
    from raylab.train.models import build_model

    small, double = (cpu_step(step_config({"model": "simplenn", "batch_size": b}), (3, 32, 32), 10)
                     for b in (512, 1024))
    params = sum(p.numel() for p in build_model("simplenn", num_classes=10, in_channels=3).parameters())
    fixed = 4 * params * 3  # float32 weights, their gradients, SGD's momentum buffer
    assert double - small == pytest.approx(small - fixed, rel=0.01)  # activations: linear in the batch
    resnet = cpu_step(step_config({"model": "resnet20", "batch_size": 512}), (3, 32, 32), 10)
    assert resnet > 3 * small  # 20 layers of 16-64 channels keep more than SimpleNN's few
    ddp = step_config({"model": "simplenn", "batch_size": 1024}, workers=2)
    assert ddp.batch_size == 512  # each DDP worker steps on its share of the batch


# ------------------------------------------------------------------ local Ray
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_one_node_form_on_local_ray(tmp_path):
    store = tmp_path / "store"
    ok = raylab("doctor", "--num-cpus", "2", "--storage", store, timeout=600)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rows = [line for line in ok.stdout.splitlines() if "(head)" in line]
    assert len(rows) == 1 and rows[0].split()[-1] == "ok" and "all checks pass" in ok.stdout, ok.stdout
    assert not store.exists()  # the probe folder, and the storage folder it made, are gone

    big = raylab("doctor", "--num-cpus", "2", "--storage", store, ROOT / "jobs" / "quickstart.py",
                 "--data", "synthetic:200", "--data-root", tmp_path / "data", "--set", "batch_size=1000000",
                 timeout=600)
    assert big.returncode == 2, big.stdout + big.stderr
    [line] = [line for line in big.stdout.splitlines() if line.startswith("problem:")]
    node = rows[0].split()[0]
    assert line.startswith(f"problem: node {node} has ") and "simplenn at batch 1000000 needs about" in line
    assert "lower --batch-size" in line

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    bad = raylab("doctor", "--num-cpus", "2", "--storage", blocked / "results", timeout=600)
    assert bad.returncode == 2 and f"problem: the driver cannot write under {blocked}/results" in bad.stdout


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_node_running_other_code_is_named_and_run_is_refused(tmp_path):
    """Node B's raylet (and so its workers) imports an edited copy of raylab: a node where someone
    changed a file and did not `ray up` again."""
    copy = tmp_path / "node-b-code"
    shutil.copytree(ROOT / "raylab", copy / "raylab", ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "raylab" / "errors.py", "a") as fh:
        fh.write("# edited on node B only\n")
    job = job_file(tmp_path, """
        from raylab import Study, grid
        STUDY = Study('refused', grid(lr=[0.1]), dict(data='synthetic:200', epochs=1))
    """)
    with ray_cluster({"num_cpus": 1}, {"num_cpus": 1, "env_vars": {"PYTHONPATH": str(copy)}}) as cluster:
        [b] = [node for node in cluster.list_all_nodes() if not node.head]
        # From a folder without raylab in it: Ray puts the driver's folder first on its workers' path.
        env = child_env(RAY_ADDRESS=cluster.address)
        found = raylab("doctor", "--storage", tmp_path / "store", env=env, cwd=tmp_path, timeout=600)
        run = raylab("run", job, "--storage", tmp_path / "res", "--data-root", tmp_path / "data",
                     env=env, cwd=tmp_path, timeout=600)
    assert found.returncode == 2, found.stdout + found.stderr
    problems = [line for line in found.stdout.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and f"/{b.node_id[:8]} runs raylab" in problems[0], found.stdout
    theirs, ours = re.findall(r"\(code (\w+)\)", problems[0])
    assert theirs != ours and "`ray up` again" in problems[0]
    assert_one_line_error(run, f"/{b.node_id[:8]} runs raylab", "--skip-doctor")
    assert not (tmp_path / "res").exists()  # refused before any trial, before anything was written


@pytest.mark.gpu
def test_one_measured_gpu_step_grows_with_the_batch_and_meets_its_share():
    """On a CUDA device only (`pytest -m gpu`; not run where there is none, as on the dev VM)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible")
    from raylab.declare.config import TrialConfig
    from raylab.sweep.doctor.step_memory import gpu_step

    trial = TrialConfig.from_dict(model="resnet20", data="synthetic:200").to_dict()
    small, big = (gpu_step({**trial, "batch_size": b}, None, (3, 32, 32), 10, data_bytes=0) for b in (64, 1024))
    assert not small["oom"] and not big["oom"] and big["peak"] > small["peak"] > 0
    assert checks.gpu_memory_problem("n", "m", 1.0, big) is None  # resnet20 at 1024 fits any whole GPU here
    assert checks.gpu_memory_problem("n", "m", big["peak"] / big["total"] / 2, big) is not None
