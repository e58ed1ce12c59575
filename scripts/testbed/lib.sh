# shellcheck shell=bash
# shellcheck disable=SC2034 # the names are used by the scripts that source this file
# Shared by up.sh, down.sh and enter.sh: names, paths and small helpers of the deploy-kit testbed.
# Sourced, never run. Everything the testbed creates is named here, so down.sh stops exactly
# what up.sh started (by PID file) and nothing else.

S=${DK_TESTBED_DIR:-/var/lib/deploy-kit-testbed}
case $S in /*) ;; *) S=$PWD/$S ;; esac
S=${S%/}
# sshd, nginx and unix sockets need plain absolute paths; keep them short and unsurprising.
if [[ ! $S =~ ^/[A-Za-z0-9._/-]+$ ]]; then
  printf 'testbed: DK_TESTBED_DIR must be an absolute path of [A-Za-z0-9._/-] characters, got %q\n' "$S" >&2
  exit 1
fi
if ((${#S} > 60)); then
  printf 'testbed: DK_TESTBED_DIR is too long for unix socket paths (max 60 characters): %s\n' "$S" >&2
  exit 1
fi

BRIDGE=dk-br0
NET_PREFIX=10.200.0
GATEWAY=$NET_PREFIX.1
REGISTRY_PLAIN=$GATEWAY:5000
REGISTRY_AUTH=$GATEWAY:5001
REGISTRY_LOOPBACK=127.0.0.1:5002
REGISTRY_USER=dk
PG_PORT=55432
NGINX_PORT=8088
NGINX_SWITCH_PORT=8089
BASE_IMAGE=deploy-kit/debian:bookworm
# Bump when the base image recipe changes: the cached tar is keyed by it.
BASE_RECIPE=v1
BASE_TAR=$S/cache/debian-bookworm-$BASE_RECIPE.tar
# Compose v2 and buildx, pinned: Debian 13's packages (see up.sh, section 2).
COMPOSE_V2_DEB=2.26.1-4
BUILDX_DEB=0.13.1+ds1-3
# The Debian mirror this machine's apt uses (the trixie list and debootstrap use the same).
debian_mirror() {
  local m
  m=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
    grep -oE 'https?://[^ ]+' | head -n 1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# The testbed's own engine, used only when an existing /var/run/docker.sock does not trust the
# testbed registries (see up.sh): it lives in its own namespaces at this address.
# The host behind a bastion: its own network behind h1 (BASTION_GW is h1's side of the link).
BASTION_NET=10.201.0
BASTION_GW=$BASTION_NET.1
BASTIONED_NODE=dk-hb
BASTIONED_ADDRESS=$BASTION_NET.2
BASTIONED_DIR=$S/bastioned
LOCAL_NODE=dk-local
LOCAL_NODE_ADDRESS=$NET_PREFIX.254
MAX_HOSTS=200

EPOCH0=${EPOCHREALTIME/,/.}

log() {
  local now=${EPOCHREALTIME/,/.}
  awk -v a="$EPOCH0" -v b="$now" -v m="$*" 'BEGIN { printf "[testbed %6.1fs] %s\n", b - a, m }' >&2
}
die() {
  printf 'testbed: %s\n' "$*" >&2
  exit 1
}
elapsed() { awk -v a="$EPOCH0" -v b="${EPOCHREALTIME/,/.}" 'BEGIN { printf "%.1f", b - a }'; }

host_dir() { echo "$S/hosts/$1"; }
host_netns() { echo "dk-h$1"; }
host_address() { echo "$NET_PREFIX.$((1 + $1))"; }
node_mountns() { echo "$S/ns/$1"; }

# pid_alive FILE COMM: the process named in FILE is running and is COMM (guards against PID reuse).
pid_alive() {
  local file=$1 comm=$2 pid
  [[ -s $file ]] || return 1
  pid=$(<"$file") # dockerd writes no trailing newline: `read` would report failure
  pid=${pid//[[:space:]]/}
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  running "$pid" || return 1
  local actual
  read -r actual <"/proc/$pid/comm" || return 1
  [[ $actual == "$comm"* ]]
}

# docker_ping SOCKET: the engine behind the unix socket answers.
docker_ping() { curl -sf --max-time 2 --unix-socket "$1" http://docker/_ping >/dev/null 2>&1; }

# in_node NODE CMD...: run CMD inside a node's network and mount namespaces.
in_node() {
  local node=$1
  shift
  nsenter --net="/run/netns/$node" --mount="$S/ns/$node" --uts="$S/ns/$node.uts" -- "$@"
}

mounted_at() { # PATH: something is mounted exactly there
  awk -v p="$1" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# running PID: the process exists and is not a zombie (PID 1 here may reap orphans late).
running() {
  local stat
  # cat, not $(<...): a missing file there is a fatal expansion error under set -e, which made
  # up.sh exit 1 instead of restarting a daemon whose PID file names a dead process.
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# stop_pid FILE COMM [SIGNAL] [WAIT_SECONDS]: stop one process we started, by its PID file.
stop_pid() {
  local file=$1 comm=$2 sig=${3:-TERM} wait=${4:-10} pid i
  if pid_alive "$file" "$comm"; then
    pid=$(<"$file")
    pid=${pid//[[:space:]]/}
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < wait * 10; i++)); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      log "$comm ($pid) did not stop in ${wait}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$file"
}

# stop_node NODE DIR: stop a node's sshd, nginx and dockerd, every process left in its network
# namespace (container shims), then remove its namespaces and veth.
stop_node() {
  local node=$1 dir=$2 pid pids
  stop_pid "$dir/nginx/nginx.pid" nginx QUIT 10
  stop_pid "$dir/run/sshd.pid" sshd TERM 5
  stop_pid "$dir/run/dockerd.pid" dockerd TERM 30
  if [[ -e /run/netns/$node ]]; then
    # Whatever still runs in the namespace was started by the testbed (a container shim, a test's
    # process); stop those PIDs one by one.
    pids=$(ip netns pids "$node" 2>/dev/null || true)
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
    [[ -z $pids ]] || sleep 0.5
    pids=$(ip netns pids "$node" 2>/dev/null || true)
    for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
  fi
  local mnt
  for mnt in "$S/ns/$node" "$S/ns/$node.uts"; do
    if mounted_at "$mnt"; then umount "$mnt" 2>/dev/null || umount -l "$mnt"; fi
    rm -f "$mnt"
  done
  if [[ -e /run/netns/$node ]]; then ip netns del "$node"; fi
  ip link del "$node-br" 2>/dev/null || true
}

# unmount_under DIR: lazily unmount anything left mounted below DIR before removing it.
unmount_under() {
  local m
  awk -v p="$1/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}
