"""The cluster's alive nodes, and what each one says about itself when asked (a task pinned to it).

    nodes = alive_nodes()        # head first, each labelled by its IP (+ its id where IPs repeat)
    gather(nodes, probe, hardware=True)   # fills node.facts, or node.error within FACTS_TIMEOUT_S
"""
from __future__ import annotations

from dataclasses import dataclass, field

from raylab.sweep.doctor.checks import Problem
from raylab.sweep.doctor.facts import Probe, node_facts

FACTS_TIMEOUT_S = 180.0  # a fresh worker imports raylab and pyarrow: ~10 s on the loaded 2-core dev VM
HEAD = "node:__internal_head__"  # the resource Ray gives the head node only


@dataclass
class Node:
    id: str
    label: str            # its IP (plus the start of its id where two nodes share an IP)
    head: bool
    resources: dict
    facts: dict | None = None
    error: str | None = None  # why it did not answer
    problems: list[Problem] = field(default_factory=list)


def alive_nodes() -> list[Node]:
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    ips = [n["NodeManagerAddress"] for n in alive]
    return [Node(id=n["NodeID"], label=n["NodeManagerAddress"] + (f"/{n['NodeID'][:8]}" if
                                                                  ips.count(n["NodeManagerAddress"]) > 1 else ""),
                 head=HEAD in n.get("Resources", {}), resources=dict(n.get("Resources", {})))
            for n in sorted(alive, key=lambda n: (HEAD not in n.get("Resources", {}), n["NodeManagerAddress"]))]


def pinned(node_id: str) -> dict:
    """Task options that run it on that node and nowhere else, once."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False), "max_retries": 0}


def gather(nodes: list[Node], probe: Probe | None, hardware: bool) -> None:
    """Each node's facts, or why it gave none within FACTS_TIMEOUT_S."""
    import ray

    task = ray.remote(node_facts)
    refs = [task.options(num_cpus=0, **pinned(n.id)).remote(probe, hardware) for n in nodes]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=FACTS_TIMEOUT_S)
    for n, ref in zip(nodes, refs):
        if ref not in ready:
            n.error = f"no answer in {FACTS_TIMEOUT_S:g} s"
            ray.cancel(ref, force=True)
            continue
        try:
            n.facts = ray.get(ref)
        except Exception as exc:  # the node's own failure (an import, a crash): its first words say which
            n.error = first_line(exc)


def first_line(exc: BaseException) -> str:
    """The cause of a Ray task's error in one line (Ray wraps it in a traceback of its own)."""
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"[:300]
