#!/usr/bin/env bash
# Builds kube-apiserver and etcd from source through the Go module proxy and
# prints the directory holding them (use it as KUBEBUILDER_ASSETS).
#
# No binary download site is reachable from where Hookline is built and
# tested, so setup-envtest cannot be used. The binaries are cached outside the
# clone, keyed by the Kubernetes version and the hash of hack/envtest/go.sum,
# so fresh clones and CI reuse them; they are rebuilt only when the pinned
# versions change. The first build takes about ten minutes on two cores.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod="$here/envtest"
k8s_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$mod/go.mod")
sum=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-12)
cache_root=${HOOKLINE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/hookline}
dir="$cache_root/envtest/$k8s_version-$sum"

if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; then
	echo "$dir"
	exit 0
fi

# One build at a time: test packages started together (go test ./... on a
# cold cache) wait for the first build instead of racing it.
mkdir -p "$cache_root"
exec 9>"$cache_root/.envtest.lock"
flock 9
if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; then
	echo "$dir"
	exit 0
fi

minor=${k8s_version#v1.}
minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
tmp=$(mktemp -d "$cache_root/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "Building kube-apiserver $k8s_version and etcd from source (first build takes about ten minutes)" >&2
start=$(date +%s)
(
	cd "$mod"
	CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver &
	apiserver=$!
	# Report progress while the long build runs, so it is never silent.
	while kill -0 "$apiserver" 2>/dev/null; do
		sleep 30
		kill -0 "$apiserver" 2>/dev/null && echo "  still building kube-apiserver ($(( $(date +%s) - start ))s)" >&2
	done
	wait "$apiserver"
	echo "  kube-apiserver built in $(( $(date +%s) - start ))s; building etcd" >&2
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
)
mkdir -p "$(dirname "$dir")"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "Built envtest binaries in $(( $(date +%s) - start ))s" >&2
echo "$dir"
