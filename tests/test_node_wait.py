"""Sizing against a cluster that grows: a trial no node holds yet waits for a
node to join (with a progress line) instead of being refused; a cluster with
no autoscaler refuses it at once (tests/test_cluster.py), and so does a wait
that runs out."""
import threading
import time

import pytest
import ray
from ray.cluster_utils import Cluster

from raylab.config import SweepOptions, TrialConfig
from raylab.errors import ClusterError
from raylab.sweep.node_wait import cluster_can_grow, sized_cluster


@pytest.fixture
def cpu_less_head():
    # Like a head after `ray up`: no CPU for trials, and no worker yet.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


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
