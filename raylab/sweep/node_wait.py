"""Sizing trials against a cluster that can grow.

Right after `ray up` the head (0 CPUs for trials) may be the only node: the
autoscaler adds workers only for work it is asked for. So on a cluster raylab
connected to that has an autoscaler (not one it started), a trial no node can hold yet is not
refused: raylab asks the autoscaler for it (request_resources) and waits up
to --wait-for-nodes seconds, printing what it waits for; only then does it
refuse. A local Ray that raylab started never grows: it refuses at once.
"""
from __future__ import annotations

import os
import time

from raylab.declare.config import TrialConfig
from raylab.errors import ClusterError
from raylab.sweep.resources import check_resources, default_resources

PROGRESS_EVERY_S = 15.0
POLL_S = 2.0
BOOTSTRAP = "~/ray_bootstrap_config.yaml"  # the launcher config `ray up` leaves on the head for its autoscaler


def cluster_can_grow() -> bool:
    """True when this driver joined a running cluster that has an autoscaler
    (`ray up` starts one on the head); False for a local Ray raylab started and
    for a fixed set of `ray start` nodes, which never grow."""
    import ray
    node = ray._private.worker._global_node
    if node is None or node.head:
        return False
    import json

    from ray._private.ray_constants import DEBUG_AUTOSCALING_STATUS
    from ray.experimental.internal_kv import _internal_kv_get
    try:
        from ray.autoscaler.v2.utils import is_autoscaler_v2
        if is_autoscaler_v2(fetch_from_server=True):
            return True
        # The v1 monitor runs on every head and posts this each round. Without a
        # launcher config (a plain `ray start --head`) it runs a read-only
        # provider whose node types are named "node_<node id>"; `ray up` gives
        # the config's own type names (head, gpu_worker, local.cluster.node).
        status = json.loads(_internal_kv_get(DEBUG_AUTOSCALING_STATUS) or b"{}")
        types = (status.get("autoscaler_report") or {}).get("node_type_mapping") or {}
        return any(not t.startswith("node_") for t in types.values())
    except Exception:  # an older or stripped-down Ray: behave as a fixed cluster
        return False


def sized_cluster(cfgs: list[TrialConfig], opts, wait_s: float | None = None) -> dict[str, float]:
    """The cluster's resources once some node could hold every trial."""
    import ray
    wait_s = (opts.wait_for_nodes if cluster_can_grow() else 0.0) if wait_s is None else wait_s
    start = time.monotonic()
    last_said = -PROGRESS_EVERY_S
    asked = False
    try:
        while True:
            cluster = ray.cluster_resources()
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
            try:
                check_resources(cfgs, opts, cluster, nodes)
                return cluster
            except ClusterError as exc:  # too big for every node now; a malformed option is raised at once
                if wait_s > 0 and (never := _no_node_type_fits(cfgs, opts, cluster)):
                    raise ClusterError(never) from None
                waited = time.monotonic() - start
                if waited >= wait_s:
                    if wait_s > 0:
                        raise ClusterError(f"{exc} (no such node joined in {wait_s:g} s: raise --wait-for-nodes, "
                                          "or check the autoscaler with `ray status`)") from None
                    raise
                asked = _ask_autoscaler(cfgs, opts, cluster) or asked
                if waited - last_said >= PROGRESS_EVERY_S:
                    print(f"raylab: waiting for the autoscaler to add a node: {exc} "
                          f"({waited:.0f} of {wait_s:g} s, --wait-for-nodes)", flush=True)
                    last_said = waited
                time.sleep(POLL_S)
    finally:
        if asked:  # from here Tune's queued trials keep the nodes wanted, or nothing should
            from ray.autoscaler.sdk import request_resources
            request_resources(bundles=[])


def _ask_autoscaler(cfgs: list[TrialConfig], opts, cluster: dict[str, float]) -> bool:
    """Ask for one trial's worth of resources, so a cluster with no worker up starts one."""
    from ray.autoscaler.sdk import request_resources
    need = default_resources(cfgs[0], opts, cluster)
    bundle = {k: v * opts.workers for k, v in need.items() if v > 0}
    try:
        request_resources(bundles=[bundle] if bundle else [{"CPU": 1}])
    except Exception:  # no autoscaler (a cluster of `ray start` nodes): waiting still helps
        return False
    return True


def declared_node_types(path: str | None = None) -> list[dict[str, float]] | None:
    """The resources of every node type the autoscaler may start, from the launcher config on
    the head; None when that is unknown (no config here, or a type whose resources the cloud
    provider fills in from its instance type)."""
    import yaml
    try:
        with open(os.path.expanduser(path or BOOTSTRAP)) as fh:
            config = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError):
        return None
    declared = [t.get("resources") for t in (config.get("available_node_types") or {}).values()]
    return [dict(r) for r in declared] if declared and all(declared) else None


def _no_node_type_fits(cfgs: list[TrialConfig], opts, cluster: dict[str, float]) -> str | None:
    """Why no node the autoscaler can start would hold a trial (waiting cannot help), or None."""
    types = declared_node_types()
    if types is None or opts.workers > 1:  # DDP workers spread over nodes: any count may do
        return None
    try:
        check_resources(cfgs, opts, cluster, types)
    except ClusterError as exc:
        return (f"no node type in {BOOTSTRAP} can hold a trial, so no node will join for it: "
                f"{str(exc).replace('the largest node has', 'the largest node type has')}")
    return None
