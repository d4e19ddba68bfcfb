"""podnet-bandwidth: shape a pod's traffic with token buckets (the reference `bandwidth`).

Ingress (toward the pod): tbf on the host end of the pod's veth.  Egress (from the
pod): the host end's ingress is redirected to an ifb device shaped by its own tbf.
Rates are bits/s and bursts bits, flat in the config or in runtimeConfig.bandwidth
(which wins).  The ifb's name is derived from (network, containerID), for DEL and GC.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import Interface, Result
from ..net import netns, sysctl, tc
from ..net.errors import LinkExists, NetnsGone
from ..net.rtnl import Link, Rtnl, open_rtnl
from . import podside
from .common import require_prev_result, valid_attachments
from .errors import CheckFailed

KEYS = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")
MAX_BURST_BITS = 4 * 1024 ** 3 * 8      # the reference's 4 GB
MAX_RATE_BITS = (2 ** 32 - 1) * 8       # tbf keeps the rate in 32-bit bytes/s
MAX_BURST_SECONDS = 250                 # tbf keeps burst/rate in 32-bit scheduler ticks (~274 s)


@dataclass(frozen=True)
class Limits:
    ingress_rate: int
    ingress_burst: int
    egress_rate: int
    egress_burst: int


def parse_limits(req: Request) -> Limits:
    source: dict[str, Any] = dict(req.config)
    rc = req.runtime_config.get("bandwidth")
    prefix = ""
    if rc is not None:
        if not isinstance(rc, dict):
            raise config_error("runtimeConfig.bandwidth", "must be an object")
        source, prefix = rc, "runtimeConfig.bandwidth."
    vals = {}
    for k in KEYS:
        v = source.get(k, 0) or 0
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise config_error(prefix + k, f"must be a non-negative integer, not {v!r}")
        vals[k] = v
    for d in ("ingress", "egress"):
        rate, burst = vals[f"{d}Rate"], vals[f"{d}Burst"]
        if rate and not burst:
            raise config_error(f"{prefix}{d}Burst", f"{d}Rate is set, so {d}Burst must be too")
        if burst and not rate:
            raise config_error(f"{prefix}{d}Rate", f"{d}Burst is set, so {d}Rate must be too")
        if burst >= MAX_BURST_BITS:
            raise config_error(f"{prefix}{d}Burst", f"{burst} bits is 4 GB or more")
        if rate > MAX_RATE_BITS:
            raise config_error(f"{prefix}{d}Rate", f"{rate} bit/s is above what tbf can hold")
        if rate and burst < 8:
            raise config_error(f"{prefix}{d}Burst", "must be at least one byte (8 bits)")
        if rate and rate < 8:
            raise config_error(f"{prefix}{d}Rate", "must be at least one byte per second (8 bit/s)")
        if rate and burst / rate > MAX_BURST_SECONDS:
            raise config_error(f"{prefix}{d}Rate", f"{rate} bit/s drains a {burst}-bit burst in over "
                                                   f"{MAX_BURST_SECONDS} s: raise the rate or lower the burst")
    return Limits(vals["ingressRate"], vals["ingressBurst"], vals["egressRate"], vals["egressBurst"])


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def ifb_prefix(network: str) -> str:
    return "bwp" + _h(network)[:4]


def ifb_name(network: str, container_id: str) -> str:
    """15 characters: 'bwp', 4 of the network's hash (GC's filter), 8 of (network, container)."""
    return ifb_prefix(network) + _h(f"{network}{container_id}")[:8]


def host_veth(req: Request, host: Rtnl, prev: Result | None = None) -> Link:
    """The host end of the pod's IFNAME (it must be a veth: that is where shaping goes).

    When prevResult lists exactly one host-side veth (bridge, ptp) that is the one; else
    the pod's IFNAME is looked up and its peer followed.
    """
    if prev is not None:
        host_side = [host.link(i.name) for i in prev.interfaces if not i.sandbox and i.name]
        veths = [lk for lk in host_side if lk is not None and lk.kind == "veth"]
        if len(veths) == 1:
            return veths[0]
    with netns.opened(req.netns) as fd, open_rtnl(fd) as pod:
        lk = pod.link(req.ifname)
        if lk is None:
            raise CheckFailed(f"interface {req.ifname!r} not found in {req.netns}")
        peer = host.link_by_index(lk.link) if lk.link and lk.kind == "veth" else None
    if peer is None or peer.kind != "veth":
        raise CheckFailed(f"{req.ifname!r} is not a veth with its peer in this namespace: nothing to shape")
    return peer


def add_ifb(host: Rtnl, name: str, mtu: int) -> Link:
    """The pod's ifb, up, with IPv6 off (sysctl.disable_ipv6: it carries no IP traffic of its
    own, and an IPv6-enabled link costs every later one).  A repeated ADD starts it over."""
    try:
        host.add_link(name, "ifb", mtu=mtu or None)
    except LinkExists:
        host.del_link(host.require_link(name).index)
        host.add_link(name, "ifb", mtu=mtu or None)
    ifb = host.require_link(name)
    sysctl.disable_ipv6(name)
    host.set_link(ifb.index, state="up")
    return ifb


def add(req: Request) -> Result:
    limits = parse_limits(req)
    prev = require_prev_result(req, "bandwidth")
    if not (limits.ingress_rate or limits.egress_rate):
        return prev
    with open_rtnl() as host:
        hv = host_veth(req, host, prev)
        ifb: Link | None = None
        try:
            if limits.ingress_rate:
                tc.set_tbf(hv.index, limits.ingress_rate, limits.ingress_burst)
            if limits.egress_rate:
                ifb = add_ifb(host, ifb_name(req.network, req.container_id), hv.mtu)
                tc.redirect_ingress(hv.index, ifb.index)
                tc.set_tbf(ifb.index, limits.egress_rate, limits.egress_burst)
        except BaseException:
            podside.quietly(tc.clear, hv.index)
            if ifb is not None:
                podside.quietly(host.del_link, ifb.index)
            raise
    if ifb is None:
        return prev
    return Result(prev.cni_version, (*prev.interfaces, Interface(ifb.name, ifb.mac)), prev.ips, prev.routes,
                  prev.dns)


def delete(req: Request) -> None:
    """The ifb goes; the veth's qdiscs go with the veth.  Needs neither netns nor prevResult."""
    with open_rtnl() as host:
        lk = host.link(ifb_name(req.network, req.container_id))
        if lk is not None:
            podside.quietly(host.del_link, lk.index)


