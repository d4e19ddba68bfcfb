"""Traffic control over netlink (pyroute2): the token-bucket shaping podnet-bandwidth uses.

Ingress to a pod is shaped by a tbf root qdisc on the host end of its veth; egress
from the pod is redirected (ingress qdisc + u32 match-all + mirred) to an ifb device
whose own tbf root qdisc shapes it — the reference bandwidth plugin's layout.
"""
from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute  # pinned in pyproject: pyroute2==0.9.7
from pyroute2.netlink.exceptions import NetlinkError

from .errors import NetError
from .rtnl import open_rtnl

LATENCY = "25ms"          # the reference's tbf latency
INGRESS_HANDLE = 0xFFFF0000
ETH_P_ALL = 0x0003


@dataclass(frozen=True)
class Tbf:
    rate_bytes: int     # bytes per second, as the kernel keeps it
    limit_bytes: int
    buffer_ticks: int


@contextlib.contextmanager
def _tc(what: str) -> Iterator[IPRoute]:
    """The calling thread's cached host netlink socket (opening one costs ~0.7 ms), for dumps."""
    with open_rtnl() as host:
        try:
            yield host.ipr
        except NetlinkError as e:
            raise NetError(f"{what}: {e.args[1] if len(e.args) > 1 else e}") from e


def _request(what: str, command: str, kind: str | None, index: int, handle: int = 0, **kw: Any) -> None:
    """One tc change, sent as IPRoute.tc(command, kind, index, handle, **kw) would send it (nlraw:
    without pyroute2's per-request event loop)."""
    if kind is not None:
        kw["kind"] = kind
    kw["index"] = index
    if handle:
        kw["handle"] = handle
    with open_rtnl() as host:
        try:
            host.raw_request("tc", command, **kw)
        except NetlinkError as e:
            raise NetError(f"{what}: {e.args[1] if len(e.args) > 1 else e}") from e


def set_tbf(index: int, rate_bits: int, burst_bits: int) -> None:
    """Replace the root qdisc of `index` with tbf rate/burst (bits, as CNI gives them)."""
    _request(f"tbf on #{index}", "replace", "tbf", index, 0x10000, rate=f"{rate_bits}bit",
             burst=max(1, burst_bits // 8), latency=LATENCY)


def tbf_of(index: int) -> Tbf | None:
    """The root tbf of `index`, or None when it has another (or no) root qdisc."""
    with _tc(f"qdiscs of #{index}") as ipr:
        for q in ipr.get_qdiscs(index=index):
            if q.get("TCA_KIND") == "tbf" and q["parent"] == 0xFFFFFFFF:
                parms = q.get_nested("TCA_OPTIONS", "TCA_TBF_PARMS")
                return Tbf(parms["rate"], parms["limit"], parms["buffer"])
    return None


def redirect_ingress(index: int, to_index: int) -> None:
    """Everything arriving on `index` (i.e. leaving the pod) goes out of `to_index` instead."""
    what = f"redirect #{index} to #{to_index}"
    try:
        _request(what, "add", "ingress", index, INGRESS_HANDLE)
    except NetError as e:
        if not isinstance(e.__cause__, NetlinkError) or e.__cause__.code != errno.EEXIST:
            raise
    _request(what, "add-filter", "u32", index, parent=INGRESS_HANDLE, protocol=ETH_P_ALL, prio=1, target=0x10001,
             keys=["0x0/0x0+0"],
             action={"kind": "mirred", "direction": "egress", "action": "redirect", "ifindex": to_index})


def has_ingress_redirect(index: int) -> bool:
    with _tc(f"filters of #{index}") as ipr:
        return any(f.get("TCA_KIND") == "u32" for f in ipr.get_filters(index=index, parent=INGRESS_HANDLE))


def clear(index: int) -> None:
    """Remove the root and ingress qdiscs we put on `index` (missing ones are fine)."""
    with _tc(f"qdiscs of #{index}") as ipr:
        # by handle and parent, without a kind: pyroute2 builds a tbf's rate parameters even to
        # delete one and fails (KeyError 'rate') when given none
        for handle, parent in ((INGRESS_HANDLE, 0xFFFFFFF1), (0x10000, 0xFFFFFFFF)):
            with contextlib.suppress(NetlinkError):
                ipr.tc("del", index=index, handle=handle, parent=parent)


