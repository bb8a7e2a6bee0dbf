"""The table `raylab doctor` prints: one row per node, the driver's versions above it."""
from __future__ import annotations

from raylab.sweep.doctor.step_memory import gib

COLUMNS = ("node", "python", "raylab", "code", "torch", "torchvision", "ray", "pyarrow", "numpy", "CPUs",
           "memory", "GPUs", "CUDA", "driver", "storage")


def driver_line(env: dict) -> str:
    packages = ", ".join(f"{k} {v or '-'}" for k, v in env["packages"].items())
    git = env.get("git")
    commit = f", git {git['commit'][:10]}{' (dirty)' if git['dirty'] else ''}" if git else ""
    return (f"driver on {env['host']}: Python {env['python']}, raylab {env['raylab']} (code {env['code_hash']}"
            f"{commit}), {packages}")


def row(label: str, head: bool, facts: dict | None, error: str | None) -> list[str]:
    """A node's cells in COLUMNS order; a node that did not answer shows why in its python cell."""
    name = label + (" (head)" if head else "")
    if facts is None:
        return [name, f"no answer: {error}"[:60]] + ["-"] * (len(COLUMNS) - 2)
    env = facts["env"]
    pk = env["packages"]
    gpus = facts.get("gpus")
    gpu_cell = "-" if not gpus else "; ".join(f"{g['name']} {gib(g['free'])} free of {gib(g['total'])}"
                                              for g in gpus)
    store = facts.get("storage")
    store_cell = "-" if store is None else ("ok" if not store["error"] and store["sees_driver"]
                                            else "FAILED" if store["error"] else "not shared")
    return [name, env["python"], env["raylab"], env["code_hash"], *(pk.get(k) or "-" for k in
            ("torch", "torchvision", "ray", "pyarrow", "numpy")),
            str(facts["cpus"]), gib(facts.get("memory_available")) if facts.get("memory_available") else "?",
            gpu_cell, facts.get("cuda") or "-", facts.get("driver") or "-", store_cell]


def render(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; the header first."""
    table = [list(COLUMNS), *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table)
