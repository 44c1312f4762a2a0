#!/usr/bin/env bash
# Installs everything ferry needs on a Debian 12 (bookworm) host. Run as root.
#
# - runc, iproute2, nftables, iptables, redis-server, redis-tools, iperf3 from bookworm;
# - CRIU >= 4.2, built from Debian's source package when no working CRIU >= 4.2 is present
#   (bookworm ships 3.17, which cannot run on kernels >= 6.x with rt vDSO changes).
#
# Idempotent: a second run checks and changes nothing. The package mirror is read from the
# system's apt sources; no host name is written here.
set -euo pipefail

FERRY_CRIU_PREFIX=${FERRY_CRIU_PREFIX:-/usr/local}
FERRY_CRIU_SUITE=${FERRY_CRIU_SUITE:-forky}
# Where the CRIU built here caches kernel facts (must match ferry's KDAT_DIR; the agent keeps
# a tmpfs there). A marker next to the binary records how it was built.
FERRY_CRIU_RUNDIR=/run/ferry/criu
FERRY_CRIU_MARKER="$FERRY_CRIU_PREFIX/share/ferry/criu-build"
FERRY_CRIU_BUILD="rundir=$FERRY_CRIU_RUNDIR"
WORK=${FERRY_DEPS_WORKDIR:-/var/cache/ferry/deps}
LOG_DIR=${WORK}/logs
mkdir -p "$LOG_DIR"

step() { printf '==> %s\n' "$*"; }

# run NAME CMD...: runs a step with its output in a log; on failure prints the step and the
# last lines of its log, then exits non-zero.
run() {
    local name=$1
    shift
    local log="$LOG_DIR/$name.log"
    if ! "$@" >"$log" 2>&1; then
        printf 'install-deps: step "%s" failed; last lines of %s:\n' "$name" "$log" >&2
        tail -n 25 "$log" | sed 's/^/    /' >&2
        exit 1
    fi
}

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: run this as root (for example: sudo $0)." >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# missing PKG...: prints the packages that dpkg does not report as installed.
missing() {
    local p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
            printf '%s\n' "$p"
        fi
    done
}

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        run apt-update apt-get update
        APT_UPDATED=1
    fi
}

apt_install() {
    local todo
    todo=$(missing "$@")
    [ -z "$todo" ] && return 0
    step "installing from Debian: $(echo $todo)"
    apt_update_once
    # shellcheck disable=SC2086
    run "apt-install" apt-get install -y --no-install-recommends $todo
}

RUNTIME_PKGS=(runc iproute2 nftables iptables redis-server redis-tools iperf3 procps kmod ethtool python3)
apt_install "${RUNTIME_PKGS[@]}"

# The container engines ferry moves containers of besides plain runc (docs/engines.md).
# Their packages would start system-wide daemons; nothing here wants those (the lab starts
# its own per host), so services are kept from starting while they install.
# apt_install_no_services PKG...: installs without starting the services they bring.
apt_install_no_services() {
    [ -n "$(missing "$@")" ] || return 0
    local placed_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# ferry install-deps: no service starts while packages install\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        placed_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt_install "$@"
    if [ "$placed_policy" = 1 ]; then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
}
ENGINE_PKGS=(podman containernetworking-plugins docker.io)
if [ "${FERRY_SKIP_ENGINES:-0}" != 1 ]; then
    apt_install_no_services "${ENGINE_PKGS[@]}"
fi

# ferry without agents goes over SSH (docs/ssh.md); the lab runs an OpenSSH server on
# each host, on the host's own address, so no system-wide server is started.
SSH_PKGS=(openssh-client openssh-server)
apt_install_no_services "${SSH_PKGS[@]}"

# Docker starts a container from a checkpoint (what ferry restores Docker's containers
# with) only with its experimental features on: set in the daemon's configuration, the
# rest of it kept. A running system daemon is restarted only when this changed it.
enable_docker_experimental() {
    command -v dockerd >/dev/null 2>&1 || return 0
    local changed
    changed=$(python3 - <<'PY'
import json, os
p = "/etc/docker/daemon.json"
try:
    with open(p) as f:
        conf = json.load(f)
except FileNotFoundError:
    conf = {}
if conf.get("experimental") is True:
    print("no")
else:
    conf["experimental"] = True
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p + ".ferry-tmp", "w") as f:
        json.dump(conf, f, indent=2)
        f.write("\n")
    os.replace(p + ".ferry-tmp", p)
    print("yes")
PY
    ) || {
        echo "install-deps: cannot set Docker's experimental features in /etc/docker/daemon.json; fix that file's JSON and run this again." >&2
        exit 1
    }
    if [ "$changed" = yes ]; then
        step "Docker: experimental features on (/etc/docker/daemon.json)"
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker 2>/dev/null; then
            run "docker-restart" systemctl restart docker
        fi
    fi
}
if [ "${FERRY_SKIP_ENGINES:-0}" != 1 ]; then
    enable_docker_experimental
fi

# The applications of the compatibility suite (tests/apps.rs, docs/compatibility.md).
# FERRY_SKIP_APPS=1 leaves them out.
APP_PKGS=(memcached nginx-light mariadb-server mariadb-client python3-pymysql postgresql
    nodejs openjdk-17-jdk-headless curl)
if [ "${FERRY_SKIP_APPS:-0}" != 1 ]; then
    apt_install "${APP_PKGS[@]}"
fi

# The Debian redis-server package starts a system-wide server; ferry's demo and tests start
# their own, so the packaged one is left as the system configured it.

# ---- CRIU -------------------------------------------------------------------------------

