#!/usr/bin/env bash
# Runs a command (default: a shell) inside one testbed host, as root or as deploy, with that host's
# network and mount namespaces (its own /srv, /tmp, /home/deploy, /run) and DOCKER_HOST set.
#
#   bash scripts/testbed/enter.sh h1                    # root shell on host 1
#   bash scripts/testbed/enter.sh 2 docker ps           # a command on host 2
#   DK_AS=deploy bash scripts/testbed/enter.sh h1 id    # as the deploy user
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
[[ $# -ge 1 ]] || die "usage: enter.sh <h1|1|...> [command...]"
i=${1#h}
shift
[[ $i =~ ^[0-9]+$ && -e /run/netns/$(host_netns "$i") ]] || die "no such testbed host: h$i (is the testbed up?)"
dir=$(host_dir "$i")
export DOCKER_HOST=unix://$dir/docker.sock
(($#)) || set -- /bin/bash -l
if [[ ${DK_AS:-root} == deploy ]]; then
  set -- setpriv --reuid deploy --regid deploy --init-groups env HOME=/home/deploy USER=deploy LOGNAME=deploy "$@"
fi
node=$(host_netns "$i")
exec nsenter --net="/run/netns/$node" --mount="$S/ns/$node" --uts="$S/ns/$node.uts" -- "$@"
