#!/usr/bin/env bash
# The hand-rolled deploy deploy-kit is measured against: what the seed projects' workflows do with
# appleboy/ssh-action-style steps, one `ssh` invocation per step, `docker compose pull` and
# `docker compose up -d`, then curl until the app answers. Host keys are pinned (the testbed's
# known_hosts), so the baseline is not faster by skipping the check deploy-kit makes.
#
#   baseline.sh <user@address> <dir> <compose file> <image ref> <port>
#
# Env: DK_DEPLOY_KEY, DK_KNOWN_HOSTS (the testbed's env.sh sets both).
set -euo pipefail
target=$1 dir=$2 compose=$3 image=$4 port=$5
ssh_() {
  ssh -F /dev/null -i "$DK_DEPLOY_KEY" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$DK_KNOWN_HOSTS" -o LogLevel=ERROR "$target" "$@"
}
# 1. copy the compose file
ssh_ "mkdir -p '$dir' && cat > '$dir/compose.yml'" < "$compose"
# 2. set the image and port for compose's interpolation
ssh_ "cd '$dir' && printf 'API_IMAGE=%s\nBENCH_PORT=%s\n' '$image' '$port' > .env"
# 3. pull
ssh_ "cd '$dir' && docker compose pull --quiet"
# 4. recreate
ssh_ "cd '$dir' && docker compose up -d"
# 5. wait until it answers
ssh_ "for i in \$(seq 120); do curl -fsS -o /dev/null 'http://127.0.0.1:$port/health' && exit 0; sleep 0.25; done; echo 'not healthy' >&2; exit 1"
