"""The cluster path run for real, as PID 1 of its own PID, network and mount
namespaces (tests/test_launcher.py starts it under `unshare`): sshd on the
namespace's loopback, moto's S3 server, Ray's own launcher (`ray up`) with a
local-provider config derived from cluster.yaml, a head at 10.10.0.1 and a
worker at 10.10.0.2 (its own network namespace, joined by a veth pair),
`ray submit`, `ray job submit`, report and resume from s3://, `raylab doctor` on the healthy
cluster and with a fault injected on the worker (an edited file in its ~/raylab-src, a
storage folder it sees read-only, a batch too big for its memory), `raylab run` refused on
the edited worker, `ray down`. Every process it starts dies with the namespace.

    python tests/cluster_namespace.py CHECKOUT WORKDIR

Prints one JSON line per step ({"step", "seconds", "rc", "out"}) and a last
{"done": true}; the test asserts on them.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT, WORK = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
VENV = Path(sys.prefix)
HOME = WORK / "home"  # root's home inside the namespace (its /etc/passwd says so)
WORKER_HOME = WORK / "home-worker"  # the worker's own ~ (bound over HOME there): its own ~/raylab-src
RO_STORE = WORK / "ro-store"  # a storage folder the head writes and the worker sees read-only
BUCKET = "raylab-ci"
S3 = {"AWS_ENDPOINT_URL": "http://10.10.0.1:5000", "AWS_ACCESS_KEY_ID": "testing",
      "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
# Fault points (raylab/train/faults.py) for the worker's trials: the killed-driver step holds one there.
POINTS = WORK / "points"
# Small and fast: 2 epochs of SimpleNN on 200 synthetic images, one thread per trial.
FAST = "--data synthetic:200 --epochs 2 --set threads=1 --set batch_size=50 --quiet"


# Every trial of the resumed sweep completed, each epoch 1..N exactly once.
CHECK = """
import sys
from raylab.results import METRICS, TRIALS, read_table
root, epochs = sys.argv[1], int(sys.argv[2])
trials, metrics = read_table(root, TRIALS), read_table(root, METRICS)
assert (trials["status"] == "completed").all() and len(trials) == 3, trials
m = metrics[metrics["epoch"] >= 1]
assert not m.duplicated(["trial_id", "epoch"]).any(), "an epoch written twice"
assert m.groupby("trial_id")["epoch"].apply(sorted).map(lambda e: e == list(range(1, epochs + 1))).all()
print("resumed:", len(trials), "trials,", len(m), "epoch rows")
"""


def sh(cmd: str, check: bool = True, **kw) -> None:
    subprocess.run(cmd, shell=True, check=check, **kw)


def report(step: str, **fields) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


def step(name: str, cmd: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run one user command from the checkout, as a user would in a shell whose
    PATH has the venv; report its time, exit status and output tail."""
    t = time.monotonic()
    try:
        p = subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=user_env(), capture_output=True, text=True,
                           timeout=timeout)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out = "timeout", f"{exc.stdout or ''}{exc.stderr or ''}"
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
    report(name, seconds=round(time.monotonic() - t, 1), rc=rc, out=out[-6000:])
    return rc, out


def user_env() -> dict:
    # RAY_UP_enable_autoscaler_v2=0: with Ray 2.60's default v2 autoscaler a
    # local-provider worker is never started (monitor.log lists only the head
    # after 8 minutes); v1 starts it. docs/cluster.md's on-prem steps say the same.
    return {**os.environ, **S3, "HOME": str(HOME), "PATH": f"{VENV}/bin:{os.environ['PATH']}",
            "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", "RAY_UP_enable_autoscaler_v2": "0"}


def private_machine() -> None:
    """Loopback up; a fresh home for root (not /root, which may hold the
    interpreter, e.g. pyenv), /tmp/ray and /run/sshd; the venv behind an
    overlay so `pip install -e` on the "nodes" changes nothing outside."""
    sh("ip link set lo up")
    HOME.mkdir(mode=0o700)
    passwd = [(f"root:x:0:0:root:{HOME}:/bin/bash" if line.startswith("root:") else line)
              for line in Path("/etc/passwd").read_text().splitlines()]
    (WORK / "passwd").write_text("\n".join(passwd) + "\n")
    sh(f"mount --bind {WORK / 'passwd'} /etc/passwd")
    for name, target in (("raytmp-client", Path("/tmp/ray")), ("run-sshd", Path("/run/sshd"))):
        (WORK / name).mkdir(parents=True, exist_ok=True)
        target.mkdir(parents=True, exist_ok=True)
        sh(f"mount --bind {WORK / name} {target}")
    os.chmod(WORK / "run-sshd", 0o755)
    (WORK / "venv-up").mkdir()
    (WORK / "venv-work").mkdir()
    sh(f"mount -t overlay overlay -o lowerdir={VENV},upperdir={WORK}/venv-up,workdir={WORK}/venv-work {VENV}")


