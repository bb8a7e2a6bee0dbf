"""The cluster path as a user runs it: Ray's own launcher (`ray up`) with a
local-provider config derived from cluster.yaml, sshd, a head (10.10.0.1)
and a worker node (10.10.0.2, its own network namespace, 2 logical GPUs), `ray submit` of quickstart.py
and of assignment.py (--only), `ray job submit`, results on a local S3
server, `raylab report s3://...`, a second driver refused, `raylab resume
s3://...` after the driver is killed, `raylab doctor` passing on the healthy
cluster and naming the worker in each fault injected there (its ~/raylab-src
edited, a storage folder it cannot write, a batch its memory cannot hold),
`raylab run` refused before any trial while the worker's code differs, `ray down`.

All of it runs in tests/cluster_namespace.py as PID 1 of its own PID, network
and mount namespaces, so `ray stop` in cluster.yaml's start commands, sshd,
the S3 server and every Ray process see and touch nothing outside, and die
with it. Needs root and unshare (CI runs as root), and sshd, rsync and the rest of
scripts/system_deps.sh's packages (`make test` installs them as root); without them it
skips with the line that says what to install, and fails under CI.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import IN_CI, ROOT, require_packages

UNSHARE = ["unshare", "--pid", "--net", "--mount", "--fork", "--mount-proc", "--kill-child"]
# The module's cluster comes up in its fixture (ray up, three submits, resume, ray down):
# ~10 min on a loaded 2-core box, which pytest-timeout counts against the test.
pytestmark = [pytest.mark.launcher, pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(1800)]


def _namespaces_refused() -> str | None:
    if os.geteuid() != 0:
        return "needs root for PID/network/mount namespaces and sshd"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) not installed"
    p = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True)
    return f"namespaces not permitted here: {p.stderr.strip()}" if p.returncode else None


@pytest.fixture(scope="module")
def launcher_run(tmp_path_factory):
    refused = _namespaces_refused()
    if refused:
        if IN_CI:
            pytest.fail(f"CI must run the launcher test: {refused}")
        pytest.skip(refused)
    require_packages("openssh-server", "openssh-client", "rsync", "iproute2", "procps")
    work = tmp_path_factory.mktemp("cluster")
    p = subprocess.run([*UNSHARE, sys.executable, str(ROOT / "tests" / "cluster_namespace.py"), str(ROOT),
                        str(work)], capture_output=True, text=True, timeout=1500)
    steps = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            steps[d.get("step", "done")] = d
    timings = {k: v["seconds"] for k, v in steps.items() if "seconds" in v}
    print("launcher timings (s):", json.dumps(timings))
    (work / "timings.json").write_text(json.dumps(timings))
    return steps, p


def _ok(steps, name):
    s = steps.get(name)
    assert s is not None, f"step '{name}' never ran: {list(steps)}"
    assert s["rc"] == 0, f"{name} failed (rc {s['rc']}):\n{s['out'][-4000:]}"
    return s["out"]


WORKER = "10.10.0.2"


def _refused(steps, name) -> list[str]:
    """The problem lines of a doctor step that must fail (`ray exec` says 1 for the command's 2)."""
    s = steps.get(name)
    assert s is not None, f"step '{name}' never ran: {list(steps)}"
    assert s["rc"] != 0, f"{name}: rc {s['rc']}:\n{s['out'][-4000:]}"
    return [line for line in s["out"].splitlines() if line.startswith("problem:")]


def _doctor_steps(steps) -> None:
    out = _ok(steps, "doctor healthy")
    assert "all checks pass" in out and WORKER in out and "10.10.0.1 (head)" in out, out[-3000:]
    code, storage, memory = _refused(steps, "doctor faults")  # the node's own problems, then the job's
    assert code.startswith(f"problem: node {WORKER} runs raylab 0.1.0 (code ") and "`ray up` again" in code
    assert storage.startswith(f"problem: node {WORKER} cannot write, read back and delete") and "Read-only" in storage
    assert memory.startswith(f"problem: node {WORKER} has ") and "at batch 1000000 needs about" in memory
    run = steps["run refused"]
    assert run["rc"] != 0 and f"node {WORKER} runs raylab" in run["out"] and "--skip-doctor" in run["out"]
    assert "Traceback" not in run["out"], run["out"][-3000:]
    _ok(steps, "nothing written")


def test_ray_up_submit_report_resume_down(launcher_run):
    steps, p = launcher_run
    _ok(steps, "ray up")
    out = _ok(steps, "ray submit quickstart")
    assert "lr=0.05" in out and "completed" in out          # the summary table from the head
    # The head offers 0 CPUs: a driver that joined the cluster can only have run its
    # trials on the worker node (a private Ray on the head would have used the head).
    assert "joined the Ray cluster at auto" in out, out[-3000:]
    _doctor_steps(steps)
    out = _ok(steps, "ray submit assignment")
    assert "lab1_simplenn/baseline" in out and "lab2_swish/swish" in out and "lab2_lr_sweep" not in out
    out = _ok(steps, "ray job submit")
    assert "succeeded" in out and "completed" in out
    assert "joined the Ray cluster" in out, out[-3000:]  # RAY_ADDRESS set by the job server
    out = _ok(steps, "report")
    assert "report.md" in out
    assert "3 completed" in out and "lab1_simplenn" in out  # status of the assignment read from s3://
    # A second driver while the first runs on the same s3:// study: one line, exit 2.
    second = steps["second driver"]
    assert second["rc"] != 0 and "another raylab driver" in second["out"], second["out"][-3000:]
    killed = steps["killed driver"]["out"]
    assert "held ['any.train.5.hit." in killed, killed  # a trial held mid-sweep when the driver died
    assert "pids [" in killed and "pids []" not in killed, killed
    out = _ok(steps, "ray exec resume")
    assert "completed 3" in out or out.count("completed") >= 3, out[-3000:]
    _ok(steps, "check resumed")
    _ok(steps, "ray down")
    assert "done" in steps, p.stderr[-3000:]
