#!/usr/bin/env bash
# The CLI as users get it: `npm pack` the package, install the tarball globally into a clean
# prefix with each supported Node (20 and 24), and run the installed `deploy-kit` with each Node:
# --version, validate and plan --offline on examples/deploy-kit.yml, from outside the repository.
# Also fails when the tarball holds something it should not (source maps, src/, tests/) or grows
# past a size a CLI has no reason to reach.
#
# Node binaries: DK_NODE20 / DK_NODE24 (paths to `node`), else the `node` on PATH, /opt/node24 or
# /usr/bin/node when its major matches, else `npm i node@<major>` into ${DK_NODE_CACHE:-/tmp/dk-node-cache}
# (as .ci/run does for Node 24). Uses dist/ as committed: run `npm run build` first when src/ changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
max_unpacked=$((4 * 1024 * 1024))

major() { "$1" -p 'process.versions.node.split(".")[0]'; }

# A node binary of the given major version, installed on demand.
node_for() {
  local want=$1 var="DK_NODE$1" candidate
  if [ -n "${!var:-}" ]; then
    echo "${!var}"
    return
  fi
  for candidate in "$(command -v node || true)" /opt/node24/node_modules/.bin/node /usr/bin/node /usr/local/bin/node; do
    if [ -x "$candidate" ] && [ "$(major "$candidate")" = "$want" ]; then
      echo "$candidate"
      return
    fi
  done
  local cache="${DK_NODE_CACHE:-/tmp/dk-node-cache}/node$want"
  if [ ! -x "$cache/node_modules/.bin/node" ]; then
    npm install --prefix "$cache" --no-fund --no-audit --loglevel=error "node@$want" >&2
  fi
  echo "$cache/node_modules/.bin/node"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/dk-pack-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "==> npm pack"
npm pack --silent --pack-destination "$work" >"$work/name"
tarball="$work/$(tail -n1 "$work/name")"
version=$(node -p 'require("./package.json").version')
name=$(node -p 'require("./package.json").name')

# What is inside, and how heavy it is.
tar -tzf "$tarball" | sed 's|^package/||' | sort >"$work/files"
if grep -Ev '^(package\.json|README\.md|LICENSE|CHANGELOG\.md|dist/cli/index\.js|dist/kit/(index\.js|package\.json|licenses\.txt)|schema/[a-z.-]+\.json|docs/[a-z-]+\.md)$' "$work/files"; then
  echo "pack-check: the files above do not belong in the package (package.json \"files\")" >&2
  exit 1
fi
for required in dist/cli/index.js dist/kit/index.js schema/deploy-kit.schema.json docs/cli.md README.md; do
  grep -qx "$required" "$work/files" || { echo "pack-check: $required is missing from the package" >&2; exit 1; }
done
unpacked=$(tar -xzOf "$tarball" | wc -c)
if [ "$unpacked" -gt "$max_unpacked" ]; then
  echo "pack-check: the package unpacks to $unpacked bytes (limit $max_unpacked)" >&2
  exit 1
fi
echo "$(wc -l <"$work/files") files, $unpacked bytes unpacked"

# The example app, outside the repository, as a user's checkout would be.
mkdir -p "$work/app"
cp -R examples "$work/app/"
image="registry.example.com/example-app@sha256:$(printf 'a%.0s' {1..64})"
sha=$(printf 'f%.0s' {1..40})

node20=$(node_for 20)
node24=$(node_for 24)
for installer in "$node20" "$node24"; do
  prefix="$work/prefix-$(major "$installer")"
  echo "==> npm install --global $name (tarball) with Node $("$installer" --version) into a clean prefix"
  PATH="$(dirname "$installer"):$PATH" npm install --global --prefix "$prefix" \
    --no-fund --no-audit --loglevel=error --offline "$tarball"
  bin="$prefix/bin/deploy-kit"
  [ -x "$bin" ] || { echo "pack-check: no $bin after the install" >&2; exit 1; }
  for runner in "$node20" "$node24"; do
    echo "--> deploy-kit on Node $("$runner" --version)"
    run() { (cd "$work/app" && env -i HOME="$work" PATH="$(dirname "$runner"):/usr/bin:/bin" "$bin" "$@"); }
    got=$(run --version)
    [ "$got" = "deploy-kit $version" ] || { echo "pack-check: --version said \"$got\", expected \"deploy-kit $version\"" >&2; exit 1; }
    run validate -c examples/deploy-kit.yml >/dev/null
    run plan --offline --env staging -c examples/deploy-kit.yml --image "$image" --git-sha "$sha" --json \
      | "$runner" -e '
        const plan = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
        if (plan.image.imageRef !== process.argv[1] || !plan.offline || !plan.steps.length)
          throw new Error("plan --offline did not plan the image: " + JSON.stringify(plan.image));
      ' "$image"
    echo "    --version, validate, plan --offline: ok"
  done
done
echo "pack-check: $name@$version installs and runs on Node 20 and 24"
