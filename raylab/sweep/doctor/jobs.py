"""The job-file part of `raylab doctor`: does every trial of a study fit some node type, and does
one training step of each distinct model fit the share of a node its trial would get?

A trial that takes a GPU share is measured on each kind of GPU node (one task per node
kind, holding that share, as the trial would); a CPU trial's step is counted once here
and held against each node's available memory, shared by the trials it runs at once
(raylab/sweep/doctor/step_memory.py says why the two differ).
"""
from __future__ import annotations

from raylab.declare.config import ConfigError, SweepOptions, TrialConfig
from raylab.errors import ClusterError, DataError
from raylab.sweep.doctor import checks
from raylab.sweep.doctor.checks import Problem
from raylab.sweep.doctor.nodes import Node, first_line, pinned
from raylab.sweep.doctor.step_memory import cpu_step, gpu_step, step_config
from raylab.sweep.node_wait import declared_node_types
from raylab.sweep.resources import check_resources, default_resources
from raylab.sweep.shared_data import data_key

STEP_TIMEOUT_S = 600.0  # a GPU step task waits for a free share, starts CUDA and may compile
# What one step's memory depends on; trials that agree on these are measured once.
STEP_FIELDS = ("model", "model_options", "batchnorm", "activation", "shortcut", "batch_size", "optimizer",
               "data", "data_root", "eval_batch_size", "compile", "device")


def job_problems(study, opts: SweepOptions, nodes: list[Node]) -> list[Problem]:
    import ray

    cfgs = [t.config for t in study.trials()]
    cluster = ray.cluster_resources()
    problems = shape_problems(study.name, cfgs, opts, cluster, nodes)
    try:
        data = data_facts(cfgs)
    except DataError as exc:  # the run would stop there too: say so beside the nodes' table
        return problems + [Problem("the driver", f"cannot load the data of study {study.name}", str(exc))]
    for cfg in distinct_steps(cfgs):
        res = default_resources(cfg, opts, cluster)
        shape, classes, nbytes = data[data_key(cfg)]
        label = f"{study.name}'s {cfg.model} at batch {cfg.batch_size}"
        holders = [n for n in nodes if n.facts is not None and checks.trials_at_once(n.resources, res) >= 1]
        if res["GPU"] > 0 and cfg.device != "cpu":
            problems += gpu_problems(cfg, res["GPU"], opts.workers, holders, (shape, classes, nbytes), label)
            continue
        need = cpu_step(step_config(cfg.to_dict(), opts.workers), shape, classes)
        for n in holders:
            found = checks.cpu_memory_problem(n.label, label, need, n.facts.get("memory_available"),
                                              checks.trials_at_once(n.resources, res))
            problems += [found] if found else []
    return problems


def shape_problems(name: str, cfgs: list[TrialConfig], opts: SweepOptions, cluster: dict,
                   nodes: list[Node]) -> list[Problem]:
    """Every trial against the node types the autoscaler may start (else the nodes up now)."""
    types = declared_node_types() or [n.resources for n in nodes]
    try:
        check_resources(cfgs, opts, cluster, types)
    except (ClusterError, ConfigError) as exc:
        return [Problem("the cluster", f"cannot hold every trial of study {name}", str(exc))]
    return []


def distinct_steps(cfgs: list[TrialConfig]) -> list[TrialConfig]:
    """One config per distinct step (STEP_FIELDS; SGD with and without momentum differ)."""
    seen: dict[tuple, TrialConfig] = {}
    for c in cfgs:
        seen.setdefault((*(getattr(c, f) for f in STEP_FIELDS), c.momentum != 0), c)
    return list(seen.values())


def data_facts(cfgs: list[TrialConfig]) -> dict[str, tuple[tuple[int, ...], int, int]]:
    """Per data source: image shape, class count, and the bytes a trial moves to its device."""
    from raylab.data.sources import load_dataset

    out = {}
    for c in cfgs:
        if data_key(c) not in out:
            ds = load_dataset(c.data, c.data_root, download=c.download)
            tensors = (ds.train_x, ds.train_y, ds.test_x, ds.test_y)
            out[data_key(c)] = (tuple(ds.train_x.shape[1:]), len(ds.classes),
                                sum(t.numel() * t.element_size() for t in tensors))
    return out


def gpu_problems(cfg: TrialConfig, share: float, workers: int, holders: list[Node], data: tuple,
                 label: str) -> list[Problem]:
    """One step measured on one node of each GPU kind, holding the trial's share of it."""
    import ray

    from raylab.sweep.user_models import pack

    out: list[Problem] = []
    kinds: dict[tuple, list[Node]] = {}
    for n in holders:
        gpus = n.facts.get("gpus") or []
        if not gpus:
            out.append(checks.no_cuda(n.label, n.resources.get("GPU", 0)))
            continue
        kinds.setdefault((gpus[0]["name"], gpus[0]["total"], len(gpus)), []).append(n)
    if not kinds:
        return out
    task = ray.remote(gpu_step)
    refs = [task.options(num_cpus=0, num_gpus=share, **pinned(group[0].id)).remote(
        cfg.to_dict(), pack({cfg.model}), *data, workers) for group in kinds.values()]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=STEP_TIMEOUT_S)
    for group, ref in zip(kinds.values(), refs):
        who = group[0].label + (f" (and {len(group) - 1} more of its kind)" if len(group) > 1 else "")
        if ref not in ready:
            ray.cancel(ref, force=True)
            out.append(Problem(who, f"gave no {share:g} GPU share for one step of {label} in {STEP_TIMEOUT_S:g} s",
                               "rerun `raylab doctor` when its GPUs are free (`ray status` shows what holds them)"))
            continue
        try:
            found = checks.gpu_memory_problem(who, label, share, ray.get(ref))
        except Exception as exc:  # the step itself failed: a trial of this config would too
            found = Problem(who, f"failed one step of {label} on its GPU ({first_line(exc)})",
                            "fix what the error names; every trial of this config would fail the same way")
        out += [found] if found else []
    return out
