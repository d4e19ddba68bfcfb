"""Leaked host-local leases on a Kubernetes node: an address is held in the node's pod CIDR
but no pod on this node has it — the runtime crashed between ADD and DEL, the node rebooted
with pods gone, a DEL failed for good.  containerd 1.6 and CRI-O before CNI GC never clean
these up, and a /24 runs out.

A lease is released only when no pod of this node (as the API sees them) has the address AND
the lease is older than a grace period: a pod whose ADD has just returned is not yet in its
status (kubelet reports the IP a moment later), so a young lease is never touched.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import time

from ..ipam.filestore import FileStore

log = logging.getLogger(__name__)

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


def release_leaked(data_dir: str, network: str, subnets: list[IPNet], live_ips: set[str], grace: float,
                   now: float | None = None) -> list[str]:
    """Release the leases in `subnets` that no live pod holds and that are older than `grace`."""
    now = time.time() if now is None else now
    path = os.path.join(data_dir, network)
    if not os.path.isdir(path):
        return []
    released = []
    with FileStore(data_dir, network).session() as s:
        for ip, handle in s.holders().items():
            if str(ip) in live_ips or not any(ip in net for net in subnets):
                continue
            try:
                age = now - os.stat(os.path.join(path, str(ip))).st_mtime
            except FileNotFoundError:
                continue
            if age < grace:
                continue
            s.release_ip(ip)
            released.append(str(ip))
            log.warning("released leaked lease %s (container %s, %.0fs old): no pod on this node has it",
                        ip, handle.container_id, age)
    return released
