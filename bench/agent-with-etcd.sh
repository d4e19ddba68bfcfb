#!/bin/bash
# cnibench --host-daemon for cluster-ipam runs: a throwaway etcd on 127.0.0.1:23799 inside the
# round's sandbox netns, then the podnet agent; both stop with the process group.
set -u
D=$(mktemp -d /tmp/pn-bench-etcd.XXXXXX)
etcd --name b --data-dir "$D" --listen-client-urls http://127.0.0.1:23799 --advertise-client-urls http://127.0.0.1:23799 \
  --listen-peer-urls http://127.0.0.1:23798 --initial-advertise-peer-urls http://127.0.0.1:23798 \
  --initial-cluster b=http://127.0.0.1:23798 --listen-metrics-urls "" >"$D.log" 2>&1 &
E=$!
trap 'kill $E $A 2>/dev/null; wait $E 2>/dev/null; rm -rf "$D" "$D.log"' EXIT TERM INT
for _ in $(seq 1 100); do
  /usr/bin/python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:23799/health", timeout=1)' 2>/dev/null && break
  sleep 0.1
done
"$(dirname "$0")/../.venv/bin/podnet" agent --socket /run/podnet/agent.sock --log-file "${1:-/dev/null}" &
A=$!
wait $A
