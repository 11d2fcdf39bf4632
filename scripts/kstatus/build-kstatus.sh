#!/usr/bin/env bash
# Builds scripts/kstatus (sigs.k8s.io/cli-utils' kstatus as a command) from the Go module proxy
# into a cache outside the work tree, keyed by its inputs (go.mod, go.sum, main.go and the Go
# version), for the e2e tests that judge hyperlet's status with the real library. Idempotent:
# prints the binary path and exits at once when that build exists. A lock makes concurrent
# callers wait for one build instead of starting a second one.
#
# Environment:
#   HYPERLET_KSTATUS_CACHE  cache root (default /var/cache/hyperlet/kstatus); binary at <root>/<key>/kstatus
#   KSTATUS_BUILD_NICE      niceness of the build (default 19: the machine is shared)
# Output: the absolute path of the binary on the last line of stdout.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${HYPERLET_KSTATUS_CACHE:-/var/cache/hyperlet/kstatus}
NICE=${KSTATUS_BUILD_NICE:-19}

GO=$(command -v go || true)
if [[ -z $GO && -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go; fi
if [[ -z $GO ]]; then
  echo "cannot build kstatus: no go command on PATH nor at /usr/local/go/bin/go" >&2
  exit 1
fi

KEY=$( { cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go"; "$GO" version; } | sha256sum | cut -c1-16)
OUT_DIR=$CACHE_ROOT/$KEY
OUT=$OUT_DIR/kstatus
if [[ -x $OUT ]]; then
  echo "$OUT"
  exit 0
fi

mkdir -p "$OUT_DIR"
exec 9>"$OUT_DIR/.build.lock"
flock 9
if [[ -x $OUT ]]; then
  echo "$OUT"
  exit 0
fi

start_s=$(date +%s)
echo "building kstatus ($KEY) with $("$GO" version)" >&2
# -mod=readonly: go.sum is committed; a build never edits the work tree.
(cd "$SRC" && GOFLAGS=-mod=readonly CGO_ENABLED=0 nice -n "$NICE" "$GO" build -trimpath -o "$OUT.tmp" .)
mv "$OUT.tmp" "$OUT"
echo "built kstatus in $(( $(date +%s) - start_s )) s" >&2
echo "$OUT"
