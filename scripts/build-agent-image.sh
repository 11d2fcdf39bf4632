#!/usr/bin/env bash
# Builds the agent image from the Containerfile on a host that reaches no container registry (the
# Debian and npm package mirrors only), and prints its name as the last line of stdout.
#
# The Containerfile's base (node:20-bookworm-slim) cannot be pulled here, so a stand-in is made
# first: a Debian bookworm minbase from mmdebstrap with this host's own Node 20 and npm, its node
# headers (better-sqlite3 compiles from source when its prebuilt binary cannot be fetched) and its
# CA bundle (the package mirrors may sit behind this host's TLS proxy). Then the unchanged
# Containerfile is built on it with --build-arg NODE_IMAGE. Both images are tagged with a hash of
# their inputs, so a second run with the same inputs builds nothing (about 10 min on 2 cores for a
# first build, under a second for a cached one). Builds run with chroot isolation and the host's
# network: the OCI runtimes refuse the hosts' hybrid cgroup layout (crun) or their rlimits (runc) at
# build time, and RUN steps need the package mirrors.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'build-agent-image: %s\n' "$*" >&2; }
for tool in buildah mmdebstrap node; do
  command -v "$tool" >/dev/null || { log "$tool is missing: run 'make host' (scripts/setup-host.sh) first"; exit 1; }
done

cache=/var/cache/hyperlet/agent-image
mkdir -p "$cache"
exec 9>"$cache/build.lock"
flock 9 # two test processes never build the same image twice

node_root=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")") # /usr for Debian's and NodeSource's packages
ca_bundle=/etc/ssl/certs/ca-certificates.crt
base_packages=ca-certificates,libstdc++6
base_key=$( { node --version; cat "$node_root/lib/node_modules/npm/package.json"; echo "$base_packages";
  sha256sum "$ca_bundle" 2>/dev/null || true; sed -n '/^# --- base ---$/,/^# --- end base ---$/p' "$0"; } | sha256sum | cut -c1-16)
base=localhost/hyperlet-node:20-bookworm-$base_key

# --- base ---
if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  log "making the base $base (Debian bookworm minbase + this host's Node $(node --version))"
  work=$(mktemp -d "$cache/base.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  nice mmdebstrap --quiet --variant=minbase --include="$base_packages" bookworm "$work/rootfs.tar"
  ctr=$(buildah from scratch)
  buildah add --quiet "$ctr" "$work/rootfs.tar" /
  buildah copy --quiet "$ctr" "$node_root/bin/node" /usr/bin/node
  buildah copy --quiet "$ctr" "$node_root/lib/node_modules/npm" /usr/lib/node_modules/npm
  buildah copy --quiet "$ctr" "$node_root/include/node" /usr/include/node
  [ -f "$ca_bundle" ] && buildah copy --quiet "$ctr" "$ca_bundle" /etc/ssl/certs/ca-certificates.crt
  buildah config --env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt --env npm_config_nodedir=/usr "$ctr"
  buildah run --isolation chroot --network host "$ctr" -- sh -c \
    'ln -sf ../lib/node_modules/npm/bin/npm-cli.js /usr/bin/npm && ln -sf ../lib/node_modules/npm/bin/npx-cli.js /usr/bin/npx && node --version >/dev/null'
  buildah commit --quiet --rm "$ctr" "$base" >/dev/null
  rm -rf "$work"
  trap - EXIT
fi
# --- end base ---

# The app image's inputs: everything the Containerfile copies, plus the base.
app_key=$( { echo "$base"; find Containerfile package.json package-lock.json tsconfig.json src test bench scripts bin crds \
  -type f -not -path '*/node_modules/*' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16)
image=localhost/hyperlet:build-$app_key
if ! buildah inspect --type image "$image" >/dev/null 2>&1; then
  log "building $image from the Containerfile"
  nice buildah bud --quiet --layers --isolation chroot --network host --build-arg NODE_IMAGE="$base" \
    -t "$image" -t localhost/hyperlet:0.1.0 -f Containerfile . >&2
  # Earlier builds of the app (other inputs) and their dangling layers would only fill the disk.
  buildah images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/hyperlet:build-' | grep -vx "$image" \
    | xargs -r buildah rmi >/dev/null 2>&1 || true
fi
echo "$image"
