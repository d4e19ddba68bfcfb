"""Conntrack cleanup over netlink (pyroute2): stale UDP flows would keep bypassing a
new port mapping, because conntrack remembers the old (un-DNATed) decision."""
from __future__ import annotations

import logging
import socket

from pyroute2 import Conntrack  # pinned in pyproject: pyroute2==0.9.7
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

log = logging.getLogger(__name__)


def flush_udp_to_ports(ports: list[int], family: int = 4) -> int:
    """Delete UDP conntrack entries whose original destination port is one of `ports`."""
    if not ports:
        return 0
    fam = socket.AF_INET if family == 4 else socket.AF_INET6
    wanted = set(ports)
    deleted = 0
    ct = Conntrack()
    try:
        stale = [e for e in ct.dump_entries(tuple_orig=NFCTAttrTuple(family=fam, proto=socket.IPPROTO_UDP))
                 if e.tuple_orig.dport in wanted]
        for entry in stale:
            try:
                ct.delete(entry)
                deleted += 1
            except Exception as e:  # noqa: BLE001 - an entry that expired meanwhile is fine
                log.debug("conntrack delete: %s", e)
    finally:
        ct.close()
    return deleted
