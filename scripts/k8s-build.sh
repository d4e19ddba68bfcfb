#!/usr/bin/env bash
# Build the Kubernetes components the lab runs (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy, kubectl) from k8s.io/kubernetes at the release pinned in
# scripts/k8s-build/go.mod, through the Go module proxy, into a cache OUTSIDE the checkout:
#   ${PODNET_K8S_CACHE:-$HOME/.cache/podnet/k8s}/<version>/bin
# A stamp (the go.mod + go.sum hash) makes a second run take a second. Prints the bin dir.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/k8s-build"
version="$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$src/go.mod")"
cache="${PODNET_K8S_CACHE:-$HOME/.cache/podnet/k8s}/$version"
bin="$cache/bin"
stamp="$(cat "$src/go.mod" "$src/go.sum" | sha256sum | cut -c1-16)"
tools=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

if [ -f "$cache/stamp" ] && [ "$(cat "$cache/stamp")" = "$stamp" ]; then
  ok=1; for t in "${tools[@]}"; do [ -x "$bin/$t" ] || ok=0; done
  if [ $ok = 1 ]; then echo "$bin"; exit 0; fi
fi
if ! command -v go >/dev/null 2>&1; then
  echo "k8s-build: no 'go' on PATH — the Kubernetes tiers need Go >= 1.26 and the Go module proxy" >&2
  exit 1
fi
need="$(awk '$1=="go" {print $2; exit}' "$src/go.mod")"
have="$(go env GOVERSION | sed 's/^go//')"
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
  echo "k8s-build: Go $have is older than the $need that k8s.io/kubernetes $version needs (set GOTOOLCHAIN=go$need to fetch it from the proxy)" >&2
  exit 1
fi
major="${version#v}"; minor="${major#*.}"; major="${major%%.*}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
mkdir -p "$bin"
echo "k8s-build: building Kubernetes $version (${tools[*]}) into $bin — once per machine; takes a while" >&2
start=$(date +%s)
pkgs=(); for t in "${tools[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$t"); done
if ! (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 10 go build -p 2 -trimpath -tags=providerless \
        -ldflags "$ldflags" -o "$bin/" "${pkgs[@]}"); then
  echo "k8s-build: go build failed (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))" >&2
  exit 1
fi
echo "$stamp" > "$cache/stamp"
echo "k8s-build: built in $(( $(date +%s) - start )) s" >&2
echo "$bin"
