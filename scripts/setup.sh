#!/usr/bin/env bash
# Install what podnet and its tests need on a Debian 12 machine (as root), then the venv.
# PODNET_WITH_K8S=1: also build the Kubernetes components the lab runs (scripts/k8s-build.sh:
# once per machine into ~/.cache/podnet/k8s/<version>, then seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
pkgs=(iproute2 nftables python3-nftables python3-venv containernetworking-plugins
      podman crun runc conmon catatonit busybox-static iptables etcd-server dnsmasq-base containerd iperf3
      wireguard-go bird2 mmdebstrap mariadb-server bash-static patch)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  # no daemon starts at install (no systemd here; tests start their own etcd, MariaDB … privately)
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  if [ $made_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ $rc != 0 ]; then exit $rc; fi
fi
# The venv uses Debian's interpreter: the launchers run /usr/bin/python3 -IS against it.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.base_prefix != "/usr")'; then
  rm -rf .venv
  /usr/bin/python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
if [ "${PODNET_WITH_K8S:-0}" = 1 ]; then
  bash scripts/k8s-build.sh >/dev/null
  bash scripts/coredns-build.sh >/dev/null      # the kubelet lab's cluster DNS (~1.5 min once, then cached)
  bash scripts/neutron-setup.sh >/dev/null      # a real Neutron for the Neutron IPAM (~40 s once, then cached)
fi