def check(req: Request) -> None:
    limits = parse_limits(req)
    require_prev_result(req, "bandwidth")
    with open_rtnl() as host:
        try:
            hv = host_veth(req, host)
        except NetnsGone:
            raise CheckFailed(f"network namespace {req.netns} is gone") from None
        _check_tbf(hv, limits.ingress_rate, "ingress")
        name = ifb_name(req.network, req.container_id)
        ifb = host.link(name)
        if limits.egress_rate:
            if ifb is None or not tc.has_ingress_redirect(hv.index):
                raise CheckFailed(f"egress shaping of {req.ifname}: ifb {name} or its redirect is missing")
            _check_tbf(ifb, limits.egress_rate, "egress")


def _check_tbf(lk: Link, rate_bits: int, what: str) -> None:
    tbf = tc.tbf_of(lk.index)
    if not rate_bits:
        return
    if tbf is None:
        raise CheckFailed(f"{what} shaping: no tbf qdisc on {lk.name}")
    if tbf.rate_bytes != rate_bits // 8:
        raise CheckFailed(f"{what} shaping on {lk.name}: rate {tbf.rate_bytes * 8} bit/s, config says {rate_bits}")


def status(req: Request) -> None:
    parse_limits(req)


def gc(req: Request) -> None:
    """Delete this network's ifbs whose container is not in the valid attachments."""
    keep = {ifb_name(req.network, cid) for cid, _ in valid_attachments(req)}
    prefix = ifb_prefix(req.network)
    with open_rtnl() as host:
        for lk in host.links():
            if lk.kind == "ifb" and lk.name.startswith(prefix) and lk.name not in keep:
                podside.quietly(host.del_link, lk.index)


PLUGIN = Plugin("bandwidth", add, delete, check, status, gc)
