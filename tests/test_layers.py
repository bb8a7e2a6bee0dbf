"""The layers of the code, read from the source with `ast` (function-level imports included).

Data flows one way: job file -> Study -> sweep driver -> trials (raylab/train/) ->
Parquet -> analysis. raylab's subpackages are layers, and a module imports only
its own layer and the ones before it in LAYERS; nothing imports in a circle,
`analysis` needs neither Ray nor torch, and the CLI module itself loads neither
until a command needs them.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, child_env

PACKAGES = ("raylab", "analysis")
# raylab's layers, lowest first: a module may import its own layer and those before it.
LAYERS = ("raylab.errors", "raylab.declare", "raylab.data", "raylab.results", "raylab.train", "raylab.sweep",
          "raylab.cli")
TOP = {"raylab.cli", "raylab.__main__", "raylab"}  # the CLI and the package's lazy face
MAX_LINES = 350


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports(path: Path, name: str, known: frozenset[str] = frozenset()) -> set[str]:
    """Every module `path` imports, anywhere in it (top level, functions, try blocks); `known`:
    the project's module names, so `from pkg import submodule` counts the submodule only."""
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
            named = {f"{base}.{a.name}" for a in node.names}
            out.update(named)  # `from raylab.results import parts` is a module
            if not named <= known:  # a name that is no submodule comes from the package's face
                out.add(base)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = frozenset(mods)
    return {name: {m for m in imports(path, name, known) if m in mods and m != name} for name, path in mods.items()}


def layer(name: str) -> int | None:
    """The index in LAYERS of a raylab module (`raylab.__main__` is the CLI's), None outside them."""
    if name == "raylab.__main__":
        name = "raylab.cli"
    for i, prefix in enumerate(LAYERS):
        if name == prefix or name.startswith(prefix + "."):
            return i
    return None


def test_the_walk_sees_function_level_imports():
    g = graph()
    assert "raylab.sweep.driver" in g["raylab.cli"]  # imported inside cmd_run only
    assert "raylab.train.models" in g["raylab.cli"]  # imported inside cmd_models only


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


def test_every_raylab_module_sits_in_a_layer():
    loose = [m for m in modules() if m.startswith("raylab") and m != "raylab" and layer(m) is None]
    assert not loose, f"modules outside {LAYERS}: {loose}"


def test_imports_go_down_the_layers_only():
    """declare < data < results < train < sweep < cli: nothing reaches up; of raylab, only the CLI
    imports analysis (`raylab report`)."""
    cli = layer("raylab.cli")
    bad = [(m, n) for m, deps in graph().items() if layer(m) is not None
           for n in deps if n == "raylab" or (n.startswith("analysis") and layer(m) != cli)
           or (layer(n) or 0) > layer(m)]
    assert not bad, f"modules reaching up: {bad}"


def test_the_layer_check_would_catch_an_upward_import():
    assert layer("raylab.train.loop") > layer("raylab.results.writer") > layer("raylab.declare.study")
    assert layer("raylab.__main__") == layer("raylab.cli") == len(LAYERS) - 1


def test_analysis_imports_neither_ray_nor_torch():
    mods = modules()
    bad = [(name, m) for name, path in mods.items() if name.startswith("analysis")
           for m in imports(path, name) if m.split(".")[0] in ("ray", "torch", "torchvision")]
    assert not bad, bad


def constants(path: Path) -> set[str]:
    """The public UPPER_CASE names a module assigns at its top level (`A, B = ...` included)."""
    names = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name) and n.id.isupper() and not n.id.startswith("_"):
                    names.add(n.id)
    return names


def test_each_constant_has_one_home():
    """One fact, one place: a public constant is defined in one module of raylab/ and analysis/,
    and others import it; two modules defining one name (RUN_FIELDS, SUMMARY_COLUMNS, METRICS
    were each two different things) is how copies drift apart."""
    homes: dict[str, list[str]] = {}
    for name, path in modules().items():
        for const in constants(path):
            homes.setdefault(const, []).append(name)
    twice = {c: where for c, where in homes.items() if len(where) > 1}
    assert not twice, f"constants defined in more than one module: {twice}"


def test_the_constant_check_sees_tuple_assignments(tmp_path):
    (tmp_path / "m.py").write_text("A, B = 1, 2\nC: int = 3\n_D = 4\nlower = 5\n")
    assert constants(tmp_path / "m.py") == {"A", "B", "C"}


def test_every_subpackage_has_a_face():
    """raylab and each of its subpackages list their entry points in __all__, and each name
    resolves (lazily where heavy: importing the package loads neither torch nor Ray)."""
    import importlib

    packages = ["raylab", *(p for p in LAYERS if (ROOT / p.replace(".", "/") / "__init__.py").is_file())]
    assert len(packages) == 6, packages
    for pkg in packages:
        face = importlib.import_module(pkg)
        missing = [n for n in getattr(face, "__all__", ()) if getattr(face, n, None) is None]
        assert face.__all__ and not missing, (pkg, missing)


def test_no_module_over_the_size_limit():
    long = {str(p.relative_to(ROOT)): n for p in modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("args", [["--help"], ["list"], ["status", "nowhere"], ["compact", "nowhere"], ["train", "--lr"],
                                  ["run", "jobs/quickstart.py", "--workers", "0"]])
def test_light_commands_load_neither_torch_nor_ray(args, tmp_path):
    probe = ("import runpy, sys\nsys.argv = ['raylab', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('raylab', run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "heavy = sorted(m for m in ('torch', 'ray', 'torchvision') if m in sys.modules)\n"
             "print('HEAVY', ','.join(heavy), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                          cwd=ROOT, env=child_env(), timeout=120)
    heavy = [line for line in proc.stderr.splitlines() if line.startswith("HEAVY")]
    assert heavy == ["HEAVY "], proc.stderr
