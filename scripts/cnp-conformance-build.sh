#!/usr/bin/env bash
# Build what the ClusterNetworkPolicy conformance run needs, through the Go module proxy, into a cache
# OUTSIDE the checkout:  ${PODNET_CNP_CACHE:-$HOME/.cache/podnet/cnp-conformance}/<stamp>/
#   conformance.test  sigs.k8s.io/network-policy-api/conformance at v0.3.1 (the upstream suite, compiled)
#   agnhost           k8s.io/kubernetes/test/images/agnhost at the lab's Kubernetes release
# A stamp of both go.mod/go.sum pairs makes a second run take no time.  Prints the cache dir.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)/cnp-conformance"
stamp="$(cat "$here"/agnhost/go.mod "$here"/agnhost/go.sum "$here"/suite/go.mod "$here"/suite/go.sum | sha256sum | cut -c1-16)"
cache="${PODNET_CNP_CACHE:-$HOME/.cache/podnet/cnp-conformance}/$stamp"
if [ -x "$cache/conformance.test" ] && [ -x "$cache/agnhost" ]; then echo "$cache"; exit 0; fi
command -v go >/dev/null 2>&1 || { echo "cnp-conformance-build: no 'go' on PATH" >&2; exit 1; }
mkdir -p "$cache"
start=$(date +%s)
echo "cnp-conformance-build: agnhost and the network-policy-api v0.3.1 suite into $cache — once per machine" >&2
(cd "$here/agnhost" && CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 10 go build -p 2 -trimpath -ldflags "-s -w" \
   -o "$cache/agnhost.part" k8s.io/kubernetes/test/images/agnhost) >&2
(cd "$here/suite" && CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 10 go test -p 2 -c \
   -o "$cache/conformance.test.part" sigs.k8s.io/network-policy-api/conformance) >&2
mv "$cache/agnhost.part" "$cache/agnhost"
mv "$cache/conformance.test.part" "$cache/conformance.test"
echo "cnp-conformance-build: built in $(( $(date +%s) - start )) s" >&2
echo "$cache"
