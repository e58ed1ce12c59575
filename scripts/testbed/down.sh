#!/usr/bin/env bash
# Stops everything scripts/testbed/up.sh started (by PID file: nginx, sshds, dockerds, registries,
# PostgreSQL via pg_ctl), removes the namespaces, veths and the bridge, and deletes the runtime state
# (host filesystems and engines, the database). Keeps the caches: the Debian base image tar and the
# registry storage ($DK_TESTBED_DIR/cache), the local engine's images ($DK_TESTBED_DIR/local) and the
# generated deploy key and registry password ($DK_TESTBED_DIR/secrets).
#
#   down.sh           stop and clean, keep caches
#   down.sh --purge   also delete the caches: the whole state directory
set -euo pipefail
shopt -s nullglob

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

PURGE=
for arg in "$@"; do
  case $arg in
    --purge) PURGE=1 ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg (usage: down.sh [--purge])" ;;
  esac
done
[[ $(id -u) == 0 ]] || die "the testbed needs root on Debian: run down.sh as root"
if [[ ! -d $S ]]; then
  echo "deploy-kit testbed: nothing to stop ($S does not exist)"
  exit 0
fi
exec 9>"$S/.lock"
flock 9

# Hosts (and the fallback local node): nginx, sshd, dockerd, leftovers, namespaces.
for d in "$S"/hosts/*/; do
  i=$(basename "$d")
  [[ $i =~ ^[0-9]+$ ]] || continue
  stop_node "$(host_netns "$i")" "${d%/}" &
done
if [[ -d $S/local/node ]]; then stop_node "$LOCAL_NODE" "$S/local/node" & fi
if [[ -d $BASTIONED_DIR || -e /run/netns/$BASTIONED_NODE ]]; then stop_node "$BASTIONED_NODE" "$BASTIONED_DIR" & fi
wait
# Namespaces whose state directory is already gone (a crashed run): still ours by name.
for ns in /run/netns/dk-h*; do
  node=${ns##*/}
  [[ $node =~ ^dk-h[0-9]+$ ]] && stop_node "$node" "$S/hosts/${node#dk-h}"
done

# The local engine, only if the testbed started it.
stop_pid "$S/run/dockerd.pid" dockerd TERM 30
if [[ ! -S /var/run/docker.sock ]] && mounted_at "$S/local/docker"; then
  umount "$S/local/docker" 2>/dev/null || true # dockerd's propagation bind mount of its data root
fi

# Registries and PostgreSQL.
stop_pid "$S/registry/plain.pid" docker-registry TERM 5
stop_pid "$S/registry/auth.pid" docker-registry TERM 5
stop_pid "$S/registry/loopback.pid" docker-registry TERM 5
if [[ -s $S/pg/data/postmaster.pid ]]; then
  PG_BIN=
  for b in /usr/lib/postgresql/*/bin; do PG_BIN=$b; done
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$S/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
fi

# Network.
iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null || true
ip link del "$BRIDGE" 2>/dev/null || true
ip route del unreachable "$BASTION_NET.0/24" 2>/dev/null || true
if mounted_at "$S/ns"; then
  unmount_under "$S/ns"
  umount "$S/ns" 2>/dev/null || umount -l "$S/ns"
fi

# Runtime state.
for p in hosts bastioned pg registry run ns local/node; do
  unmount_under "$S/$p"
  rm -rf "${S:?}/$p"
done
rm -f "$S/local/use-node" "$S/testbed.json" "$S/env.sh" "$S/known_hosts" "$S/apt.log"
if [[ -n $PURGE ]]; then
  unmount_under "$S"
  rm -rf "${S:?}"
  echo "deploy-kit testbed: stopped and purged $S"
else
  echo "deploy-kit testbed: stopped; kept caches in $S (cache/, local/, secrets/); --purge removes them"
fi
