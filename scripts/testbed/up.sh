#!/usr/bin/env bash
# Brings up the deploy-kit testbed on this machine: real "remote servers" made of Linux namespaces,
# each with its own address, sshd, dockerd and /srv; two registries (plain and basic-auth);
# PostgreSQL 15; nginx on host 1; a Debian base image. Idempotent: a second run while everything is
# up restarts nothing and takes about a second. Writes $DK_TESTBED_DIR/testbed.json and env.sh.
#
#   DK_TESTBED_DIR    state directory (default /var/lib/deploy-kit-testbed; caches live here)
#   DK_TESTBED_HOSTS  number of hosts (default 2); re-running with a larger number adds hosts
#                     (never removes any: `down.sh` then `up.sh` to shrink)
#
# Traffic only ever goes to loopback and to 10.200.0.x addresses this script creates.
set -euo pipefail
shopt -s nullglob

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

N=${DK_TESTBED_HOSTS:-2}
if [[ ! $N =~ ^[0-9]+$ ]] || ((N < 1 || N > MAX_HOSTS)); then
  die "DK_TESTBED_HOSTS must be a number from 1 to $MAX_HOSTS, got '$N'"
fi

# ---------------------------------------------------------------------------------------------
# 1. Preconditions and packages
# ---------------------------------------------------------------------------------------------
if [[ $(id -u) != 0 ]]; then
  die "the testbed needs root on Debian: run it as root (sudo bash scripts/testbed/up.sh); it creates network namespaces, a bridge and daemons"
fi
if [[ ! -r /etc/debian_version ]] || ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
  die "the testbed needs root on Debian: apt-get/dpkg and /etc/debian_version were not found on this machine"
fi

# The daemons started below must not inherit the caller's descriptors (a `flock FILE npm test`
# lock would otherwise be held by dockerd and sshd forever): close everything above stderr.
for fd in /proc/$$/fd/*; do
  fd=${fd##*/}
  # 255 is the shell's own handle on this script.
  if ((fd > 2 && fd < 255)); then eval "exec $fd>&-" 2>/dev/null || true; fi
done

mkdir -p "$S"
chmod 0755 "$S"
exec 9>"$S/.lock"
if ! flock -n 9; then
  log "another up.sh/down.sh holds $S/.lock; waiting"
  flock 9
fi

