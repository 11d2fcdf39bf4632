#!/usr/bin/env bash
# Builds kube-apiserver from the Go module proxy into a cache outside the work tree, keyed by
# version, for the Kubernetes e2e tests (see KUBE-TESTENV notes: a kube-apiserver binary cannot be
# downloaded here). Idempotent: prints the binary path and exits at once when it already exists.
# A lock makes concurrent callers wait for one build instead of starting a second one.
#
# Environment:
#   KUBE_VERSION        kubernetes release to build (default 1.33.13; 1.33.x uses the etcd 3.5
#                       client, which works against Debian's etcd-server 3.4.23)
#   HYPERLET_KUBE_CACHE cache root (default /var/cache/hyperlet/kube); binary at <root>/v<ver>/kube-apiserver
#   KUBE_BUILD_NICE     niceness of the build (default 19: the machine is shared)
# Output: the absolute path of the binary on the last line of stdout.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.33.13}
CACHE_ROOT=${HYPERLET_KUBE_CACHE:-/var/cache/hyperlet/kube}
NICE=${KUBE_BUILD_NICE:-19}

if [[ ! $KUBE_VERSION =~ ^1\.([0-9]+)\.([0-9]+)$ ]]; then
  echo "cannot build kube-apiserver: KUBE_VERSION '$KUBE_VERSION' is not of the form 1.MINOR.PATCH" >&2
  exit 2
fi
MINOR=${BASH_REMATCH[1]}
STAGING_VERSION=v0.${MINOR}.${BASH_REMATCH[2]}
OUT_DIR=$CACHE_ROOT/v$KUBE_VERSION
OUT=$OUT_DIR/kube-apiserver

if [[ -x $OUT ]]; then
  echo "$OUT"
  exit 0
fi

GO=$(command -v go || true)
if [[ -z $GO && -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go; fi
if [[ -z $GO ]]; then
  echo "cannot build kube-apiserver: no go command on PATH nor at /usr/local/go/bin/go" >&2
  exit 1
fi

mkdir -p "$OUT_DIR"
# One build at a time: a second caller waits here, then finds the binary and exits.
exec 9>"$OUT_DIR/.build.lock"
flock 9
if [[ -x $OUT ]]; then
  echo "$OUT"
  exit 0
fi

WORK=$(mktemp -d /tmp/kube-apiserver-build.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

start_s=$(date +%s)
echo "building kube-apiserver v$KUBE_VERSION (staging $STAGING_VERSION) with $("$GO" version) in $WORK" >&2

"$GO" mod init local/kube-apiserver-build >/dev/null 2>&1
"$GO" mod edit -go=1.24.0
# k8s.io/kubernetes requires its staging modules at v0.0.0 and maps them with replace lines that
# are ignored for a dependency, so every staging module is routed to its published version.
STAGING_MODULES=(
  api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller
)
for m in "${STAGING_MODULES[@]}"; do
  "$GO" mod edit -replace="k8s.io/$m=k8s.io/$m@$STAGING_VERSION"
done
# `go get` of the main package records every module and go.sum line its build needs; no
# `go mod tidy` afterwards since nothing in this module imports it.
nice -n "$NICE" "$GO" get "k8s.io/kubernetes/cmd/kube-apiserver@v$KUBE_VERSION" >&2
fetched_s=$(date +%s)

LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION"
LDFLAGS+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR"
LDFLAGS+=" -X k8s.io/component-base/version.gitTreeState=clean"
CGO_ENABLED=0 nice -n "$NICE" "$GO" build -trimpath -ldflags "$LDFLAGS" \
  -o "$WORK/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
"$WORK/kube-apiserver" --version >&2
# Atomic publish: a reader never sees a half-written binary.
mv "$WORK/kube-apiserver" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
end_s=$(date +%s)
echo "built kube-apiserver v$KUBE_VERSION in $((end_s - start_s)) s (module fetch $((fetched_s - start_s)) s, compile $((end_s - fetched_s)) s)" >&2
echo "$OUT"
