#!/usr/bin/env bash
# Build CoreDNS — the kubelet lab's cluster DNS, as kind ships it — from github.com/coredns/coredns at
# the pinned release, through the Go module proxy, into a cache OUTSIDE the checkout:
#   ${PODNET_COREDNS_CACHE:-$HOME/.cache/podnet/coredns}/<version>/coredns
# A second run takes no time.  Prints the binary's path.
set -euo pipefail
version="v1.15.0"            # = lab/dns.py COREDNS_VERSION (a unit test keeps them equal)
cache="${PODNET_COREDNS_CACHE:-$HOME/.cache/podnet/coredns}/$version"
if [ -x "$cache/coredns" ]; then echo "$cache/coredns"; exit 0; fi
if ! command -v go >/dev/null 2>&1; then
  echo "coredns-build: no 'go' on PATH — the lab's cluster DNS is built with Go and the Go module proxy" >&2
  exit 1
fi
mkdir -p "$cache"
echo "coredns-build: building CoreDNS $version into $cache — once per machine" >&2
start=$(date +%s)
GOBIN="$cache.part" CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 10 go install -trimpath -ldflags "-s -w" \
  "github.com/coredns/coredns@$version" >&2
mv "$cache.part/coredns" "$cache/coredns" && rmdir "$cache.part"
echo "coredns-build: built in $(( $(date +%s) - start )) s" >&2
echo "$cache/coredns"
