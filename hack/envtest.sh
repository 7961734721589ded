#!/usr/bin/env bash
# Builds kube-apiserver and etcd from source through the Go module proxy and
# prints the directory holding them (use it as KUBEBUILDER_ASSETS).
#
# No binary download site is reachable from where Hookline is built and
# tested, so setup-envtest cannot be used. The binaries are cached outside the
# clone, keyed by the Kubernetes version and the hash of hack/envtest/go.sum,
# so fresh clones and CI reuse them; they are rebuilt only when the pinned
# versions change. The first build takes 10 to 25 minutes on two cores.
#
# Progress goes to stderr, at least one line every 15 seconds, and says
# what happens: waiting for another process's build, or building.
set -euo pipefail

# every is how many seconds may pass without a progress line.
every=${HOOKLINE_PROGRESS_INTERVAL:-15}

# report_while PID WHAT: while PID runs, say every $every seconds that WHAT
# is still under way.
report_while() {
	local pid=$1 what=$2 since=$SECONDS
	while kill -0 "$pid" 2>/dev/null; do
		for ((i = 0; i < every * 10; i++)); do
			kill -0 "$pid" 2>/dev/null || return 0
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && echo "  still $what ($((SECONDS - since))s so far)" >&2
	done
	return 0
}

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
if ! flock -n 9; then
	echo "Waiting for another build of kube-apiserver and etcd (started by another make test, make dev or test package) to finish; this one then uses its result" >&2
	waited=$SECONDS
	until flock -w "$every" 9; do
		echo "  still waiting for another build of kube-apiserver and etcd ($((SECONDS - waited))s so far)" >&2
	done
fi
if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; then
	[[ -n ${waited:-} ]] && echo "The other build finished: using $dir" >&2
	echo "$dir"
	exit 0
fi

minor=${k8s_version#v1.}
minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
tmp=$(mktemp -d "$cache_root/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "Building kube-apiserver $k8s_version and etcd from source, once (10 to 25 minutes on two cores; cached in $cache_root/envtest)" >&2
start=$(date +%s)
(
	cd "$mod"
	CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver &
	build=$!
	report_while "$build" "building kube-apiserver"
	wait "$build"
	echo "  kube-apiserver built in $(( $(date +%s) - start ))s; building etcd" >&2
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 &
	build=$!
	report_while "$build" "building etcd"
	wait "$build"
)
mkdir -p "$(dirname "$dir")"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "Built envtest binaries in $(( $(date +%s) - start ))s" >&2
echo "$dir"