PACKAGES=(
  docker.io docker-compose docker-registry openssh-server openssh-client apache2-utils
  busybox-static postgresql postgresql-client nginx debootstrap iproute2 iptables skopeo wrk
  curl ca-certificates util-linux debian-archive-keyring qemu-user-static binfmt-support
)
missing_packages() {
  local have
  have=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null || true)
  local p
  for p in "${PACKAGES[@]}"; do
    [[ $'\n'$have$'\n' == *$'\n'"$p ii "* ]] || echo "$p"
  done
}
mapfile -t MISSING < <(missing_packages)
if ((${#MISSING[@]})); then
  log "installing Debian packages: ${MISSING[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep apt from starting system services (a system dockerd or a registry on :5000 would get in the way).
  made_policy=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq || { [[ -z $made_policy ]] || rm -f /usr/sbin/policy-rc.d; die "apt-get update failed"; }
  if ! apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >"$S/apt.log" 2>&1; then
    [[ -z $made_policy ]] || rm -f /usr/sbin/policy-rc.d
    tail -n 30 "$S/apt.log" >&2
    die "apt-get install ${MISSING[*]} failed (log: $S/apt.log)"
  fi
  [[ -z $made_policy ]] || rm -f /usr/sbin/policy-rc.d
  log "packages installed"
fi

PG_BIN=
for d in /usr/lib/postgresql/*/bin; do PG_BIN=$d; done
[[ -x $PG_BIN/pg_ctl ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"

# ---------------------------------------------------------------------------------------------
# 2. Compose v2 and buildx: the Docker CLI plugins users' servers and runners have
# ---------------------------------------------------------------------------------------------
# Debian 12 ships neither; Debian 13 has both, built against a glibc Debian 12 satisfies. Only these
# two .debs are fetched (through a source list of their own, verified by apt against Debian's
# keyring), unpacked, and their plugin binaries kept in the cache: nothing else moves to trixie.
# The machine (the "runner") gets compose v2 and buildx. Each host gets its own plugin directory,
# bind-mounted over /usr/local/lib/docker/cli-plugins in its mount namespace, holding compose v2,
# or the v1 shim when DK_TESTBED_COMPOSE=v1 (the legacy path, still supported and tested).
PLUGIN_DEBS=("docker-compose=$COMPOSE_V2_DEB" "docker-buildx=$BUILDX_DEB")
PLUGINS=$S/cache/plugins
plugin_ok() { [[ -x $PLUGINS/$1 && -s $PLUGINS/$1.version && $(<"$PLUGINS/$1.version") == "$2" ]]; }
if ! plugin_ok docker-compose "$COMPOSE_V2_DEB" || ! plugin_ok docker-buildx "$BUILDX_DEB"; then
  T=$S/cache/trixie
  rm -rf "$T"
  mkdir -p "$T/lists/partial" "$T/cache/archives/partial" "$T/x"
  mirror=$(debian_mirror)
  echo "deb $mirror trixie main" >"$T/sources.list"
  APT_T=(-o "Dir::Etc::sourcelist=$T/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$T/lists"
    -o "Dir::Cache=$T/cache" -o Debug::NoLocking=1)
  log "fetching ${PLUGIN_DEBS[*]} from Debian 13 ($mirror)"
  apt-get "${APT_T[@]}" update -qq >"$T/apt.log" 2>&1 || { tail -n 20 "$T/apt.log" >&2; die "apt-get update of the trixie list failed (log: $T/apt.log)"; }
  (cd "$T" && apt-get "${APT_T[@]}" download "${PLUGIN_DEBS[@]}" >>"$T/apt.log" 2>&1) ||
    { tail -n 20 "$T/apt.log" >&2; die "apt-get download ${PLUGIN_DEBS[*]} failed (log: $T/apt.log)"; }
  for deb in "$T"/*.deb; do dpkg-deb -x "$deb" "$T/x"; done
  mkdir -p "$PLUGINS"
  for p in docker-compose docker-buildx; do
    [[ -x $T/x/usr/libexec/docker/cli-plugins/$p ]] || die "$p is not in the downloaded package (looked in usr/libexec/docker/cli-plugins)"
    install -m 0755 "$T/x/usr/libexec/docker/cli-plugins/$p" "$PLUGINS/$p"
  done
  echo "$COMPOSE_V2_DEB" >"$PLUGINS/docker-compose.version"
  echo "$BUILDX_DEB" >"$PLUGINS/docker-buildx.version"
  rm -rf "$T"
  log "compose $("$PLUGINS/docker-compose" version --short) and buildx $("$PLUGINS/docker-buildx" version | awk '{print $2}') cached in $PLUGINS"
fi
# The v1 shim: `docker compose` -> /usr/bin/docker-compose (Python), for hosts on the legacy path.
# shellcheck disable=SC2016 # the shim's own variables, expanded when it runs
SHIM_TEXT='#!/bin/sh
# deploy-kit testbed: `docker compose` -> docker-compose v1 (the legacy path).
if [ "${1:-}" = docker-cli-plugin-metadata ]; then
  printf %s "{\"SchemaVersion\":\"0.1.0\",\"Vendor\":\"deploy-kit testbed\",\"Version\":\"1.29.2\",\"ShortDescription\":\"Docker Compose v1 behind the v2 plugin interface\"}"
  exit 0
fi
# The docker CLI passes the plugin name first.
[ "${1:-}" = compose ] && shift
exec /usr/bin/docker-compose "$@"'
[[ -e $PLUGINS/compose-v1-shim && $(<"$PLUGINS/compose-v1-shim") == "$SHIM_TEXT" ]] ||
  { printf '%s\n' "$SHIM_TEXT" >"$PLUGINS/compose-v1-shim" && chmod 0755 "$PLUGINS/compose-v1-shim"; }
MACHINE_PLUGINS=/usr/local/lib/docker/cli-plugins
mkdir -p "$MACHINE_PLUGINS"
for p in docker-compose docker-buildx; do
  # An earlier testbed's v1 shim, or an older copy: replace; someone else's plugin: leave alone.
  if [[ ! -e $MACHINE_PLUGINS/$p ]] || grep -q 'deploy-kit testbed' "$MACHINE_PLUGINS/$p" 2>/dev/null ||
    [[ -s $MACHINE_PLUGINS/.deploy-kit-$p && $(<"$MACHINE_PLUGINS/.deploy-kit-$p") != "$(<"$PLUGINS/$p.version")" ]]; then
    install -m 0755 "$PLUGINS/$p" "$MACHINE_PLUGINS/$p"
    cp "$PLUGINS/$p.version" "$MACHINE_PLUGINS/.deploy-kit-$p"
    log "installed $p $(<"$PLUGINS/$p.version") into $MACHINE_PLUGINS"
  fi
done
HOST_COMPOSE=${DK_TESTBED_COMPOSE:-v2}
case $HOST_COMPOSE in
  v2) HOST_COMPOSE_BIN=$PLUGINS/docker-compose ;;
  v1) HOST_COMPOSE_BIN=$PLUGINS/compose-v1-shim ;;
  *) die "DK_TESTBED_COMPOSE must be v1 or v2, got '$HOST_COMPOSE'" ;;
esac

# ---------------------------------------------------------------------------------------------
# 2b. Foreign platforms: QEMU registered with binfmt_misc (flag F, so it works inside build
# containers), and an arm64 busybox-static from Debian's arm64 archive for multi-platform images.
# ---------------------------------------------------------------------------------------------
mounted_at /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
  die "cannot mount binfmt_misc (needed to run arm64 build steps under QEMU)"
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
fi
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || die "qemu-aarch64 is not registered with binfmt_misc (update-binfmts --enable qemu-aarch64 failed)"
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
  die "qemu-aarch64 is registered without the F flag: arm64 build steps would not run inside containers"
ARM64_BUSYBOX=$S/cache/arm64/busybox
if [[ ! -x $ARM64_BUSYBOX ]]; then
  A=$S/cache/arm64
  rm -rf "$A/apt" "$A/x"
  mkdir -p "$A/apt/lists/partial" "$A/apt/cache/archives/partial" "$A/x"
  echo "deb [arch=arm64] $(debian_mirror) bookworm main" >"$A/apt/sources.list"
  APT_A=(-o "Dir::Etc::sourcelist=$A/apt/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$A/apt/lists"
    -o "Dir::Cache=$A/apt/cache" -o Debug::NoLocking=1 -o APT::Architecture=arm64 -o APT::Architectures=arm64)
  log "fetching the arm64 busybox-static from Debian's arm64 archive"
  { apt-get "${APT_A[@]}" update -qq && (cd "$A/apt" && apt-get "${APT_A[@]}" download busybox-static); } >"$A/apt.log" 2>&1 ||
    { tail -n 20 "$A/apt.log" >&2; die "fetching the arm64 busybox-static failed (log: $A/apt.log)"; }
  dpkg-deb -x "$A"/apt/busybox-static_*_arm64.deb "$A/x"
  install -m 0755 "$A/x/bin/busybox" "$ARM64_BUSYBOX"
  rm -rf "$A/apt" "$A/x"
fi
[[ $("$ARM64_BUSYBOX" uname -m) == aarch64 ]] || die "the arm64 busybox does not run under QEMU ($ARM64_BUSYBOX)"

# ---------------------------------------------------------------------------------------------
# Identity: the deploy user, the deploy key, the registry password (generated once, kept by down.sh)
# ---------------------------------------------------------------------------------------------
if ! id deploy >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash --groups docker deploy
  log "created user deploy"
fi
[[ " $(id -nG deploy) " == *" docker "* ]] || usermod -aG docker deploy
# New accounts are locked ("!"); sshd with UsePAM no refuses locked accounts even for keys.
[[ $(getent shadow deploy | cut -d: -f2) == '*' ]] || usermod -p '*' deploy
[[ $(getent passwd deploy | cut -d: -f7) == /bin/bash ]] || usermod -s /bin/bash deploy
DEPLOY_UID=$(id -u deploy)
DEPLOY_GID=$(id -g deploy)

SECRETS=$S/secrets
mkdir -p "$SECRETS"
chmod 0700 "$SECRETS"
DEPLOY_KEY=$SECRETS/deploy_ed25519
if [[ ! -s $DEPLOY_KEY ]]; then
  rm -f "$DEPLOY_KEY" "$DEPLOY_KEY.pub"
  ssh-keygen -q -t ed25519 -N '' -C deploy-kit-testbed-deploy -f "$DEPLOY_KEY"
fi
chmod 0600 "$DEPLOY_KEY"
REGISTRY_PASSWORD_FILE=$SECRETS/registry-password
if [[ ! -s $REGISTRY_PASSWORD_FILE ]]; then
  (umask 077 && od -An -tx1 -N12 /dev/urandom | tr -d ' \n' >"$REGISTRY_PASSWORD_FILE")
fi
chmod 0600 "$REGISTRY_PASSWORD_FILE"
REGISTRY_PASSWORD=$(<"$REGISTRY_PASSWORD_FILE")
REGISTRY_SECRET_FILE=$SECRETS/registry-http-secret
[[ -s $REGISTRY_SECRET_FILE ]] || (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$REGISTRY_SECRET_FILE")

mkdir -p "$S/run" "$S/ns" "$S/hosts" "$S/cache"

# ---------------------------------------------------------------------------------------------
# 4. Network: the bridge, and per node a network namespace + a persistent mount namespace
# ---------------------------------------------------------------------------------------------
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge
  log "created bridge $BRIDGE"
fi
[[ $(ip -4 -o addr show dev "$BRIDGE") == *" $GATEWAY/24 "* ]] || ip addr add "$GATEWAY/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
# Docker loads br_netfilter and sets FORWARD to DROP: let the hosts talk to each other (jump hosts).
iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null ||
  iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT

# The directory holding the mount-namespace files must be a private mount (see unshare(1)).
if ! mounted_at "$S/ns"; then
  mount --bind "$S/ns" "$S/ns"
fi
mount --make-private "$S/ns"

# ensure_node NODE ADDRESS DIR HOSTNAME: network namespace NODE with ADDRESS on a veth to the bridge,
# a UTS namespace (file $S/ns/NODE.uts) with its own hostname, and a mount namespace (file
# $S/ns/NODE) in which DIR/srv is /srv, DIR/home is /home/deploy, DIR/tmp is /tmp, DIR/etc-docker is
# /etc/docker and /run is a private tmpfs, so each host has its own filesystem where it matters.
# With VIA (another node), the node is not on the bridge: its only link is a veth into VIA's
# network namespace (VIA routes and masquerades for it), so the machine has no route to it.
ensure_node() {
  local node=$1 address=$2 dir=$3 name=$4 via=${5:-} veth=$1-br
  local in_uplink=(ip)
  [[ -z $via ]] || in_uplink=(ip -n "$via")
  if [[ ! -e /run/netns/$node ]]; then
    "${in_uplink[@]}" link del "$veth" 2>/dev/null || true
    ip netns add "$node"
  fi
  if ! "${in_uplink[@]}" link show "$veth" >/dev/null 2>&1; then
    ip -n "$node" link del eth0 2>/dev/null || true
    ip link add "$veth" type veth peer name eth0 netns "$node"
    if [[ -z $via ]]; then
      ip link set "$veth" master "$BRIDGE" up
    else
      ip link set "$veth" netns "$via"
    fi
  fi
  [[ $(ip -n "$node" -4 -o addr show dev eth0) == *" $address/24 "* ]] || ip -n "$node" addr add "$address/24" dev eth0
  ip -n "$node" link set lo up
  ip -n "$node" link set eth0 up
  if [[ -n $via ]]; then
    [[ $(ip -n "$via" -4 -o addr show dev "$veth") == *" $BASTION_GW/24 "* ]] || ip -n "$via" addr add "$BASTION_GW/24" dev "$veth"
    ip -n "$via" link set "$veth" up
    ip -n "$node" route replace "$NET_PREFIX.0/24" via "$BASTION_GW"
    nsenter --net="/run/netns/$via" sysctl -qw net.ipv4.ip_forward=1
    # The engine of VIA sets FORWARD to DROP: let the inner host out (and the answers back in).
    local r
    for r in "FORWARD -i $veth -j ACCEPT" "FORWARD -o $veth -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"; do
      # shellcheck disable=SC2086 # each rule is words
      nsenter --net="/run/netns/$via" iptables -C $r 2>/dev/null || nsenter --net="/run/netns/$via" iptables -I $r
    done
    nsenter --net="/run/netns/$via" iptables -t nat -C POSTROUTING -s "$BASTION_NET.0/24" -o eth0 -j MASQUERADE 2>/dev/null ||
      nsenter --net="/run/netns/$via" iptables -t nat -A POSTROUTING -s "$BASTION_NET.0/24" -o eth0 -j MASQUERADE
  fi

  mkdir -p "$dir/srv" "$dir/home/.ssh" "$dir/tmp" "$dir/run" "$dir/etc-docker"
  chmod 1777 "$dir/tmp"
  chown "$DEPLOY_UID:$DEPLOY_GID" "$dir/srv" "$dir/home" "$dir/home/.ssh"
  chmod 0700 "$dir/home/.ssh"
  if [[ ! -s $dir/home/.ssh/authorized_keys ]] || ! cmp -s "$DEPLOY_KEY.pub" "$dir/home/.ssh/authorized_keys"; then
    install -m 0600 -o "$DEPLOY_UID" -g "$DEPLOY_GID" "$DEPLOY_KEY.pub" "$dir/home/.ssh/authorized_keys"
  fi

  local mnt=$S/ns/$node uts=$S/ns/$node.uts
  if ! mounted_at "$mnt" || ! mounted_at "$uts"; then
    for f in "$mnt" "$uts"; do
      if mounted_at "$f"; then umount "$f" 2>/dev/null || umount -l "$f"; fi
      : >"$f"
    done
    # shellcheck disable=SC2016 # a script run inside the new namespaces, with its own arguments
    unshare --mount="$mnt" --uts="$uts" --propagation private /bin/bash -euc '
      S=$1 dir=$2
      hostname "$3"
      # The copy of the mount table brought along other nodes'"'"' namespace files and docker
      # overlays from under the state directory, and /run/netns: drop them in this namespace.
      awk -v p="$S/" '"'"'index($5, p) == 1 { print $5 }'"'"' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
      umount -l /run/netns 2>/dev/null || true
      mount -t tmpfs -o mode=0755,size=64m dk-run /run
      mkdir -p /run/sshd /run/lock
      chmod 0755 /run/sshd
      chmod 1777 /run/lock
      mkdir -p /srv /home/deploy
      mount --bind "$dir/srv" /srv
      mount --bind "$dir/home" /home/deploy
      mount --bind "$dir/tmp" /tmp
      mkdir -p /etc/docker
      mount --bind "$dir/etc-docker" /etc/docker
    ' ns-setup "$S" "$dir" "$name"
    log "created namespaces for $node ($address)"
  fi
}

# clear_hard_stop_leftovers NODE DIR: what an engine that was killed (not stopped) leaves behind.
# Its containers' processes, its docker-proxy processes and its NAT rules outlive it, and would go
# on answering the published ports with the old release; the exec-root holds dead shims' sockets
# that make the next containerd time out. The engine is not running when this is called.
clear_hard_stop_leftovers() {
  local node=$1 dir=$2 netns pid
  netns=$(stat -Lc %i "/run/netns/$node" 2>/dev/null) || netns=""
  for pid in $(pgrep -x docker-proxy || true); do
    [[ -n $netns && $(stat -Lc %i "/proc/$pid/ns/net" 2>/dev/null) == "$netns" ]] && kill -9 "$pid" 2>/dev/null || true
  done
  # A container's processes run on this engine's storage: their root is an overlay under DIR/docker.
  for pid in $(grep -l ':/docker/' /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3); do
    grep -qF "$dir/docker/" "/proc/$pid/mountinfo" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  done
  if [[ -n $netns ]]; then
    nsenter --net="/run/netns/$node" iptables -t nat -F 2>/dev/null || true
    nsenter --net="/run/netns/$node" iptables -t nat -X 2>/dev/null || true
  fi
  rm -rf "$dir/run/dx" 2>/dev/null || true
}

# start_dockerd NODE DIR: the node's own engine, socket DIR/docker.sock (also /run/docker.sock inside).
start_dockerd() {
  local node=$1 dir=$2
  if pid_alive "$dir/run/dockerd.pid" dockerd; then return 0; fi
  rm -f "$dir/docker.sock" "$dir/run/dockerd.pid"
  clear_hard_stop_leftovers "$node" "$dir"
  mkdir -p "$dir/docker" "$dir/run/dx"
  # Started directly (not through a function) so no subshell lingers; fd 9 (the lock) is closed.
  nsenter --net="/run/netns/$node" --mount="$S/ns/$node" --uts="$S/ns/$node.uts" -- setsid /usr/sbin/dockerd \
    --data-root "$dir/docker" --exec-root "$dir/run/dx" --pidfile "$dir/run/dockerd.pid" \
    -H "unix://$dir/docker.sock" -H unix:///run/docker.sock --group docker \
    --insecure-registry "$REGISTRY_PLAIN" --insecure-registry "$REGISTRY_AUTH" \
    --shutdown-timeout 5 --log-opt max-size=10m \
    >>"$dir/dockerd.log" 2>&1 </dev/null 9>&- &
  STARTED+=("dockerd $node")
}

wait_dockerd() { # NODE DIR
  local node=$1 dir=$2 i
  for ((i = 0; i < 600; i++)); do
    docker_ping "$dir/docker.sock" && return 0
    sleep 0.1
  done
  tail -n 20 "$dir/dockerd.log" >&2 || true
  die "the docker engine of $node did not answer on $dir/docker.sock within 60s (log: $dir/dockerd.log)"
}

STARTED=()

# host_plugins NODE DIR: the host's own Docker CLI plugin directory (compose v2 or the v1 shim),
# bind-mounted over the machine's in the host's mount namespace. Switching is a symlink swap.
host_plugins() {
  local node=$1 dir=$2
  mkdir -p "$dir/cli-plugins"
  if [[ $(readlink "$dir/cli-plugins/docker-compose" 2>/dev/null) != "$HOST_COMPOSE_BIN" ]]; then
    ln -sfn "$HOST_COMPOSE_BIN" "$dir/cli-plugins/docker-compose"
    log "h${node#dk-h}: docker compose is $HOST_COMPOSE"
  fi
  echo "$HOST_COMPOSE" >"$dir/compose-flavor"
  # shellcheck disable=SC2016 # expanded by the inner shell
  nsenter --mount="$S/ns/$node" -- /bin/sh -c 'grep -q " /usr/local/lib/docker/cli-plugins " /proc/self/mountinfo ||
    { mkdir -p /usr/local/lib/docker/cli-plugins && mount --bind "$1" /usr/local/lib/docker/cli-plugins; }' sh "$dir/cli-plugins"
}

# ---------------------------------------------------------------------------------------------
# 3. The local docker engine (the "CI runner" side: builds and pushes)
# ---------------------------------------------------------------------------------------------
LOCAL_DOCKER_HOST=unix:///var/run/docker.sock
LOCAL_DOCKER_ADDRESS=127.0.0.1
LOCAL_PIDFILE=$S/run/dockerd.pid
trusts_testbed_registries() {
  local info
  info=$(curl -sf --max-time 5 --unix-socket "$1" http://docker/info 2>/dev/null) || return 1
  [[ $info == *"\"$REGISTRY_PLAIN\""* && $info == *"\"$REGISTRY_AUTH\""* ]]
}
USE_LOCAL_NODE=
if pid_alive "$LOCAL_PIDFILE" dockerd; then
  : # ours, already running
elif docker_ping /var/run/docker.sock; then
  if ! trusts_testbed_registries /var/run/docker.sock; then
    # Someone else's engine that does not trust http://10.200.0.1:5000: do not reconfigure it;
    # run the testbed's own engine in its own namespaces instead.
    USE_LOCAL_NODE=1
  fi
else
  rm -f "$LOCAL_PIDFILE"
  rm -rf "$S/run/local-dx" 2>/dev/null || true # runtime state only; stale after a hard stop
  mkdir -p "$S/local/docker" "$S/run/local-dx"
  setsid /usr/sbin/dockerd --data-root "$S/local/docker" --exec-root "$S/run/local-dx" \
    --pidfile "$LOCAL_PIDFILE" -H unix:///var/run/docker.sock --group docker \
    --insecure-registry "$REGISTRY_PLAIN" --insecure-registry "$REGISTRY_AUTH" \
    >>"$S/local/dockerd.log" 2>&1 </dev/null 9>&- &
  STARTED+=("local dockerd")
fi
if [[ -e $S/local/use-node ]] || [[ -n $USE_LOCAL_NODE ]]; then
  USE_LOCAL_NODE=1
  LOCAL_DIR=$S/local/node
  mkdir -p "$LOCAL_DIR" && touch "$S/local/use-node"
  log "/var/run/docker.sock does not trust $REGISTRY_PLAIN; using the testbed's own engine at $LOCAL_NODE_ADDRESS"
  ensure_node "$LOCAL_NODE" "$LOCAL_NODE_ADDRESS" "$LOCAL_DIR" "$LOCAL_NODE"
  start_dockerd "$LOCAL_NODE" "$LOCAL_DIR"
  LOCAL_DOCKER_HOST=unix://$LOCAL_DIR/docker.sock
  LOCAL_DOCKER_ADDRESS=$LOCAL_NODE_ADDRESS
fi

# ---------------------------------------------------------------------------------------------
# 4-5. Hosts: namespaces, dockerd, sshd
# ---------------------------------------------------------------------------------------------
# Additive: hosts that already exist beyond N stay up (a benchmark may have asked for 10 while a
# test asks for the default); down.sh then up.sh shrinks the testbed.
for d in "$S"/hosts/*/; do
  i=$(basename "$d")
  [[ $i =~ ^[0-9]+$ ]] || continue
  if ((i > N)) && [[ -e /run/netns/$(host_netns "$i") ]]; then N=$i; fi
done

write_sshd_config() { # NAME DIR ADDRESS
  local i=$1 dir=$2 address=$3
  cat <<EOF
# deploy-kit testbed host $i ($address); generated by scripts/testbed/up.sh
Port 22
ListenAddress $address
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/run/sshd.pid
LogLevel VERBOSE
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers deploy
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
X11Forwarding no
AllowTcpForwarding yes
AllowAgentForwarding no
MaxStartups 200:30:400
MaxSessions 64
ClientAliveInterval 30
SetEnv DOCKER_HOST=unix://$dir/docker.sock
Subsystem sftp internal-sftp
EOF
}

SSHD_STARTED=
# start_host NAME NODE ADDRESS DIR HOSTNAME [VIA]: namespaces, plugins, engine and sshd of one host.
start_host() {
  local i=$1 node=$2 address=$3 dir=$4 name=$5 via=${6:-} conf
  ensure_node "$node" "$address" "$dir" "$name" "$via"
  host_plugins "$node" "$dir"
  start_dockerd "$node" "$dir"

  [[ -s $dir/ssh_host_ed25519_key ]] ||
    ssh-keygen -q -t ed25519 -N '' -C "deploy-kit-testbed-$name" -f "$dir/ssh_host_ed25519_key"
  conf=$(write_sshd_config "$i" "$dir" "$address")
  if [[ ! -e $dir/sshd_config || $(<"$dir/sshd_config") != "$conf" ]]; then
    printf '%s\n' "$conf" >"$dir/sshd_config"
    stop_pid "$dir/run/sshd.pid" sshd TERM 5 # config changed: restart
  fi
  if ! pid_alive "$dir/run/sshd.pid" sshd; then
    rm -f "$dir/run/sshd.pid"
    in_node "$node" /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log" </dev/null >>"$dir/sshd-start.log" 2>&1 9>&- ||
      { tail -n 5 "$dir/sshd-start.log" "$dir/sshd.log" >&2; die "sshd of host $name did not start (log: $dir/sshd.log)"; }
    STARTED+=("sshd $name")
    SSHD_STARTED=1
  fi
}
for ((i = 1; i <= N; i++)); do
  start_host "$i" "$(host_netns "$i")" "$(host_address "$i")" "$(host_dir "$i")" "h$i"
done
# The host behind a bastion: reachable only through h1's sshd (ssh.jump), never from the machine.
# Its network is unreachable from the machine by a route of its own, so nothing sent there by
# mistake ever leaves the machine through its default route.
ip route replace unreachable "$BASTION_NET.0/24"
start_host hb "$BASTIONED_NODE" "$BASTIONED_ADDRESS" "$BASTIONED_DIR" hb "$(host_netns 1)"

# ---------------------------------------------------------------------------------------------
# 6. Registries: one storage, served without auth on :5000 and with basic auth on :5001
# ---------------------------------------------------------------------------------------------
REG=$S/registry
# The storage is a cache (kept by down.sh, not by down.sh --purge): the local engine remembers which
# layers it pushed, so after down/up a push of a known layer is instant instead of re-compressing
# the 140 MB base layer (about 13 s). Tests use unique tags, so old content never gets in the way.
REG_DATA=$S/cache/registry
mkdir -p "$REG" "$REG_DATA"
if [[ ! -s $REG/htpasswd ]] || ! htpasswd -vbB "$REG/htpasswd" "$REGISTRY_USER" "$REGISTRY_PASSWORD" >/dev/null 2>&1; then
  htpasswd -Bbn "$REGISTRY_USER" "$REGISTRY_PASSWORD" >"$REG/htpasswd"
  chmod 0600 "$REG/htpasswd"
  stop_pid "$REG/auth.pid" docker-registry TERM 5
fi
registry_config() { # ADDR WITH_AUTH
  cat <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REG_DATA
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $1
  secret: $(<"$REGISTRY_SECRET_FILE")
EOF
  if [[ $2 == 1 ]]; then
    cat <<EOF
auth:
  htpasswd:
    realm: deploy-kit-testbed
    path: $REG/htpasswd
EOF
  fi
}
start_registry() { # NAME ADDR WITH_AUTH
  local name=$1 conf
  conf=$(registry_config "$2" "$3")
  if [[ ! -e $REG/$name.yml || $(<"$REG/$name.yml") != "$conf" ]]; then
    printf '%s\n' "$conf" >"$REG/$name.yml"
    stop_pid "$REG/$name.pid" docker-registry TERM 5
  fi
  if ! pid_alive "$REG/$name.pid" docker-registry; then
    setsid /usr/bin/docker-registry serve "$REG/$name.yml" >>"$REG/$name.log" 2>&1 </dev/null 9>&- &
    echo $! >"$REG/$name.pid"
    STARTED+=("registry $name")
  fi
}
start_registry plain "$REGISTRY_PLAIN" 0
start_registry auth "$REGISTRY_AUTH" 1
# The same storage on the loopback: the engine's own BuildKit (buildx docker driver) reaches a
# plain-HTTP registry only there (it ignores insecure-registries when importing a cache).
start_registry loopback "$REGISTRY_LOOPBACK" 0

# ---------------------------------------------------------------------------------------------
# 7. PostgreSQL: a throwaway cluster on 127.0.0.1 and 10.200.0.1, port 55432
# ---------------------------------------------------------------------------------------------
PG=$S/pg
mkdir -p "$PG/sock"
chown postgres:postgres "$PG" "$PG/sock"
pg_as() { runuser -u postgres -- "$@"; }
if [[ ! -s $PG/data/PG_VERSION ]]; then
  rm -rf "$PG/data"
  pg_as "$PG_BIN/initdb" -D "$PG/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$PG/initdb.log" 2>&1 ||
    { tail -n 20 "$PG/initdb.log" >&2; die "initdb failed (log: $PG/initdb.log)"; }
fi
# Trust on the loopback and the testbed network (the hosts' containers arrive masqueraded as
# 10.200.0.x); a password for containers on the local engine (docker bridge addresses).
pg_hba="# deploy-kit testbed (generated by scripts/testbed/up.sh)
local all all trust
host  all all 127.0.0.1/32 trust
host  all all ::1/128 trust
host  all all $NET_PREFIX.0/24 trust
host  all all 172.16.0.0/12 scram-sha-256
host  all all 192.168.0.0/16 scram-sha-256"
PG_HBA_CHANGED=
if [[ $(<"$PG/data/pg_hba.conf") != "$pg_hba" ]]; then
  printf '%s\n' "$pg_hba" >"$PG/data/pg_hba.conf"
  chown postgres:postgres "$PG/data/pg_hba.conf"
  PG_HBA_CHANGED=1
fi
if ! pg_as "$PG_BIN/pg_ctl" -D "$PG/data" status >/dev/null 2>&1; then
  touch "$PG/postgres.log"
  chown postgres:postgres "$PG/postgres.log"
  pg_as "$PG_BIN/pg_ctl" -D "$PG/data" -l "$PG/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG/sock -c listen_addresses=127.0.0.1,$GATEWAY -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start </dev/null >/dev/null 9>&- ||
    { tail -n 20 "$PG/postgres.log" >&2; die "PostgreSQL did not start (log: $PG/postgres.log)"; }
  STARTED+=("postgres")
fi
pg_sql() { pg_as psql -X -q -v ON_ERROR_STOP=1 -h "$PG/sock" -p "$PG_PORT" -U postgres -d postgres -At "$@"; }
if [[ -n $PG_HBA_CHANGED || ! -e $PG/.app-created ]]; then
  [[ -z $PG_HBA_CHANGED ]] || pg_as "$PG_BIN/pg_ctl" -D "$PG/data" reload >/dev/null
  [[ $(pg_sql -c "SELECT 1 FROM pg_roles WHERE rolname = 'app'") == 1 ]] ||
    pg_sql -c "CREATE ROLE app LOGIN PASSWORD 'app' CREATEDB"
  [[ $(pg_sql -c "SELECT 1 FROM pg_database WHERE datname = 'app'") == 1 ]] ||
    pg_sql -c "CREATE DATABASE app OWNER app"
  touch "$PG/.app-created"
fi

# ---------------------------------------------------------------------------------------------
# Wait for the engines (they start in parallel)
# ---------------------------------------------------------------------------------------------
if pid_alive "$LOCAL_PIDFILE" dockerd || [[ -z $USE_LOCAL_NODE ]]; then
  for ((t = 0; t < 600; t++)); do docker_ping /var/run/docker.sock && break; sleep 0.1; done
  docker_ping /var/run/docker.sock || { tail -n 20 "$S/local/dockerd.log" >&2 || true; die "the local docker engine did not answer on /var/run/docker.sock"; }
  trusts_testbed_registries /var/run/docker.sock || [[ -n $USE_LOCAL_NODE ]] ||
    die "the docker engine on /var/run/docker.sock does not trust $REGISTRY_PLAIN"
fi
# The registries answer: /v2/ is 200 without auth, 401 with.
wait_registry() { # NAME ADDR EXPECTED_STATUS
  local code t
  for ((t = 0; t < 100; t++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$2/v2/" || true)
    [[ $code == "$3" ]] && return 0
    sleep 0.1
  done
  tail -n 10 "$REG/$1.log" >&2 || true
  die "the $1 registry on $2 answered ${code:-nothing} instead of $3 (log: $REG/$1.log)"
}
wait_registry plain "$REGISTRY_PLAIN" 200
wait_registry auth "$REGISTRY_AUTH" 401
wait_registry loopback "$REGISTRY_LOOPBACK" 200
[[ -z $USE_LOCAL_NODE ]] || wait_dockerd "$LOCAL_NODE" "$LOCAL_DIR"
for ((i = 1; i <= N; i++)); do wait_dockerd "$(host_netns "$i")" "$(host_dir "$i")"; done
wait_dockerd "$BASTIONED_NODE" "$BASTIONED_DIR"

# ---------------------------------------------------------------------------------------------
# 8. nginx on host 1, run by deploy (master too), proxying to /srv/proxy/upstream.conf
# ---------------------------------------------------------------------------------------------
H1=$(host_dir 1)
NG=$H1/nginx
NGINX_CONF=$NG/nginx.conf
NGINX_UPSTREAM=/srv/proxy/upstream.conf
NGINX_CMD="/usr/sbin/nginx -p $NG/ -c $NGINX_CONF -e $NG/error.log"
NGINX_RELOAD="$NGINX_CMD -s reload"
mkdir -p "$NG/temp" "$H1/srv/proxy"
# blue-green `switch: file`: the include deploy-kit writes names both colours; until then, 8080.
NGINX_SWITCH_FILE=/srv/proxy/switch.conf
if [[ ! -e $H1/srv/proxy/switch.conf ]]; then
  cat >"$H1/srv/proxy/switch.conf" <<EOF
# The include of the server on :$NGINX_SWITCH_PORT (blue-green switch: file); deploy-kit rewrites it.
set \$app_upstream 127.0.0.1:8080;
EOF
fi
if [[ ! -e $H1/srv/proxy/upstream.conf ]]; then
  cat >"$H1/srv/proxy/upstream.conf" <<EOF
# The upstream nginx on this host proxies to; rewrite and reload (as deploy) to switch.
upstream app {
    server 127.0.0.1:8080;
}
EOF
fi
chown -R "$DEPLOY_UID:$DEPLOY_GID" "$NG" "$H1/srv/proxy"
nginx_conf=$(
  cat <<EOF
# deploy-kit testbed nginx (host 1), run as deploy. Reload: $NGINX_RELOAD
worker_processes 1;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 1024; }
http {
    access_log $NG/access.log;
    client_body_temp_path $NG/temp/client;
    proxy_temp_path $NG/temp/proxy;
    fastcgi_temp_path $NG/temp/fastcgi;
    uwsgi_temp_path $NG/temp/uwsgi;
    scgi_temp_path $NG/temp/scgi;
    include $NGINX_UPSTREAM;
    server {
        listen $(host_address 1):$NGINX_PORT;
        location = /__testbed/nginx { return 200 "nginx ok\n"; }
        location / {
            proxy_pass http://app;
            proxy_connect_timeout 2s;
            proxy_next_upstream error timeout;
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
    # blue-green with switch: file: the live colour is read per request, never by a reload.
    server {
        listen $(host_address 1):$NGINX_SWITCH_PORT;
        location / {
            include $NGINX_SWITCH_FILE;
            proxy_pass http://\$app_upstream;
            proxy_connect_timeout 2s;
            proxy_set_header Host \$host;
        }
    }
}
EOF
)
if [[ ! -e $NGINX_CONF || $(<"$NGINX_CONF") != "$nginx_conf" ]]; then
  printf '%s\n' "$nginx_conf" >"$NGINX_CONF"
  chown "$DEPLOY_UID:$DEPLOY_GID" "$NGINX_CONF"
  stop_pid "$NG/nginx.pid" nginx QUIT 10
fi
if ! pid_alive "$NG/nginx.pid" nginx; then
  rm -f "$NG/nginx.pid"
  touch "$NG/error.log" "$NG/access.log"
  chown -R "$DEPLOY_UID:$DEPLOY_GID" "$NG"
  # shellcheck disable=SC2086
  in_node "$(host_netns 1)" setpriv --reuid "$DEPLOY_UID" --regid "$DEPLOY_GID" --init-groups \
    $NGINX_CMD </dev/null >>"$NG/start.log" 2>&1 9>&- ||
    { tail -n 5 "$NG/start.log" "$NG/error.log" >&2; die "nginx on host 1 did not start (log: $NG/error.log)"; }
  STARTED+=("nginx h1")
fi

# ---------------------------------------------------------------------------------------------
# 9. The Debian base image: debootstrap once per machine, cached as a tar
# ---------------------------------------------------------------------------------------------
LOCAL_SOCK=${LOCAL_DOCKER_HOST#unix://}
build_base_tar() {
  local root=$S/cache/debian-rootfs.tmp mirror t0=$EPOCHREALTIME
  mirror=$(debian_mirror)
  unmount_under "$root"
  rm -rf "$root"
  log "building $BASE_IMAGE: debootstrap --variant=minbase bookworm from $mirror (about a minute or two, once per machine)"
  if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$S/cache/debootstrap.log" 2>&1; then
    tail -n 20 "$S/cache/debootstrap.log" >&2
    die "debootstrap failed (log: $S/cache/debootstrap.log)"
  fi
  log "debootstrap done; installing postgresql-client curl ca-certificates busybox in the chroot"
  # Like the slim official images: no docs, man pages or translations.
  cat >"$root/etc/dpkg/dpkg.cfg.d/deploy-kit-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 0755 "$root/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mount -t proc proc "$root/proc"
  local rc=0
  chroot "$root" /bin/sh -ec '
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql-client curl ca-certificates busybox
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log /var/cache/debconf/*-old
    find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    rm -rf /usr/share/man/* /usr/share/info/* /usr/share/locale/*
  ' >"$S/cache/chroot-install.log" 2>&1 || rc=$?
  umount "$root/proc" || umount -l "$root/proc"
  if ((rc)); then
    tail -n 20 "$S/cache/chroot-install.log" >&2
    die "installing packages in the base image failed (log: $S/cache/chroot-install.log)"
  fi
  rm -f "$root/usr/sbin/policy-rc.d"
  : >"$root/etc/resolv.conf"
  echo deploy-kit >"$root/etc/hostname"
  tar --numeric-owner -C "$root" --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
    --exclude='./tmp/*' --exclude='./run/*' -cf "$BASE_TAR.tmp" .
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  rm -rf "$root"
  log "base image tar ready: $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1), built in $(awk -v a="${t0/,/.}" -v b="${EPOCHREALTIME/,/.}" 'BEGIN { printf "%.0f", b - a }')s)"
}
base_image_present() { curl -sf --max-time 5 --unix-socket "$LOCAL_SOCK" "http://docker/images/$BASE_IMAGE/json" >/dev/null 2>&1; }
if ! base_image_present; then
  [[ -s $BASE_TAR ]] || build_base_tar
  log "importing $BASE_IMAGE from $BASE_TAR"
  DOCKER_HOST=$LOCAL_DOCKER_HOST docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'ENV LANG=C.UTF-8' \
    -c 'CMD ["bash"]' -m "deploy-kit testbed base image ($BASE_RECIPE)" \
    "$BASE_TAR" "$BASE_IMAGE" >/dev/null
fi

# ---------------------------------------------------------------------------------------------
# Pinned host keys (real ssh-keyscan of every host)
# ---------------------------------------------------------------------------------------------
KNOWN_HOSTS=$S/known_hosts
# Every host, and where it is scanned from: the machine, or (the host behind the bastion) h1.
addresses=() kh_addr=() kh_dir=() kh_via=()
for ((i = 1; i <= N; i++)); do
  addresses+=("$(host_address "$i")")
  kh_addr+=("$(host_address "$i")") kh_dir+=("$(host_dir "$i")") kh_via+=("")
done
kh_addr+=("$BASTIONED_ADDRESS") kh_dir+=("$BASTIONED_DIR") kh_via+=("$(host_netns 1)")
expected_line() { # K: the known_hosts line host K must answer with
  local keytype key _
  read -r keytype key _ <"${kh_dir[$1]}/ssh_host_ed25519_key.pub"
  echo "${kh_addr[$1]} $keytype $key"
}
kh_ok=1
if [[ -n $SSHD_STARTED || ! -s $KNOWN_HOSTS ]]; then kh_ok=; fi
if [[ -n $kh_ok ]]; then
  kh=$(<"$KNOWN_HOSTS")
  for k in "${!kh_addr[@]}"; do [[ $kh == *"$(expected_line "$k")"* ]] || kh_ok=; done
  [[ $(wc -l <"$KNOWN_HOSTS") == "${#kh_addr[@]}" ]] || kh_ok=
fi
if [[ -z $kh_ok ]]; then
  scan_one() { # K: a real ssh-keyscan of host K, from where it is reachable
    local scan
    if [[ -n ${kh_via[$1]} ]]; then
      scan=$(in_node "${kh_via[$1]}" ssh-keyscan -T 5 -t ed25519 "${kh_addr[$1]}" 2>/dev/null || true)
    else
      scan=$(ssh-keyscan -T 5 -t ed25519 "${kh_addr[$1]}" 2>/dev/null || true)
    fi
    grep -E "^${kh_addr[$1]} ssh-ed25519 " <<<"$scan" || true
  }
  lines=()
  for k in "${!kh_addr[@]}"; do
    line=
    for ((t = 0; t < 50; t++)); do
      line=$(scan_one "$k")
      [[ -n $line ]] && break
      sleep 0.2
    done
    [[ -n $line ]] || die "ssh-keyscan did not reach the sshd of ${kh_addr[$k]}"
    # The scanned key is the key the host was given (nothing else answered).
    [[ $line == "$(expected_line "$k")" ]] || die "${kh_addr[$k]} answered with an unexpected host key"
    lines+=("$line")
  done
  printf '%s\n' "${lines[@]}" >"$KNOWN_HOSTS.tmp"
  mv "$KNOWN_HOSTS.tmp" "$KNOWN_HOSTS"
  chmod 0644 "$KNOWN_HOSTS"
fi

# ---------------------------------------------------------------------------------------------
# 10. testbed.json and env.sh
# ---------------------------------------------------------------------------------------------
PG_URL="postgres://app:app@$GATEWAY:$PG_PORT/app"
{
  echo '{'
  echo '  "version": 1,'
  echo "  \"stateDir\": \"$S\","
  echo "  \"localDockerHost\": \"$LOCAL_DOCKER_HOST\","
  echo "  \"localDockerAddress\": \"$LOCAL_DOCKER_ADDRESS\","
  echo "  \"registry\": { \"plain\": \"$REGISTRY_PLAIN\", \"auth\": \"$REGISTRY_AUTH\", \"loopback\": \"$REGISTRY_LOOPBACK\", \"username\": \"$REGISTRY_USER\", \"password\": \"$REGISTRY_PASSWORD\" },"
  echo '  "hosts": ['
  for ((i = 1; i <= N; i++)); do
    dir=$(host_dir "$i")
    node=$(host_netns "$i")
    sep=,
    ((i == N)) && sep=
    echo "    { \"alias\": \"h$i\", \"address\": \"$(host_address "$i")\", \"port\": 22, \"user\": \"deploy\", \"netns\": \"$node\", \"netnsPath\": \"/run/netns/$node\", \"mountNamespace\": \"$S/ns/$node\", \"utsNamespace\": \"$S/ns/$node.uts\", \"hostname\": \"h$i\", \"dockerHost\": \"unix://$dir/docker.sock\", \"dockerSocket\": \"$dir/docker.sock\", \"sshdLog\": \"$dir/sshd.log\", \"srvDir\": \"$dir/srv\", \"homeDir\": \"$dir/home\", \"tmpDir\": \"$dir/tmp\", \"hostKeyPub\": \"$dir/ssh_host_ed25519_key.pub\", \"compose\": \"$(<"$dir/compose-flavor")\" }$sep"
  done
  echo '  ],'
  dir=$BASTIONED_DIR
  echo "  \"behindBastion\": { \"alias\": \"hb\", \"address\": \"$BASTIONED_ADDRESS\", \"port\": 22, \"user\": \"deploy\", \"jump\": \"h1\", \"netns\": \"$BASTIONED_NODE\", \"netnsPath\": \"/run/netns/$BASTIONED_NODE\", \"mountNamespace\": \"$S/ns/$BASTIONED_NODE\", \"utsNamespace\": \"$S/ns/$BASTIONED_NODE.uts\", \"hostname\": \"hb\", \"dockerHost\": \"unix://$dir/docker.sock\", \"dockerSocket\": \"$dir/docker.sock\", \"sshdLog\": \"$dir/sshd.log\", \"srvDir\": \"$dir/srv\", \"homeDir\": \"$dir/home\", \"tmpDir\": \"$dir/tmp\", \"hostKeyPub\": \"$dir/ssh_host_ed25519_key.pub\", \"compose\": \"$(<"$dir/compose-flavor")\" },"
  echo "  \"deployKeyPath\": \"$DEPLOY_KEY\","
  echo "  \"knownHostsPath\": \"$KNOWN_HOSTS\","
  echo "  \"postgres\": { \"host\": \"$GATEWAY\", \"port\": $PG_PORT, \"database\": \"app\", \"user\": \"app\", \"password\": \"app\", \"url\": \"$PG_URL\", \"adminUrl\": \"postgres://postgres@127.0.0.1:$PG_PORT/postgres\", \"socketDir\": \"$PG/sock\" },"
  echo "  \"nginxFileSwitch\": { \"url\": \"http://$(host_address 1):$NGINX_SWITCH_PORT\", \"includeFile\": \"$NGINX_SWITCH_FILE\", \"includeFileOnMachine\": \"$H1/srv/proxy/switch.conf\", \"upstreamName\": \"app\" },"
  echo "  \"nginx\": { \"host\": \"h1\", \"url\": \"http://$(host_address 1):$NGINX_PORT\", \"confPath\": \"$NGINX_CONF\", \"reloadCommand\": \"$NGINX_RELOAD\", \"upstreamFile\": \"$NGINX_UPSTREAM\", \"upstreamFileOnMachine\": \"$H1/srv/proxy/upstream.conf\", \"user\": \"deploy\" },"
  echo "  \"arm64Busybox\": \"$ARM64_BUSYBOX\","
  echo "  \"baseImage\": \"$BASE_IMAGE\""
  echo '}'
} >"$S/testbed.json.tmp"
chmod 0600 "$S/testbed.json.tmp"
mv "$S/testbed.json.tmp" "$S/testbed.json"

{
  echo "# deploy-kit testbed; source me: . $S/env.sh"
  echo "export DK_TESTBED_DIR=$S"
  echo "export DK_TESTBED_JSON=$S/testbed.json"
  echo "export DK_LOCAL_DOCKER_HOST=$LOCAL_DOCKER_HOST"
  echo "export DK_REGISTRY=$REGISTRY_PLAIN"
  echo "export DK_REGISTRY_AUTH=$REGISTRY_AUTH"
  echo "export DK_REGISTRY_USERNAME=$REGISTRY_USER"
  echo "export DK_REGISTRY_PASSWORD=$REGISTRY_PASSWORD"
  echo "export DK_DEPLOY_KEY=$DEPLOY_KEY"
  echo "export DK_KNOWN_HOSTS=$KNOWN_HOSTS"
  echo "export DK_HOSTS=\"${addresses[*]}\""
  for ((i = 1; i <= N; i++)); do
    dir=$(host_dir "$i")
    echo "export DK_H${i}_ADDRESS=$(host_address "$i") DK_H${i}_DOCKER_HOST=unix://$dir/docker.sock DK_H${i}_NETNS=$(host_netns "$i") DK_H${i}_MOUNTNS=$S/ns/$(host_netns "$i") DK_H${i}_UTSNS=$S/ns/$(host_netns "$i").uts DK_H${i}_SRV_DIR=$dir/srv DK_H${i}_SSHD_LOG=$dir/sshd.log"
  done
  echo "export DK_PG_URL=$PG_URL DK_PG_HOST=$GATEWAY DK_PG_PORT=$PG_PORT"
  echo "export DK_NGINX_URL=http://$(host_address 1):$NGINX_PORT DK_NGINX_CONF=$NGINX_CONF DK_NGINX_UPSTREAM=$NGINX_UPSTREAM"
  echo "export DK_NGINX_RELOAD=\"$NGINX_RELOAD\""
  echo "export DK_BASE_IMAGE=$BASE_IMAGE"
} >"$S/env.sh.tmp"
chmod 0600 "$S/env.sh.tmp"
mv "$S/env.sh.tmp" "$S/env.sh"

if ((${#STARTED[@]})); then started="started: ${STARTED[*]}"; else started="nothing restarted"; fi
cat <<EOF
deploy-kit testbed up in $(elapsed)s ($started)
  hosts:     ${addresses[*]} (ssh deploy@<address>, key $DEPLOY_KEY, known_hosts $KNOWN_HOSTS)
  bastioned: $BASTIONED_ADDRESS (hb), reachable only through h1 (ssh -J deploy@$(host_address 1))
  local:     DOCKER_HOST=$LOCAL_DOCKER_HOST
  registry:  $REGISTRY_PLAIN (no auth), $REGISTRY_AUTH (user $REGISTRY_USER, password in $REGISTRY_PASSWORD_FILE), $REGISTRY_LOOPBACK (no auth, loopback)
  plugins:   compose $COMPOSE_V2_DEB and buildx $BUILDX_DEB on the runner; hosts run compose $HOST_COMPOSE
  postgres:  $PG_URL
  nginx:     http://$(host_address 1):$NGINX_PORT on h1 (reload: $NGINX_RELOAD)
  image:     $BASE_IMAGE
  details:   $S/testbed.json, $S/env.sh; a shell on a host: bash scripts/testbed/enter.sh h1
EOF