criu_ok() {
    local bin=$1 ver
    [ -x "$bin" ] || return 1
    ver=$("$bin" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1)
    [ -n "$ver" ] || return 1
    # version >= 4.2
    local major minor
    major=${ver%%.*}
    minor=$(echo "$ver" | cut -d. -f2)
    if [ "$major" -lt 4 ] || { [ "$major" -eq 4 ] && [ "${minor:-0}" -lt 2 ]; }; then
        return 1
    fi
    "$bin" check >/dev/null 2>&1
}

find_working_criu() {
    local c
    for c in "$FERRY_CRIU_PREFIX/sbin/criu" /usr/local/sbin/criu /usr/sbin/criu /usr/bin/criu; do
        # A CRIU this script built earlier, in another way, is built again.
        if [ "$c" = "$FERRY_CRIU_PREFIX/sbin/criu" ] && [ -e "$c" ] &&
            [ "$(cat "$FERRY_CRIU_MARKER" 2>/dev/null)" != "$FERRY_CRIU_BUILD" ]; then
            continue
        fi
        if criu_ok "$c"; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

# The mirror of the bookworm stanza in the system's deb822 sources (or a one-line source).
debian_mirror() {
    local f=/etc/apt/sources.list.d/debian.sources
    if [ -f "$f" ]; then
        awk '
            /^[[:space:]]*$/ { if (uri != "" && bw) { print uri; exit } uri=""; bw=0; next }
            /^URIs:/ { uri=$2 }
            /^Suites:/ { for (i=2;i<=NF;i++) if ($i=="bookworm") bw=1 }
            END { if (uri != "" && bw) print uri }
        ' "$f" | head -n1
        return 0
    fi
    grep -hE '^deb[[:space:]]+[^[:space:]]+[[:space:]]+bookworm[[:space:]]' /etc/apt/sources.list 2>/dev/null |
        awk '{print $2}' | head -n1
}

CRIU_BUILD_DEPS=(gcc make pkgconf xz-utils libc6-dev libprotobuf-c-dev protobuf-c-compiler
    libprotobuf-dev protobuf-compiler libnl-3-dev libnet1-dev libcap-dev libbsd-dev
    libnftables-dev libgnutls28-dev uuid-dev python3 dpkg-dev)
CRIU_RUNTIME_LIBS=(libprotobuf-c1 libnl-3-200 libnet1 libnftables1 libcap2 libbsd0 libgnutls30 libuuid1)

build_criu() {
    local mirror
    mirror=$(debian_mirror)
    if [ -z "$mirror" ]; then
        echo "install-deps: no bookworm mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list; add one and run again." >&2
        exit 1
    fi
    apt_install "${CRIU_BUILD_DEPS[@]}"

    # A private apt configuration: only a deb-src stanza for the newer suite, so no binary
    # package from it can be installed, and /etc/apt stays untouched.
    local apt_root="$WORK/apt"
    mkdir -p "$apt_root/sources" "$apt_root/lists/partial" "$apt_root/cache/archives/partial"
    cat >"$apt_root/sources/criu-src.sources" <<EOF
Types: deb-src
URIs: $mirror
Suites: $FERRY_CRIU_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    local apt_opts=(-o "Dir::Etc::SourceParts=$apt_root/sources" -o "Dir::Etc::SourceList=/dev/null"
        -o "Dir::State::Lists=$apt_root/lists" -o "Dir::Cache=$apt_root/cache"
        -o "Dir::State::status=/var/lib/dpkg/status")
    step "fetching CRIU source from Debian's $FERRY_CRIU_SUITE suite"
    run criu-src-update apt-get "${apt_opts[@]}" update
    local src="$WORK/criu-src"
    rm -rf "$src"
    mkdir -p "$src"
    (cd "$src" && run criu-src-fetch apt-get "${apt_opts[@]}" source --tar-only "criu/$FERRY_CRIU_SUITE")
    local tarball
    tarball=$(ls "$src"/criu_*.orig.tar.* | head -n1)
    run criu-unpack tar -C "$src" -xf "$tarball"
    local dir
    dir=$(find "$src" -maxdepth 1 -mindepth 1 -type d | head -n1)
    step "building CRIU in $dir"
    run criu-build make -C "$dir" -j"$(nproc)" RUNDIR="$FERRY_CRIU_RUNDIR" criu
    run criu-install make -C "$dir" PREFIX="$FERRY_CRIU_PREFIX" RUNDIR="$FERRY_CRIU_RUNDIR" install-criu
    mkdir -p "$(dirname "$FERRY_CRIU_MARKER")"
    echo "$FERRY_CRIU_BUILD" >"$FERRY_CRIU_MARKER"
    # Keep the libraries the binary links from being autoremoved.
    apt-mark manual "${CRIU_RUNTIME_LIBS[@]}" >/dev/null 2>&1 || true
}

if CRIU_BIN=$(find_working_criu); then
    :
else
    build_criu
    CRIU_BIN=$(find_working_criu) || {
        echo "install-deps: CRIU was built but '$FERRY_CRIU_PREFIX/sbin/criu check' fails; see $LOG_DIR and run '$FERRY_CRIU_PREFIX/sbin/criu check' for details." >&2
        exit 1
    }
    step "CRIU self-test: dump of a process holding a listening TCP socket"
    selftest_dir=$(mktemp -d)
    trap 'rm -rf "$selftest_dir"' EXIT
    setsid python3 -c 'import socket,time; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); time.sleep(60)' \
        </dev/null >/dev/null 2>&1 &
    pid=$!
    sleep 0.3
    run criu-selftest "$CRIU_BIN" dump -t "$pid" -D "$selftest_dir" --shell-job --leave-running -o dump.log -v1
    kill "$pid" 2>/dev/null || true
fi

echo "ferry dependencies ready: criu $("$CRIU_BIN" --version | sed -n 's/^Version: *//p') at $CRIU_BIN, runc $(runc --version | sed -n 's/^runc version //p')"
