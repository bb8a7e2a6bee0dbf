#!/usr/bin/env bash
# The Debian packages the tests need, in one place: `make test` and .ci/run call this.
#
#   scripts/system_deps.sh              install what is missing (root, or CI with sudo, and
#                                       apt-get); else print one line naming it and the fix
#   scripts/system_deps.sh --check PKG  exit 0 if PKG's tool is here, else print that line and
#                                       exit 1 (tests/conftest.py asks this before a test that
#                                       needs PKG, and skips with the line, or fails under CI)
#
# Outside CI (CI unset or false) a missing package is not an error: the tests that need it
# skip with the line. Under CI the install must succeed, and this exits 1 if it cannot.
# `make test SYSTEM_DEPS=no` does not call this at all.
set -uo pipefail
PATH="$PATH:/usr/sbin:/sbin"  # sshd and chattr live there; a user's PATH may lack them

# package  tool that proves it is installed       who needs it
PACKAGES=(
    "chromium        chromium"       # tests/test_report_reader.py renders report.html headless
    "openssh-server  sshd"           # tests/test_launcher.py: Ray's launcher reaches its nodes over ssh
    "openssh-client  ssh"            #   "
    "rsync           rsync"          #   " (ray up copies files to the nodes)
    "iproute2        ip"             #   " (the worker node's network namespace)
    "procps          pgrep"          #   "
    "e2fsprogs       chattr"         # tests/test_faults.py: a read-only folder for root (chattr +i)
)

in_ci() { case "${CI:-}" in ""|0|false|False|FALSE|no) return 1 ;; *) return 0 ;; esac; }

tool_of() {  # the tool that proves package $1 is installed
    local entry
    for entry in "${PACKAGES[@]}"; do
        set -- "$1" $entry
        [ "$1" = "$2" ] && { echo "$3"; return 0; }
    done
    echo "scripts/system_deps.sh: no package '$1' in its list" >&2
    exit 2
}

missing_of() {  # the packages among "$@" whose tool is not here
    local pkg out=()
    for pkg in "$@"; do
        # chattr only matters to root: others make folders read-only with chmod
        [ "$pkg" = e2fsprogs ] && [ "$EUID" != 0 ] && continue
        command -v "$(tool_of "$pkg")" >/dev/null 2>&1 || out+=("$pkg")
    done
    echo "${out[@]}"
}

the_line() {  # what is missing, and the command that installs it
    echo "raylab tests: missing Debian packages $*: install them with \`apt-get install -y --no-install-recommends $*\` as root (or run \`make test\` as root, which does); tests that need them skip, and fail under CI"
}

all_packages() { local entry; for entry in "${PACKAGES[@]}"; do set -- $entry; echo "$1"; done; }

if [ "${1:-}" = --check ]; then
    shift
    missing=$(missing_of "$@")
    [ -z "$missing" ] && exit 0
    the_line $missing
    exit 1
fi

missing=$(missing_of $(all_packages))
[ -z "$missing" ] && exit 0

if [ "$EUID" = 0 ]; then
    sudo=""
elif in_ci && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo"  # a CI runner that is not root but may sudo (GitHub's is)
else
    sudo="unable"
fi
if [ "$sudo" != unable ] && command -v apt-get >/dev/null 2>&1; then
    echo "raylab tests: installing Debian packages $missing (\`make test SYSTEM_DEPS=no\` skips this)"
    if $sudo apt-get update -qq >/dev/null &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
        missing=$(missing_of $missing)
    fi
    [ -z "$missing" ] && exit 0
fi
the_line $missing >&2
in_ci && exit 1
exit 0
