"""The layers of the code, read from the source with `ast` (function-level imports included).

Data flows one way: job file -> Study -> sweep driver -> trials (train.py) ->
Parquet -> analysis. So the core never imports the sweep layer or the CLI,
nothing imports in a circle, `analysis` needs neither Ray nor torch, and the
CLI module itself loads neither until a command needs them.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("raylab", "analysis")
# Alias modules: study folders written before raylab/sweep/ name these in Tune's
# pickles (tuner.pkl: raylab.tune._trial_name, raylab.parquet_callback.ParquetCallback,
# raylab.trainable.raylab_trial). Each is one import of the sweep layer and nothing else.
ALIASES = {"raylab.tune", "raylab.trainable", "raylab.parquet_callback"}
TOP = {"raylab.cli", "raylab.__main__"}
MAX_LINES = 350


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports(path: Path, name: str) -> set[str]:
    """Every module `path` imports, anywhere in it (top level, functions, try blocks)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .load import y
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if node.module or not node.level:  # `from . import layout` names submodules, not the package
                out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # `from raylab import study` is a module
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m in imports(path, name) if m in mods and m != name} for name, path in mods.items()}


def is_core(name: str) -> bool:
    return (name.startswith("raylab.") and not name.startswith("raylab.sweep")
            and name not in TOP and name not in ALIASES)


def test_the_walk_sees_function_level_imports():
    g = graph()
    assert "raylab.sweep.driver" in g["raylab.cli"]  # imported inside cmd_run only
    assert "raylab.models" in g["raylab.cli"]  # imported inside cmd_models only


def test_no_import_circle():
    g = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_the_core_imports_neither_the_sweep_layer_nor_the_cli():
    bad = [(m, n) for m, deps in graph().items() if is_core(m)
           for n in deps if n.startswith("raylab.sweep") or n in TOP or n.startswith("analysis")]
    assert not bad, f"core modules reaching up: {bad}"


def test_the_sweep_layer_does_not_import_the_cli():
    bad = [(m, n) for m, deps in graph().items() if m.startswith("raylab.sweep") for n in deps if n in TOP]
    assert not bad


def test_analysis_imports_neither_ray_nor_torch():
    mods = modules()
    bad = [(name, m) for name, path in mods.items() if name.startswith("analysis")
           for m in imports(path, name) if m.split(".")[0] in ("ray", "torch", "torchvision")]
    assert not bad, bad


def test_no_module_over_the_size_limit():
    long = {str(p.relative_to(ROOT)): n for p in modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_aliases_stay_thin():
    for name in ALIASES:
        path = ROOT / (name.replace(".", "/") + ".py")
        body = [n for n in ast.parse(path.read_text()).body if not isinstance(n, ast.Expr)]
        assert len(body) == 1 and isinstance(body[0], ast.ImportFrom), name
        assert body[0].module.startswith("raylab.sweep."), name


@pytest.mark.parametrize("args", [["--help"], ["list"], ["status", "nowhere"], ["compact", "nowhere"], ["train", "--lr"],
                                  ["run", "jobs/quickstart.py", "--workers", "0"]])
def test_light_commands_load_neither_torch_nor_ray(args, tmp_path):
    probe = ("import runpy, sys\nsys.argv = ['raylab', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('raylab', run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "heavy = sorted(m for m in ('torch', 'ray', 'torchvision') if m in sys.modules)\n"
             "print('HEAVY', ','.join(heavy), file=sys.stderr)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)
    heavy = [line for line in proc.stderr.splitlines() if line.startswith("HEAVY")]
    assert heavy == ["HEAVY "], proc.stderr
