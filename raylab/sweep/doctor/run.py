"""`raylab doctor`, and the check `raylab run` makes by itself before a sweep on a cluster.

    run_doctor(studies, opts) -> 0 when every check passes, 2 otherwise (table and problems printed)
    preflight(opts)           versions and storage only; raises ClusterError naming the first problem

One Ray task is pinned to every alive node (NodeAffinitySchedulingStrategy,
soft=False, 0 CPUs so a head that offers none answers too) and returns what
raylab/sweep/doctor/facts.py finds there. Nodes that join after the check
are not seen by it; each trial records the code it ran (trials.parquet's
code_hash), and the analysis warns where compared variants differ.
"""
from __future__ import annotations

import contextlib
import os
import uuid

from raylab.declare.config import SweepOptions
from raylab.errors import ClusterError
from raylab.results.provenance import environment
from raylab.results.storage import absolute, delete_file, is_uri, join, write_bytes
from raylab.sweep.doctor import checks, table
from raylab.sweep.doctor.checks import Problem
from raylab.sweep.doctor.facts import DRIVER_TOKEN, Probe
from raylab.sweep.doctor.jobs import job_problems
from raylab.sweep.doctor.nodes import Node, alive_nodes, gather

PROBE_FOLDER = ".raylab-doctor"  # under the storage prefix; each check's probe folder is removed after it


def run_doctor(studies: list, opts: SweepOptions) -> int:
    """Check every node (and, given studies, that their trials fit); print the table and the problems."""
    nodes, problems, driver = diagnose(opts, hardware=True)
    for study in studies:
        problems += job_problems(study, opts, nodes)
    print(f"raylab doctor: {len(nodes)} node(s) alive; storage {absolute(opts.storage)}")
    print(table.driver_line(driver))
    print(table.render([table.row(n.label, n.head, n.facts, n.error) for n in nodes]))
    print()
    for p in problems:
        print(f"problem: {p.line()}")
    print(f"{len(problems)} problem(s)" if problems else "all checks pass")
    return 2 if problems else 0


def preflight(opts: SweepOptions) -> None:
    """What `raylab run` checks on a cluster before any trial: every node runs the driver's code and
    packages and round-trips an object under the storage prefix. Not on a local Ray it started."""
    from raylab.sweep.driver import connect

    connect(opts)
    if started_here():
        return
    nodes, problems, _ = diagnose(opts, hardware=False)
    if problems:
        more = f" ({len(problems) - 1} more: `raylab doctor` lists them)" if len(problems) > 1 else ""
        raise ClusterError(f"{problems[0].line()}{more}; --skip-doctor runs anyway")
    print(f"raylab: doctor: {len(nodes)} node(s) run this raylab (code {environment()['code_hash']}) "
          f"and reach {absolute(opts.storage)}", flush=True)


def started_here() -> bool:
    """True when this driver started its own local Ray (not a cluster it joined)."""
    import ray

    node = ray._private.worker._global_node
    return node is not None and node.head


def diagnose(opts: SweepOptions, hardware: bool) -> tuple[list[Node], list[Problem], dict]:
    """Connect, ask every alive node for its facts, and compare them with the driver's."""
    from raylab.sweep.driver import connect

    connect(opts)
    driver = environment()
    nodes = alive_nodes()
    storage = absolute(opts.storage)
    problems: list[Problem] = []
    with storage_probe(storage) as (probe, failure):
        if failure:
            problems.append(Problem("the driver", f"cannot write under {storage} ({failure})",
                                    "fix the storage's permissions or credentials, or choose another --storage"))
        gather(nodes, probe, hardware)
    for n in nodes:
        if n.facts is None:
            n.problems.append(checks.unanswered(n.label, n.error or "?"))
            continue
        n.problems += checks.version_problems(n.label, n.facts["env"], driver)
        if probe is not None:
            n.problems += checks.storage_problems(n.label, storage, n.facts["storage"])
        problems += n.problems
    return nodes, problems, driver


@contextlib.contextmanager
def storage_probe(storage: str):
    """(Probe, None) with the driver's token written under `storage`, or (None, why it could not be);
    afterwards removes the token (each node removed its own object) and, on a local disk, the
    folders the probe made: nothing of the check is left behind."""
    folder = join(storage, PROBE_FOLDER, uuid.uuid4().hex)
    made = [] if is_uri(storage) else _missing_folders(folder)
    token = uuid.uuid4().hex.encode()
    try:
        write_bytes(token, join(folder, DRIVER_TOKEN))
    except (OSError, ValueError) as exc:
        yield None, " ".join(str(getattr(exc, "reason", None) or exc).split())
        return
    try:
        yield Probe(folder, token), None
    finally:
        with contextlib.suppress(OSError, ValueError):
            delete_file(join(folder, DRIVER_TOKEN))
        for empty in made:  # deepest first; rmdir, which leaves a folder another process wrote into
            with contextlib.suppress(OSError):
                os.rmdir(empty)


def _missing_folders(path: str) -> list[str]:
    """`path` and each of its parents that does not exist yet, deepest first."""
    out = []
    while not os.path.exists(path) and os.path.dirname(path) != path:
        out.append(path)
        path = os.path.dirname(path)
    return out
