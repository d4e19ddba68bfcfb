#!/usr/bin/env bash
# Build what the ClusterNetworkPolicy conformance run needs, through the Go module proxy, into a cache
# OUTSIDE the checkout:  ${PODNET_CNP_CACHE:-$HOME/.cache/podnet/cnp-conformance}/<stamp>/
#   conformance.test            sigs.k8s.io/network-policy-api/conformance at v0.3.1, as published
#   conformance-skip-sctp.test  the same with scripts/cnp-conformance/skip-sctp.patch: two flags,
#                               -skip-tests (as the Gateway API suite has; a skipped required test
#                               still makes the profile fail) and -skip-sctp-probes REASON (an SCTP
#                               probe is logged as skipped with the reason, neither passed nor failed)
#   agnhost                     k8s.io/kubernetes/test/images/agnhost at the lab's Kubernetes release
# A stamp of the go.mod/go.sum pairs and the patch makes a second run take no time.  Prints the cache dir.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)/cnp-conformance"
stamp="$(cat "$here"/agnhost/go.mod "$here"/agnhost/go.sum "$here"/suite/go.mod "$here"/suite/go.sum \
         "$here"/skip-sctp.patch | sha256sum | cut -c1-16)"
cache="${PODNET_CNP_CACHE:-$HOME/.cache/podnet/cnp-conformance}/$stamp"
if [ -x "$cache/conformance.test" ] && [ -x "$cache/conformance-skip-sctp.test" ] && [ -x "$cache/agnhost" ]; then
  echo "$cache"; exit 0
fi
command -v go >/dev/null 2>&1 || { echo "cnp-conformance-build: no 'go' on PATH" >&2; exit 1; }
command -v patch >/dev/null 2>&1 || { echo "cnp-conformance-build: no 'patch' on PATH (apt-get install patch)" >&2; exit 1; }
mkdir -p "$cache"
start=$(date +%s)
echo "cnp-conformance-build: agnhost and the network-policy-api v0.3.1 suite into $cache — once per machine" >&2
export CGO_ENABLED=0 GOFLAGS=-mod=mod
(cd "$here/agnhost" && nice -n 10 go build -p 2 -trimpath -ldflags "-s -w" \
   -o "$cache/agnhost.part" k8s.io/kubernetes/test/images/agnhost) >&2
(cd "$here/suite" && nice -n 10 go test -p 2 -c \
   -o "$cache/conformance.test.part" sigs.k8s.io/network-policy-api/conformance) >&2
# the patched copy: the module's source from the module cache, the patch, a replace in a scratch go.mod
src="$cache/network-policy-api-skip-sctp"
rm -rf "$src" "$cache/suite-skip-sctp"
cp -r "$(cd "$here/suite" && go list -m -f '{{.Dir}}' sigs.k8s.io/network-policy-api)" "$src"
chmod -R u+w "$src"
(cd "$src" && patch -s -p1 < "$here/skip-sctp.patch") >&2
mkdir "$cache/suite-skip-sctp"
cp "$here/suite/go.mod" "$here/suite/go.sum" "$cache/suite-skip-sctp/"
(cd "$cache/suite-skip-sctp" && go mod edit -replace "sigs.k8s.io/network-policy-api=$src" &&
   nice -n 10 go test -p 2 -c -o "$cache/conformance-skip-sctp.test.part" sigs.k8s.io/network-policy-api/conformance) >&2
mv "$cache/agnhost.part" "$cache/agnhost"
mv "$cache/conformance.test.part" "$cache/conformance.test"
mv "$cache/conformance-skip-sctp.test.part" "$cache/conformance-skip-sctp.test"
echo "cnp-conformance-build: built in $(( $(date +%s) - start )) s" >&2
echo "$cache"
