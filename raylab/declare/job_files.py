"""Find a job file's sibling job files wherever the job runs from.

`jobs/assignment.py` combines the course's other job files. `ray submit`
uploads only the one file it is given (to ~ on the head), and `ray job
submit --working-dir .` runs it from a copy of the checkout, so "next to
this file" is not enough: the jobs folder of the checkout raylab is installed
from (an editable install, as cluster.yaml makes on every node) and ./jobs
are looked in too.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from raylab.errors import UsageError
from raylab.declare.study import Study


def job_folders(near: str | Path) -> list[Path]:
    """Where sibling job files are looked for, first match wins."""
    installed = Path(__file__).resolve().parents[2] / "jobs"  # raylab/declare/job_files.py -> the checkout
    folders = [Path(near).resolve().parent, Path.cwd() / "jobs", installed]
    return list(dict.fromkeys(folders))


def sibling_study(name: str, near: str | Path) -> Study:
    """The STUDY of job file `name`.py from the first of job_folders(near) that holds it."""
    folders = job_folders(near)
    file = next((f / f"{name}.py" for f in folders if (f / f"{name}.py").is_file()), None)
    if file is None:
        raise UsageError(f"job file {name}.py not found in {', '.join(map(str, folders))}: "
                          "run from a raylab checkout, or install raylab from one (pip install -e)")
    spec = importlib.util.spec_from_file_location(f"raylab_jobs_{name}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STUDY
