"""scripts/system_deps.sh, run for real with a PATH the test controls: without apt-get it
prints one line and the tests it guards skip (fail under CI); with apt-get it installs
what is missing. The apt-get here is a stand-in in a folder of its own on PATH that
records its calls and puts the packages' tools next to itself, so nothing is installed
on this machine; docs/tests.md records the script installing the real packages."""
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SYSTEM_DEPS

# (package, tool) in the script's order: its PACKAGES list, read from the script itself.
PACKAGES = re.findall(r'^\s+"([\w.+-]+)\s+(\S+)"', SYSTEM_DEPS.read_text(), re.M)
SBIN = ("/usr/sbin", "/sbin")  # what the script adds to PATH


def absent(bin_dir: Path) -> list[str]:
    """The packages whose tool a PATH of bin_dir (plus the sbin folders) lacks; chattr counts for root only."""
    return [pkg for pkg, tool in PACKAGES if (pkg != "e2fsprogs" or os.geteuid() == 0)
            and not any(os.access(Path(d, tool), os.X_OK) for d in (bin_dir, *SBIN))]


FAKE_APT = """#!/bin/bash
# Records each call; `install` puts each package's tool beside this file, as dpkg would on PATH.
# Builtins only: the PATH it runs under holds nothing else.
here=${0%/*}
echo "$*" >> "$here/calls"
[ "$1" = install ] || exit 0
while read -r pkg tool; do
    for arg in "$@"; do
        if [ "$arg" = "$pkg" ]; then echo '#!/bin/bash' > "$here/$tool"; /bin/chmod +x "$here/$tool"; fi
    done
done < "$here/tools"
"""


def run_script(bin_dir: Path, *args: str, ci: bool = False) -> subprocess.CompletedProcess:
    """The script under bash with PATH = bin_dir only (it adds /usr/sbin and /sbin itself)."""
    env = {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/root"), **({"CI": "true"} if ci else {})}
    return subprocess.run(["/bin/bash", str(SYSTEM_DEPS), *args], capture_output=True, text=True, env=env,
                          timeout=60)


def assert_the_line(text: str, packages: list[str]) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    for pkg in packages:
        assert f" {pkg}" in lines[0], (pkg, lines[0])
    assert "apt-get install -y --no-install-recommends" in lines[0] and "as root" in lines[0], lines[0]
    return lines[0]


def test_without_apt_get_it_names_what_is_missing_in_one_line(tmp_path):
    (tmp_path / "bin").mkdir()
    missing = absent(tmp_path / "bin")
    assert {"chromium", "rsync"} <= set(missing)  # in /usr/bin, outside this PATH
    proc = run_script(tmp_path / "bin")
    assert proc.returncode == 0 and proc.stdout == "", proc  # outside CI: the tests skip instead
    assert_the_line(proc.stderr, missing)
    ci = run_script(tmp_path / "bin", ci=True)
    assert ci.returncode == 1 and ci.stderr == proc.stderr, ci  # under CI: an error
    check = run_script(tmp_path / "bin", "--check", "rsync")
    assert check.returncode == 1 and assert_the_line(check.stdout, ["rsync"]).count("rsync") == 2, check
    assert "chromium" not in check.stdout  # --check names only what it was asked about


@pytest.mark.skipif(os.geteuid() != 0, reason="the script installs only as root (or under CI with sudo)")
def test_with_apt_get_it_installs_what_is_missing_and_then_nothing(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(FAKE_APT)
    (bin_dir / "apt-get").chmod(stat.S_IRWXU)
    (bin_dir / "tools").write_text("".join(f"{pkg} {tool}\n" for pkg, tool in PACKAGES))
    missing = absent(bin_dir)
    proc = run_script(bin_dir)
    assert proc.returncode == 0 and proc.stderr == "", proc
    assert proc.stdout.startswith("raylab tests: installing Debian packages") and "SYSTEM_DEPS=no" in proc.stdout
    update, install = (bin_dir / "calls").read_text().splitlines()
    assert update.split()[0] == "update"
    assert install.split()[:4] == ["install", "-y", "-qq", "--no-install-recommends"]
    assert install.split()[4:] == missing  # exactly what was missing, in the script's order
    assert run_script(bin_dir, "--check", *missing).returncode == 0
    again = run_script(bin_dir)
    assert again.returncode == 0 and again.stdout == again.stderr == ""
    assert len((bin_dir / "calls").read_text().splitlines()) == 2  # nothing missing: apt-get not called


@pytest.mark.parametrize("ci, outcome", [(False, "1 skipped"), (True, "1 failed")])
def test_a_guarded_test_skips_outside_ci_and_fails_under_ci(tmp_path, ci, outcome):
    """The headless-Chromium test, run by pytest with a PATH that has no Chromium."""
    (tmp_path / "bin").mkdir()
    env = {**os.environ, "PATH": str(tmp_path / "bin")}
    env.pop("CI", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider",
                           "tests/test_report_reader.py::test_report_html_in_headless_chromium"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**env, **({"CI": "true"} if ci else {})})
    assert outcome in proc.stdout, proc.stdout[-3000:]
    assert "raylab tests: missing Debian packages chromium: install them with" in proc.stdout, proc.stdout[-3000:]