def start_sshd() -> Path:
    """sshd for root on every loopback address; the nodes' login shells get the
    venv first on PATH (as a conda/venv activation in ~/.bash_profile would)
    and the S3 endpoint and keys (as a MinIO/Ceph user exports them)."""
    ssh = HOME / ".ssh"
    ssh.mkdir(mode=0o700)
    sh(f"ssh-keygen -q -t ed25519 -N '' -f {ssh}/id_ed25519")
    sh(f"ssh-keygen -q -t ed25519 -N '' -f {WORK}/host_key")
    (ssh / "authorized_keys").write_text((ssh / "id_ed25519.pub").read_text())
    os.chmod(ssh / "authorized_keys", 0o600)
    exports = "".join(f"export {k}={v}\n" for k, v in S3.items())
    (HOME / ".bashrc").write_text("")  # the launcher's commands source it
    (HOME / ".bash_profile").write_text(f"export PATH={VENV}/bin:$PATH\nexport RAY_USAGE_STATS_ENABLED=0\n"
                                        f"{exports}")
    shutil.copytree(HOME, WORKER_HOME, symlinks=True)  # keys and profile; `ray up` syncs its code there
    RO_STORE.mkdir()
    start_node("worker", WORKER_IP)  # first: it makes the veth pair the head's address lives on
    start_node("head", HEAD_IP)
    return ssh / "id_ed25519"


# The head shares this namespace's network (sshd, ray up's client and the S3
# server reach it on its veth address); the worker has a network namespace of
# its own, joined by a veth pair, so its Ray ports (8076, the agent's 52365
# ...) are its own, as on a separate machine.
HEAD_IP, WORKER_IP = "10.10.0.1", "10.10.0.2"


def start_node(node: str, ip: str) -> None:
    """A "machine": sshd on its own IP in its own PID and mount namespaces (the
    worker also in its own network namespace), with its own /tmp/ray, so the
    `ray stop` in a node's start commands sees only that node's processes. The
    worker also has a home of its own, as another machine would, and sees
    RO_STORE read-only (a storage mount it cannot write)."""
    (WORK / f"sshd-{node}").write_text(
        f"Port 22\nListenAddress {ip}\nHostKey {WORK}/host_key\nPermitRootLogin prohibit-password\n"
        f"UsePAM no\nPidFile {WORK}/sshd-{node}.pid\nStrictModes no\nMaxStartups 100\nMaxSessions 100\n"
        "Subsystem sftp internal-sftp\n")
    (WORK / f"raytmp-{node}").mkdir()
    net = []
    inner = f"mount --bind {WORK}/raytmp-{node} /tmp/ray && "
    if node == "worker":
        net = ["--net"]
        inner += (f"mount --bind {WORKER_HOME} {HOME} && mount --bind {RO_STORE} {RO_STORE} && "
                  f"mount -o remount,bind,ro {RO_STORE} && "
                  "until ip link show vw >/dev/null 2>&1; do sleep 0.05; done; ip link set lo up && "
                  f"ip addr add {ip}/24 dev vw && ip link set vw up && ")
    inner += f"exec /usr/sbin/sshd -D -f {WORK}/sshd-{node} -E {WORK}/sshd-{node}.log"
    p = subprocess.Popen(["unshare", "--pid", "--mount", *net, "--fork", "--mount-proc", "--kill-child",
                          "bash", "-c", inner])
    if node == "worker":  # unshare itself entered the new network namespace: hand it one end
        sh(f"ip link add vh type veth peer name vw && ip link set vw netns {p.pid} && "
           f"ip addr add {HEAD_IP}/24 dev vh && ip link set vh up")
    for _ in range(200):
        if subprocess.run(["bash", "-c", f"echo > /dev/tcp/{ip}/22"], stderr=subprocess.DEVNULL).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"sshd for {node} did not listen on {ip}:22")


def start_s3() -> None:
    log = open(WORK / "moto.log", "w")
    subprocess.Popen([str(VENV / "bin" / "moto_server"), "-H", "0.0.0.0", "-p", "5000"], stdout=log, stderr=log)
    import boto3
    os.environ.update(S3)
    for _ in range(100):
        try:
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError("moto_server did not start")


