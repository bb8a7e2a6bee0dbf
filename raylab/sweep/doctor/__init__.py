"""`raylab doctor`: is every node of the cluster ready for a sweep, and will the study fit?

    facts.py        what a node says about itself (a task pinned to it): versions, code hash,
                    CPUs, memory, GPUs, CUDA, a storage round trip
    nodes.py        the alive nodes, and their facts gathered with a task pinned to each
    checks.py       facts against the driver's: one Problem per finding, naming node and fix
    step_memory.py  one training step's memory: measured on a GPU share, counted on a CPU
    jobs.py         a study's trials against the node types and each node's share
    table.py        the table it prints, one row per node
    run.py          `raylab doctor`, and the check `raylab run` makes before a cluster sweep
"""
from raylab.sweep.doctor.run import preflight, run_doctor

__all__ = ["preflight", "run_doctor"]
