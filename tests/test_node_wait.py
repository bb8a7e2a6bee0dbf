"""Sizing against a cluster that grows: a trial no node holds yet waits for a
node to join (with a progress line) instead of being refused; a cluster with
no autoscaler refuses it at once (tests/test_cluster.py), and so does a wait
that runs out."""
import threading
import time

import pytest

from conftest import ray_cluster
from raylab.declare.config import SweepOptions, TrialConfig
from raylab.errors import ClusterError
from raylab.sweep.node_wait import cluster_can_grow, sized_cluster

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster({"num_cpus": 0}) as cluster:
        yield cluster


@pytest.fixture
def cpu_less_head(cluster):
    """Like a head after `ray up`: no CPU for trials, and no worker yet (each test leaves it so)."""
    assert not cluster.worker_nodes
    yield cluster
    for node in list(cluster.worker_nodes):
        cluster.remove_node(node)
    cluster.wait_for_nodes()  # Ray counts it gone before the next test sizes the cluster


def test_a_trial_waits_for_a_node_that_joins(cpu_less_head, capsys):
    assert not cluster_can_grow()   # no launcher config: a fixed cluster, by default refused at once
    cfg = TrialConfig.from_dict(model="simplenn")
    got = {}
    # The driver waits in a thread; the node joins from the main thread (Cluster.add_node needs it).
    waiter = threading.Thread(target=lambda: got.update(sized_cluster([cfg], SweepOptions(), wait_s=300)))
    waiter.start()
    time.sleep(3)
    assert waiter.is_alive()          # not refused while no node holds the trial
    cpu_less_head.add_node(num_cpus=2, num_gpus=1)
    waiter.join(timeout=300)
    assert got.get("CPU") == 2 and got.get("GPU") == 1, got
    assert "raylab: waiting for the autoscaler to add a node: a trial needs 1 CPU" in capsys.readouterr().out


def test_a_wait_that_runs_out_is_refused_with_the_flag_named(cpu_less_head):
    cfg = TrialConfig.from_dict(model="simplenn")
    with pytest.raises(ClusterError, match=r"no such node joined in 3 s: raise --wait-for-nodes"):
        sized_cluster([cfg], SweepOptions(), wait_s=3)


def test_a_trial_no_declared_node_type_holds_is_refused_without_waiting(cpu_less_head, tmp_path, monkeypatch):
    """On a `ray up` head the launcher config names what the autoscaler can start: a trial
    bigger than every node type would wait out --wait-for-nodes for nothing."""
    from raylab.sweep import node_wait

    config = tmp_path / "ray_bootstrap_config.yaml"
    config.write_text("available_node_types:\n"
                      "  head: {resources: {CPU: 0}, min_workers: 0, max_workers: 0}\n"
                      "  worker: {resources: {CPU: 2, GPU: 1}, min_workers: 0, max_workers: 4}\n")
    monkeypatch.setattr(node_wait, "BOOTSTRAP", str(config))
    assert node_wait.declared_node_types() == [{"CPU": 0}, {"CPU": 2, "GPU": 1}]
    big = TrialConfig.from_dict(model="simplenn")
    with pytest.raises(ClusterError, match=r"no node type in .*ray_bootstrap_config.yaml can hold a trial, so no "
                                           r"node will join for it: a trial needs 4 CPU but the largest node type "
                                           r"has 2: lower --cpus-per-trial"):
        sized_cluster([big], SweepOptions(cpus_per_trial=4), wait_s=600)  # refused at once, not after 600 s
    config.write_text("available_node_types:\n  worker: {node_config: {InstanceType: m5.large}}\n")
    assert node_wait.declared_node_types() is None  # filled in by the cloud provider: not ours to judge