def local_config(key: Path) -> Path:
    """cluster.yaml with its cloud parts swapped for the local provider: the
    same file_mounts, setup and start commands. What a node type declares on
    AWS is given to `ray start` here: no CPU for trials on the head, 2 CPUs
    and 2 logical GPUs on the worker (so 0.25-GPU trials pack), each node its
    own IP, a small object store on this shared machine."""
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    for k in ("available_node_types", "head_node_type", "idle_timeout_minutes"):
        cfg.pop(k, None)
    cfg["provider"] = {"type": "local", "head_ip": HEAD_IP, "worker_ips": [WORKER_IP]}
    cfg["auth"] = {"ssh_user": "root", "ssh_private_key": str(key)}
    cfg["max_workers"] = cfg["min_workers"] = 1
    common = " --object-store-memory=150000000"
    head = cfg["head_start_ray_commands"]
    head[-1] += f" --num-cpus=0 --num-gpus=0 --node-ip-address={HEAD_IP} --include-dashboard=true" + common
    worker = cfg["worker_start_ray_commands"]
    worker[-1] += f" --num-cpus=2 --num-gpus=2 --node-ip-address={WORKER_IP}" + common
    worker[-1] = f"RAYLAB_FAULT_POINTS={POINTS} {worker[-1]}"  # the raylet's trial processes inherit it
    out = WORK / "cluster-local.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def doctor_steps(c: str, s3: str) -> None:
    """`raylab doctor` run on the head against the whole cluster: healthy, then with three faults
    on the worker at once (its ~/raylab-src edited, a storage folder it sees read-only, a batch
    its memory cannot hold), each a line of its own; `raylab run` refused while the worker's
    code differs. Trials on CPU: the worker's 2 GPUs are logical (for packing), and doctor would
    rightly say it has no CUDA."""
    job = "~/raylab-src/jobs/quickstart.py --data synthetic:200 --set device=cpu"
    step("doctor healthy", f"ray exec {c} 'raylab doctor --storage {s3}/doctor {job}'", timeout=300)
    edited = WORKER_HOME / "raylab-src" / "raylab" / "errors.py"
    original = edited.read_bytes()
    edited.write_bytes(original + b"# edited on the worker only\n")
    try:
        step("doctor faults", f"ray exec {c} 'raylab doctor --storage {RO_STORE} {job} --set batch_size=1000000'",
             timeout=300)
        step("run refused", f"ray submit {c} jobs/quickstart.py -- --storage {s3}/refused {FAST}")
        step("nothing written", f"python -c {shlex.quote(NOTHING)} {BUCKET} refused/")
    finally:
        edited.write_bytes(original)


# No object under the prefix: the refused run wrote nothing (not even study.json or a lease).
NOTHING = """
import sys, boto3
listed = boto3.client("s3").list_objects_v2(Bucket=sys.argv[1], Prefix=sys.argv[2])
keys = [o["Key"] for o in listed.get("Contents", [])]
assert not keys, keys
print("no objects under", sys.argv[2])
"""


def driver_pids(job: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"^python {HOME}/{job}"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def main() -> None:
    private_machine()
    key = start_sshd()
    start_s3()
    cfg = local_config(key)
    report("setup", seconds=0, rc=0, out=cfg.read_text())
    c = shlex.quote(str(cfg))
    s3 = f"s3://{BUCKET}"
    if step("ray up", f"ray up -y --no-config-cache {c}", timeout=300)[0] != 0:
        return
    step("ray submit quickstart", f"ray submit {c} jobs/quickstart.py -- --storage {s3}/submit {FAST}")
    doctor_steps(c, s3)
    step("ray submit assignment", f"ray submit {c} jobs/assignment.py -- --storage {s3}/submit {FAST} "
                                  "--only 'lab1_simplenn/*' --only 'lab2_swish/swish'")
    step("ray job submit", f"ray job submit --address http://{HEAD_IP}:8265 --working-dir . -- "
                           f"python jobs/quickstart.py --storage {s3}/job {FAST}")
    step("report", f"raylab report {s3}/submit/quickstart --out {WORK}/report && raylab status {s3}/submit/assignment")
    # A long sweep whose driver is killed mid-way, then resumed from S3 on the head. The first
    # trial to reach epoch 5 holds there (a fault point), so however fast this machine trains,
    # the driver is mid-sweep when a second driver meets its lease and when it is killed.
    POINTS.mkdir(exist_ok=True)
    (POINTS / "any.train.5").touch()
    long = f"--storage {s3}/resume --data synthetic:200 --epochs 40 --set threads=1 --set batch_size=50 --quiet"
    runner = subprocess.Popen(["bash", "-c", f"ray submit {c} jobs/quickstart.py -- {long}"], cwd=ROOT,
                              env=user_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t = time.monotonic()
    while time.monotonic() - t < 180 and not any(POINTS.glob("*.hit.*")):
        time.sleep(1)
    p = subprocess.run(["raylab", "status", f"{s3}/resume/quickstart"], env=user_env(), capture_output=True, text=True)
    counted = re.search(r"; (\d+) epoch rows", p.stdout) if p.returncode == 0 else None
    rows = int(counted.group(1)) if counted else 0
    step("second driver", f"ray exec {c} 'raylab resume {s3}/resume/quickstart --quiet'", timeout=120)
    pids = driver_pids("quickstart.py")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    runner.wait(timeout=60)
    held = sorted(h.name for h in POINTS.glob("*.hit.*"))
    report("killed driver", seconds=round(time.monotonic() - t, 1), rc=0,
           out=f"epoch rows {rows}, held {held}, pids {pids}")
    step("ray exec resume", f"ray exec {c} 'raylab resume {s3}/resume/quickstart --quiet'", timeout=300)
    step("check resumed", f"python -c {shlex.quote(CHECK)} {s3}/resume/quickstart 40")
    step("ray down", f"ray down -y {c}", timeout=120)
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main()
