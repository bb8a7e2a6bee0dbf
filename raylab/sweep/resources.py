"""How much of a machine each trial gets, and refusing what no node can run."""
from __future__ import annotations

from raylab.declare.config import ConfigError, SweepOptions, TrialConfig, check_gpu_share
from raylab.declare.registry import gpu_share
from raylab.errors import ClusterError

DDP_DRIVER_CPU = 0.001  # a DDP trial only waits on its Train workers; Ray needs some resource


def default_resources(cfg: TrialConfig, opts: SweepOptions, cluster: dict[str, float]) -> dict[str, float]:
    """A slice of a machine per trial: the model's share of a GPU (the model table,
    raylab/declare/registry.py: SimpleNN a quarter, a ResNet a whole one); a DDP
    worker takes a whole GPU. On a CPU-only cluster each trial (or worker) takes
    one CPU so that trials, not threads, fill the cores: on this project's 2-core
    machine two 1-thread trials beat one 2-thread run 1.3-1.9x (bench/sweep.py).
    """
    has_gpu = cluster.get("GPU", 0) > 0 and cfg.device != "cpu"
    gpu = opts.gpus_per_trial
    if gpu is None:
        share = gpu_share(cfg.model) if opts.workers == 1 else 1.0  # DDP workers need whole GPUs
        gpu = share if has_gpu else 0.0
    cpu = opts.cpus_per_trial if opts.cpus_per_trial is not None else (2.0 if gpu >= 1 else 1.0)
    return {"CPU": cpu, "GPU": gpu}


def check_resources(cfgs: list[TrialConfig], opts: SweepOptions, cluster: dict[str, float],
                    nodes: list[dict[str, float]]) -> None:
    """Refuse at once what no node could ever run, instead of a sweep that waits forever.

    A single-process trial must fit on one node; DDP workers may spread over nodes.
    """
    largest = {k: max((n.get(k, 0) for n in nodes), default=0) for k in ("CPU", "GPU")}
    for cfg in cfgs:
        res = default_resources(cfg, opts, cluster)
        check_gpu_share(res["GPU"])
        if opts.workers > 1:
            if 0 < res["GPU"] < 1:
                raise ConfigError("DDP workers need whole GPUs: use --gpus-per-trial 1 with --workers > 1")
            need = {"GPU": res["GPU"] * opts.workers, "CPU": res["CPU"] * opts.workers + DDP_DRIVER_CPU}
            have, where = cluster, "the cluster has"
        else:
            need, have, where = res, largest, "the largest node has"
        for kind, flag in (("GPU", "--gpus-per-trial"), ("CPU", "--cpus-per-trial")):
            if need[kind] > have.get(kind, 0) + 1e-9:
                more = " (--num-cpus on local Ray)" if kind == "CPU" and opts.workers > 1 else ""
                raise ClusterError(f"a trial needs {need[kind]:g} {kind} but {where} {have.get(kind, 0):g}: "
                                  f"lower {flag}{' or --workers' if opts.workers > 1 else ''}, "
                                  f"or add nodes{more}")
